"""Scenario seeding for the Recurly sandbox (``POST /_sandbox/seed``), and the shared demo
customers and catalogue as a Recurly site holds them.

Seed JSON (every list optional)::

    {"campaigns": [{"id"?, "code", "name"?, "default_campaign"?, "dunning_cycles"?}],
     "plans": [{"code", "name", "currencies": [{"currency", "unit_amount"}],
                "add_ons"?: [{"code", "name", "add_on_type"?: "fixed"|"usage",
                              "currencies": [...]}]}],
     "coupons": [{"code", "name", "discount_type": "percent"|"fixed", ...}],
     "accounts": [{"code", "email"?, "company"?, "first_name"?, "last_name"?, "custom_fields"?,
                   "dunning_campaign_id"?, "created_at"? (unix),
                   "decline_code"?: str | null, "billing_info"?: false (no card)}],
     "subscriptions": [{"id"?, "account_code", "plan_code", "currency"?, "quantity"?,
                        "unit_amount"?, "add_ons"?, "custom_fields"?, "created_at"?,
                        "state"?: "active"|"canceled"|"expired"|"paused",
                        "coupon_codes"?}],
     "invoices": [{"id"?, "account_code", "subscription_id"?, "total", "currency"?,
                   "state"?: "paid"|"past_due"|"pending"|"failed", "created_at"?,
                   "declines"? (declined attempts first; default 1 when past_due or failed),
                   "decline_code"?}],
     "usage": [{"subscription_id", "add_on_code", "amount", "usage_timestamp" (unix)}],
     "changes": [{"subscription_id", "plan_code"?, "quantity"?, "at" (unix)}]}

Answers the IDs created per kind. Seeding sends no notifications.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sandbox import books
from sandbox.scenarios import CATALOG, ITEM_PRICES, DunningCustomer

from .store import DAY, iso

if TYPE_CHECKING:
    from .emulator import RecurlyEmulator

#: the shared catalogue on a Recurly site: Core is the plan, seats and support its add-ons
CORE_PLAN = "rb-core"
ADD_ONS = {"RB-SEAT": "seat", "RB-SUPPORT": "support-premium"}
DEFAULT_CAMPAIGN_ID = "rb-default-campaign"


def price_ref(product_code: str) -> str:
    """The billing price a CRM product maps to on Recurly: a plan code, or ``plan:add_on``."""
    if product_code == "RB-CORE":
        return CORE_PLAN
    return f"{CORE_PLAN}:{ADD_ONS[product_code]}"


def catalog_plans() -> list[dict[str, Any]]:
    """The dunning plans and the shared catalogue (in-billing products only)."""
    plans = [
        {
            "code": p["id"],
            "name": p["name"],
            "currencies": [{"currency": "USD", "unit_amount": p["price"] / 100}],
        }
        for p in ITEM_PRICES
    ]
    core = next(p for p in CATALOG if p.code == "RB-CORE")
    plans.append(
        {
            "code": CORE_PLAN,
            "name": core.name,
            "currencies": [{"currency": "USD", "unit_amount": core.unit_price / 100}],
            "add_ons": [
                {
                    "code": ADD_ONS[p.code],
                    "name": p.name,
                    "currencies": [{"currency": "USD", "unit_amount": p.unit_price / 100}],
                }
                for p in CATALOG
                if p.in_billing and p.code in ADD_ONS
            ]
            + [
                {
                    "code": "api-calls",
                    "name": "API calls",
                    "add_on_type": "usage",
                    "currencies": [{"currency": "USD", "unit_amount": 0.01}],
                }
            ],
        }
    )
    return plans


def dunning_seed(
    customers: tuple[DunningCustomer, ...], suffix: str, now: int | None = None
) -> dict[str, Any]:
    """The demo's dunning customers: an account (code = the customer ID) with a card that
    declines with the customer's decline code, an active subscription, and an open invoice
    (the renewal about to be collected) whose ID is the scenario's invoice ID."""
    now = now or int(time.time())
    data: dict[str, list] = {"plans": catalog_plans(), "accounts": [], "subscriptions": []}
    data["invoices"] = []
    for c in customers:
        ids = c.ids(suffix)
        data["accounts"].append(
            {
                "code": ids["customer"],
                "company": c.company,
                "email": f"billing@{c.key}.example",
                "first_name": "Billing",
                "last_name": c.company,
                "decline_code": c.decline_code,
                "created_at": now - c.tenure_days * DAY,
            }
        )
        data["subscriptions"].append(
            {
                "id": ids["subscription"],
                "account_code": ids["customer"],
                "plan_code": c.plan,
                "quantity": c.quantity,
                "created_at": now - c.tenure_days * DAY,
            }
        )
        data["invoices"].append(
            {
                "id": ids["invoice"],
                "account_code": ids["customer"],
                "subscription_id": ids["subscription"],
                "total": c.invoice_total / 100,
                "state": "pending",
                "created_at": now - 1 * DAY,
            }
        )
    return data


def book_seed(b: books.Book, now: int | None = None) -> dict[str, Any]:
    """A churn book as a Recurly site holds it: the book plans, an account with a working card
    per customer, its subscription (canceled = set to end), two monthly invoices (the failed
    one with its declined attempts, paid afterwards or still past due), and its downgrade as an
    immediate change with proration."""
    now = now or int(time.time())
    data: dict[str, list] = {
        "plans": [
            {
                "code": plan,
                "name": f"{plan} (monthly)",
                "currencies": [{"currency": "USD", "unit_amount": price / 100}],
            }
            for plan, price, _ in books.PLANS
        ],
        "accounts": [],
        "subscriptions": [],
        "invoices": [],
        "changes": [],
    }
    for c in b.customers:
        started = now - c.tenure_days * DAY
        data["accounts"].append({"code": c.id, "company": c.company, "created_at": started})
        data["subscriptions"].append(
            {
                "id": c.subscription_id,
                "account_code": c.id,
                "plan_code": c.plan,
                "quantity": c.quantity + c.downgrade_by,
                "unit_amount": c.unit_price / 100,
                "created_at": started,
                "state": "canceled" if c.non_renewing else "active",
            }
        )
        for k, age in enumerate((45, 15)):
            failed_here = bool(c.failures) and k == 1
            unpaid = failed_here and c.unpaid
            data["invoices"].append(
                {
                    "id": f"inv-{c.id}-{k}",
                    "account_code": c.id,
                    "subscription_id": c.subscription_id,
                    "total": c.mrr / 100,
                    "state": "past_due" if unpaid else "paid",
                    "declines": c.failures if failed_here else 0,
                    "decline_code": "declined",
                    "created_at": now - age * DAY,
                }
            )
        if c.downgrade_by:
            data["changes"].append(
                {"subscription_id": c.subscription_id, "quantity": c.quantity, "at": now - 20 * DAY}
            )
    return data


def seed(em: RecurlyEmulator, data: Mapping[str, Any]) -> dict[str, Any]:
    st = em.store
    out: dict[str, list[str]] = {}
    for c in data.get("campaigns", []):
        if c.get("id") in st.campaigns:
            continue
        out.setdefault("campaigns", []).append(st.create_campaign(c)["id"])
    for p in data.get("plans", []):
        existing = next((x for x in st.plans.values() if x["code"] == p["code"]), None)
        if existing is None:
            out.setdefault("plans", []).append(st.create_plan(p)["id"])
            continue
        for a in p.get("add_ons", []):  # seeding a plan again adds add-ons it lacks
            if not any(
                x["plan_id"] == existing["id"] and x["code"] == a["code"]
                for x in st.add_ons.values()
            ):
                st.create_add_on(existing, a)
    for c in data.get("coupons", []):
        if any(x["code"] == c["code"] for x in st.coupons.values()):
            continue
        out.setdefault("coupons", []).append(st.create_coupon(c)["id"])
    for a in data.get("accounts", []):
        body = {
            k: v for k, v in a.items() if k not in ("decline_code", "billing_info", "created_at")
        }
        account = st.create_account(body, created=a.get("created_at"))
        if a.get("billing_info", True) is not False:
            decline = a.get("decline_code")
            token = f"tok_decline_{decline}" if decline else "tok_visa"
            st.set_billing_info(account, {"token_id": token}, notify=False)
        out.setdefault("accounts", []).append(account["code"])
    for s in data.get("subscriptions", []):
        out.setdefault("subscriptions", []).append(_subscription(em, s))
    for i in data.get("invoices", []):
        out.setdefault("invoices", []).append(_invoice(em, i))
    for u in data.get("usage", []):
        sub = st.subscription(u["subscription_id"])
        usage = st.record_usage(
            sub,
            "code-" + u["add_on_code"],
            {"amount": u["amount"], "usage_timestamp": u["usage_timestamp"]},
        )
        usage["_created"] = float(u["usage_timestamp"])
        usage["created_at"] = iso(u["usage_timestamp"])
        out.setdefault("usage", []).append(usage["id"])
    for ch in data.get("changes", []):
        _change(em, ch)
    st.pending.clear()
    return out


def _subscription(em: RecurlyEmulator, s: Mapping[str, Any]) -> str:
    st = em.store
    account = st.account("code-" + s["account_code"])
    plan = st.plan("code-" + s["plan_code"])
    created = s.get("created_at")
    body = {
        "plan_code": s["plan_code"],
        "currency": s.get("currency", "USD"),
        "quantity": s.get("quantity", 1),
        "unit_amount": s.get("unit_amount"),
        "add_ons": s.get("add_ons"),
        "custom_fields": s.get("custom_fields"),
    }
    sub = st._new_subscription(
        account, plan, body["currency"], {k: v for k, v in body.items() if v is not None}, created
    )
    if s.get("id"):
        st.subscriptions.pop(sub["id"])
        sub["id"] = s["id"]
        for a in sub["add_ons"]:
            a["subscription_id"] = s["id"]
        st.subscriptions[sub["id"]] = sub
    # the current period is the latest full month of its life
    now = st.now()
    start = created if created is not None else now
    period = sub["_period_s"]
    cycles = int(max(now - start, 0) // period)
    sub["current_period_started_at"] = iso(start + cycles * period)
    sub["current_period_ends_at"] = iso(start + (cycles + 1) * period)
    for code in s.get("coupon_codes") or []:
        st.redeem(account, st.coupon("code-" + code), sub["id"])
    state = s.get("state", "active")
    if state == "canceled":
        st.cancel(sub, "bill_date")
    elif state == "expired":
        st.terminate(sub, "none")
    elif state == "paused":
        st.pause(sub, 1)
    st._price(sub)
    st.refresh_flags(account)
    return sub["id"]


def _invoice(em: RecurlyEmulator, i: Mapping[str, Any]) -> str:
    st = em.store
    account = st.account("code-" + i["account_code"])
    sub_ids = [i["subscription_id"]] if i.get("subscription_id") else []
    currency = i.get("currency", "USD")
    inv = st._new_invoice(
        account,
        currency,
        "renewal" if sub_ids else "one_time",
        subscription_ids=sub_ids,
        created=i.get("created_at"),
    )
    if i.get("id"):
        st.invoices.pop(inv["id"])
        inv["id"] = i["id"]
        st.invoices[inv["id"]] = inv
    sub = st.subscriptions.get(sub_ids[0]) if sub_ids else None
    li = st._line_item(
        account,
        {
            "type": "charge",
            "currency": currency,
            "unit_amount": float(i["total"]),
            "quantity": 1,
            "description": sub["plan"]["name"] if sub else "One-time charge",
            "origin": "plan" if sub else "debit",
        },
        subscription=sub,
    )
    st._attach(inv, [li])
    state = i.get("state", "pending")
    declines = int(i.get("declines", 1 if state in ("past_due", "failed") else 0))
    for _ in range(declines):  # declined attempts first (Recurly's retries)
        st.charge(inv, origin="recurring", decline_code=i.get("decline_code") or "declined")
    if state == "paid":
        st.charge(inv, origin="recurring", fail_state=None, force_success=True)
    elif state == "failed":
        st.mark_failed(inv)
    for txn in inv["transactions"]:  # attempts happen when the invoice was made
        if i.get("created_at"):
            st.stamp(txn, created=float(i["created_at"]))
    if i.get("created_at"):
        st.stamp(inv, created=float(i["created_at"]))
    return inv["id"]


def _change(em: RecurlyEmulator, ch: Mapping[str, Any]) -> None:
    """A past immediate change (plan or quantity), with its proration line items dated ``at``."""
    st = em.store
    sub = st.subscription(ch["subscription_id"])
    before = set(st.line_items)
    body = {k: ch[k] for k in ("plan_code", "quantity") if k in ch}
    st.change_subscription(sub, body)
    for lid in set(st.line_items) - before:
        st.stamp(st.line_items[lid], created=float(ch["at"]))
