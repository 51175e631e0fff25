"""The shared demo customers and catalogue (``sandbox.scenarios``) in Zuora's seed shape.

Zuora has no coupons and no item prices: each catalogue entry is a product with one monthly
product rate plan (its number, ``PRP-…``, is what ``policies/products.yaml`` maps CRM codes to);
discounts are a discount-percentage rate plan, and courtesy credits are credit memos from a
one-time "Courtesy credit" charge.
"""

from __future__ import annotations

import time

from sandbox.books import PLANS, Book
from sandbox.scenarios import CATALOG, DAY, ITEM_PRICES, DunningCustomer

#: the retention discount rate plan (added to a subscription for N months)
DISCOUNT_PLAN = "PRP-DISCOUNT-PERCENTAGE"
#: the one-time charge courtesy credits are made from
CREDIT_PLAN = "PRP-COURTESY-CREDIT"
#: the unit of measure of the usage charge on every catalogue product
USAGE_UOM = "API_CALL"


def rate_plan_number(price_id: str) -> str:
    """``core-USD-monthly`` → ``PRP-CORE-USD-MONTHLY``."""
    return "PRP-" + price_id.upper()


def catalog() -> list[dict]:
    products = [
        {
            "name": p["name"].split(" (")[0],
            "sku": "SKU-" + p["item_id"].upper(),
            "rate_plans": [
                {
                    "number": rate_plan_number(p["id"]),
                    "name": p["name"],
                    "charges": [
                        {"name": p["name"], "model": "PerUnit", "price": p["price"], "uom": "Seat"}
                    ],
                }
            ],
        }
        for p in ITEM_PRICES
    ]
    products += [
        {
            "name": p.name,
            "sku": p.code,
            "rate_plans": [
                {
                    "number": rate_plan_number(p.chargebee_item_price),
                    "name": f"{p.name} (monthly)",
                    "charges": [
                        {"name": p.name, "model": "PerUnit", "price": p.unit_price, "uom": "Each"}
                    ],
                }
            ],
        }
        for p in CATALOG
        if p.in_billing
    ]
    products += [
        {
            "name": f"Book {plan.removeprefix('book-').title()}",
            "sku": "SKU-" + plan.upper(),
            "rate_plans": [
                {
                    "number": rate_plan_number(plan + "-monthly"),
                    "name": f"{plan} (monthly)",
                    "charges": [{"name": plan, "model": "PerUnit", "price": price, "uom": "Seat"}],
                }
            ],
        }
        for plan, price, _ in PLANS
    ]
    products += [
        {
            "name": "Discounts",
            "sku": "SKU-DISCOUNTS",
            "rate_plans": [
                {
                    "number": DISCOUNT_PLAN,
                    "name": "Percentage discount",
                    "charges": [
                        {
                            "name": "Percentage discount",
                            "model": "DiscountPercentage",
                            "discountPercentage": 10,
                        }
                    ],
                }
            ],
        },
        {
            "name": "Credits",
            "sku": "SKU-CREDITS",
            "rate_plans": [
                {
                    "number": CREDIT_PLAN,
                    "name": "Courtesy credit",
                    "charges": [{"name": "Courtesy credit", "type": "OneTime", "model": "FlatFee"}],
                }
            ],
        },
    ]
    return products


def zuora_seed(customers: tuple[DunningCustomer, ...], suffix: str, now: int | None = None) -> dict:
    """Accounts (ID = the shared customer ID), a subscription, one posted invoice each."""
    now = now or int(time.time())
    data: dict[str, list] = {
        "products": catalog(),
        "accounts": [],
        "subscriptions": [],
        "invoices": [],
    }
    for c in customers:
        ids = c.ids(suffix)
        data["accounts"].append(
            {
                "id": ids["customer"],
                "name": c.company,
                "currency": "USD",
                "email": f"billing+{ids['customer']}@example.com",
                "createdDate": now - c.tenure_days * DAY,
                "card": {"decline_code": c.decline_code},
            }
        )
        data["subscriptions"].append(
            {
                "subscriptionNumber": ids["subscription"],
                "account": ids["customer"],
                "start": now - c.tenure_days * DAY,
                "plans": [{"plan": rate_plan_number(c.plan), "quantity": c.quantity}],
            }
        )
        data["invoices"].append(
            {
                "id": ids["invoice"],
                "account": ids["customer"],
                "subscription": ids["subscription"],
                "amount": c.invoice_total,
                "invoiceDate": now - 3600,
            }
        )
    return data


def book_seed(b: Book, now: int | None = None) -> dict:
    """A churn book (``sandbox.books``) as a Zuora tenant: accounts, TERMED subscriptions
    (cancelled at term end when non-renewing), two monthly invoices each, the declined payments
    of the failures and the processed payment of every paid invoice. Downgrades are orders made
    after seeding (:func:`book_downgrades`): an order's MRR metrics are what record them."""
    now = now or int(time.time())
    data: dict[str, list] = {
        "products": catalog(),
        "accounts": [],
        "subscriptions": [],
        "invoices": [],
        "payments": [],
    }
    for c in b.customers:
        started = now - c.tenure_days * DAY
        data["accounts"].append({"id": c.id, "name": c.company, "createdDate": started})
        data["subscriptions"].append(
            {
                "subscriptionNumber": c.subscription_id,
                "account": c.id,
                "start": started,
                "plans": [{"plan": rate_plan_number(c.plan + "-monthly"), "quantity": c.quantity}],
                "cancelAtTermEnd": c.non_renewing,
            }
        )
        for k, age in enumerate((45, 15)):
            inv_id = f"inv-{c.id}-{k}"
            failed_here = c.failures and k == 1
            unpaid = failed_here and c.unpaid
            data["invoices"].append(
                {
                    "id": inv_id,
                    "account": c.id,
                    "subscription": c.subscription_id,
                    "amount": c.mrr,
                    "balance": c.mrr if unpaid else 0,
                    "invoiceDate": now - age * DAY,
                }
            )
            if failed_here:
                data["payments"] += [
                    {
                        "account": c.id,
                        "invoice": inv_id,
                        "status": "Error",
                        "gatewayResponseCode": "card_declined",
                        "createdDate": now - (14 - f) * DAY,
                    }
                    for f in range(c.failures)
                ]
            if not unpaid:
                data["payments"].append(
                    {"account": c.id, "invoice": inv_id, "createdDate": now - (age - 1) * DAY}
                )
    return data


def book_downgrades(b: Book) -> list[tuple[str, int]]:
    """``(subscription number, new quantity)``: UpdateProduct orders to place after seeding."""
    return [(c.subscription_id, c.quantity - c.downgrade_by) for c in b.customers if c.downgrade_by]
