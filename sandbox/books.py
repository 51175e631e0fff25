"""A seeded book of customers for the churn sweep: N customers with a realistic spread of risk.

Pure data, deterministic by ``seed`` (the sandbox imports nothing of RevBridge). Most customers
are healthy; some have failed payments (recovered or not), recent downgrades, open support cases,
short tenure, or a subscription set to end. Each customer knows its own ``risky`` flag, so a test
can check that the sweep scores the risky part of the book above the rest.

Seeds come in each vendor's ``POST /_sandbox/seed`` shape (Chargebee, Stripe, Salesforce,
HubSpot). Downgrades are not seedable as history (the vendors record them as events when a
subscription changes), so :func:`chargebee_downgrades` lists the changes to make through the API
after seeding.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

DAY = 86_400

PLANS = (
    # (item price / price ID stem, monthly price in cents, typical seats)
    ("book-team", 4_900, (3, 15)),
    ("book-business", 9_900, (10, 60)),
    ("book-enterprise", 46_000, (40, 200)),
)
TIERS = {"book-team": "SMB", "book-business": "Mid-Market", "book-enterprise": "Enterprise"}
NAMES = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Wonka",
)
SUFFIXES = ("Labs", "Systems", "Analytics", "Corp", "Group", "Health", "Logistics", "Media")


@dataclass(frozen=True)
class BookCustomer:
    id: str
    company: str
    tier: str
    plan: str
    unit_price: int  # cents per seat per month
    quantity: int
    tenure_days: int
    #: failed payment attempts in the last 90 days, and whether the last failed invoice is unpaid
    failures: int = 0
    unpaid: bool = False
    #: seats to drop after seeding (a downgrade event), 0 for none
    downgrade_by: int = 0
    open_cases: tuple[int, ...] = ()  # ages in days
    non_renewing: bool = False
    risky: bool = False

    @property
    def subscription_id(self) -> str:
        return f"sub-{self.id}"

    @property
    def mrr(self) -> int:
        return self.unit_price * self.quantity


@dataclass
class Book:
    prefix: str
    customers: list[BookCustomer] = field(default_factory=list)

    @property
    def risky(self) -> list[BookCustomer]:
        return [c for c in self.customers if c.risky]


def book(n: int, prefix: str = "book", seed: int = 7) -> Book:
    """``n`` customers with IDs ``{prefix}-{i:05d}``; the same arguments give the same book."""
    rng = random.Random(seed)
    out = Book(prefix)
    for i in range(n):
        plan, price, (lo, hi) = rng.choices(PLANS, weights=(6, 3, 1))[0]
        r = rng.random()
        # ~70 % healthy; the rest carry one or more risk factors
        failures = rng.choice((1, 2, 3, 4)) if r < 0.15 or 0.9 <= r < 0.95 else 0
        unpaid = failures > 0 and rng.random() < 0.6
        downgrade = r < 0.05 or 0.15 <= r < 0.22
        non_renewing = 0.22 <= r < 0.26 or 0.9 <= r < 0.93
        cases = (
            tuple(rng.randint(1, 45) for _ in range(rng.randint(1, 3)))
            if 0.26 <= r < 0.30 or r < 0.08
            else ()
        )
        tenure = rng.randint(20, 200) if rng.random() < 0.2 else rng.randint(200, 2_500)
        quantity = rng.randint(lo, hi)
        risky = failures >= 2 or unpaid or non_renewing or (downgrade and bool(cases))
        out.customers.append(
            BookCustomer(
                id=f"{prefix}-{i:05d}",
                company=f"{rng.choice(NAMES)} {rng.choice(SUFFIXES)} {i}",
                tier=TIERS[plan],
                plan=plan,
                unit_price=price,
                quantity=quantity,
                tenure_days=tenure,
                failures=failures,
                unpaid=unpaid,
                downgrade_by=max(1, quantity // 3) if downgrade and quantity > 1 else 0,
                open_cases=cases,
                non_renewing=non_renewing,
                risky=risky,
            )
        )
    return out


# --- billing ---------------------------------------------------------------------------------------


def chargebee_seed(b: Book, now: int | None = None) -> dict:
    """Item prices, customers, subscriptions, a paid invoice history, failed and successful
    transactions, and the open invoice of a customer whose failure is unrecovered."""
    now = now or int(time.time())
    data: dict[str, list] = {
        "item_prices": [
            {
                "id": f"{plan}-USD-monthly",
                "item_id": plan,
                "name": f"{plan} (monthly)",
                "price": price,
                "currency_code": "USD",
                "period": 1,
                "period_unit": "month",
            }
            for plan, price, _ in PLANS
        ],
        "customers": [],
        "subscriptions": [],
        "invoices": [],
        "transactions": [],
    }
    for c in b.customers:
        started = now - c.tenure_days * DAY
        data["customers"].append(
            {"id": c.id, "company": c.company, "created_at": started, "card": {"last4": "4242"}}
        )
        sub: dict = {
            "id": c.subscription_id,
            "customer_id": c.id,
            "items": [{"item_price_id": f"{c.plan}-USD-monthly", "quantity": c.quantity}],
            "status": "non_renewing" if c.non_renewing else "active",
            "started_at": started,
        }
        data["subscriptions"].append(sub)
        # two past monthly invoices, paid (the failed one may be unpaid)
        for k, age in enumerate((45, 15)):
            inv_id = f"inv-{c.id}-{k}"
            failed_here = c.failures and k == 1
            unpaid = failed_here and c.unpaid
            data["invoices"].append(
                {
                    "id": inv_id,
                    "customer_id": c.id,
                    "subscription_id": c.subscription_id,
                    "total": c.mrr,
                    "amount_due": c.mrr if unpaid else 0,
                    "amount_paid": 0 if unpaid else c.mrr,
                    "currency_code": "USD",
                    "status": "payment_due" if unpaid else "paid",
                    "date": now - age * DAY,
                }
            )
            if failed_here:
                for f in range(c.failures):
                    data["transactions"].append(
                        {
                            "invoice_id": inv_id,
                            "status": "failure",
                            "error_code": "card_declined",
                            "amount": c.mrr,
                            "date": now - (14 - f) * DAY,
                        }
                    )
            if not unpaid:
                data["transactions"].append(
                    {
                        "invoice_id": inv_id,
                        "status": "success",
                        "amount": c.mrr,
                        "date": now - (age - 1) * DAY,
                    }
                )
    return data


def chargebee_downgrades(b: Book) -> list[tuple[str, str, int]]:
    """``(subscription_id, item_price_id, new_quantity)`` to apply with ``update_for_items``
    after seeding: the change is what records the downgrade event."""
    return [
        (c.subscription_id, f"{c.plan}-USD-monthly", c.quantity - c.downgrade_by)
        for c in b.customers
        if c.downgrade_by
    ]


def stripe_seed(b: Book, now: int | None = None) -> dict:
    """Products, prices, customers, subscriptions and the latest invoice: open, on a declining
    card, for a customer with failed payments (:func:`stripe_failed_attempts` makes them)."""
    now = now or int(time.time())
    data: dict[str, list] = {
        "products": [{"id": f"prod_{plan}_{b.prefix}", "name": plan} for plan, _, _ in PLANS],
        "prices": [
            {
                "id": f"price_{plan}_{b.prefix}",
                "product": f"prod_{plan}_{b.prefix}",
                "unit_amount": price,
                "currency": "usd",
                "recurring": {"interval": "month"},
            }
            for plan, price, _ in PLANS
        ],
        "customers": [],
        "subscriptions": [],
        "invoices": [],
    }
    for c in b.customers:
        started = now - c.tenure_days * DAY
        customer: dict = {"id": c.id, "name": c.company, "created": started}
        if c.failures:
            customer["card"] = {"decline_code": "insufficient_funds"}
        data["customers"].append(customer)
        sub: dict = {
            "id": c.subscription_id,
            "customer": c.id,
            "items": [{"price": f"price_{c.plan}_{b.prefix}", "quantity": c.quantity}],
            "created": started,
        }
        if c.non_renewing:
            sub["cancel_at_period_end"] = True
        data["subscriptions"].append(sub)
        data["invoices"].append(
            {
                "id": f"in_{c.id}",
                "customer": c.id,
                "subscription": c.subscription_id,
                "status": "open" if c.failures else "paid",
                "lines": [{"amount": c.mrr, "description": f"{c.plan} × {c.quantity}"}],
            }
        )
    return data


def stripe_failed_attempts(b: Book) -> list[tuple[str, int]]:
    """``(invoice_id, attempts)``: pay attempts to make after seeding (each declines and records
    a failed charge, as Stripe does; seeding cannot write payment history)."""
    return [(f"in_{c.id}", c.failures) for c in b.customers if c.failures]


# --- CRM ---------------------------------------------------------------------------------------------


def salesforce_seed(b: Book, billing: str, now: int | None = None) -> dict:
    """Accounts linked to the billing customers, and their open cases (with their age)."""
    now = now or int(time.time())
    accounts, cases = [], []
    for c in b.customers:
        accounts.append(
            {
                "Ref": c.id,
                "Name": c.company,
                "Type": "Customer",
                "Customer_Tier__c": c.tier,
                "Billing_Customer_Id__c": c.id,
                "Billing_Platform__c": billing,
                "MRR__c": c.mrr / 100,
            }
        )
        for k, age in enumerate(c.open_cases):
            cases.append(
                {
                    "AccountId": f"@{c.id}",
                    "Subject": f"Support request {k + 1}",
                    "Status": "New",
                    "Origin": "Web",
                    "CreatedDate": time.strftime(
                        "%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(now - age * DAY)
                    ),
                }
            )
    return {"records": {"Account": accounts, "Case": cases}}


def hubspot_seed(b: Book, billing: str, now: int | None = None) -> dict:
    """Companies linked to the billing customers, and their open tickets (with their age)."""
    now = now or int(time.time())
    companies, tickets, associations = [], [], []
    for c in b.customers:
        companies.append(
            {
                "ref": c.id,
                "properties": {
                    "name": c.company,
                    "customer_tier": c.tier,
                    "billing_customer_id": c.id,
                    "billing_platform": billing,
                    "mrr": str(c.mrr / 100),
                },
            }
        )
        for k, age in enumerate(c.open_cases):
            ref = f"{c.id}-t{k}"
            tickets.append(
                {
                    "ref": ref,
                    "properties": {
                        "subject": f"Support request {k + 1}",
                        "hs_pipeline": "0",
                        "hs_pipeline_stage": "1",
                        "createdate": str((now - age * DAY) * 1000),
                    },
                }
            )
            associations.append({"from": ref, "to": c.id})
    return {
        "objects": {"companies": companies, "tickets": tickets},
        "associations": associations,
    }
