"""Stripe's constants (statuses, expansions, metadata and field limits) and the pure conversions
from Stripe's objects to ours: invoices, payments, prices, subscriptions (MRR normalised to a
month), customers; and the note keys stored in metadata."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Any

from domain.messages import locale_language
from domain.models import (
    BillingCustomer,
    Invoice,
    InvoiceStatus,
    Payment,
)
from domain.records import (
    Price,
    Subscription,
    SubscriptionRef,
)

_STATUS = {
    "paid": InvoiceStatus.PAID,
    "open": InvoiceStatus.OPEN,
    "void": InvoiceStatus.VOID,
    "draft": InvoiceStatus.OTHER,
    "uncollectible": InvoiceStatus.OTHER,
}
#: one call for the whole context: customer, subscription (for MRR) and payment attempts
#: (each ``invoice_payment`` with its payment intent). Stripe allows four expansion levels.
_INVOICE_EXPAND = [
    "customer",
    "parent.subscription_details.subscription",
    "payments.data.payment.payment_intent",
]
#: recurring interval → months per interval (MRR is the monthly-normalised recurring amount)
_MONTHS_PER_INTERVAL = {
    "month": Fraction(1),
    "year": Fraction(12),
    "week": Fraction(12, 52),
    "day": Fraction(12, 365),
}
#: subscriptions that no longer (or not yet) bring revenue
_NO_REVENUE = {"canceled", "incomplete", "incomplete_expired"}
#: subscriptions that are over: cancelling one again is success, and they are never "the" one
_ENDED = {"canceled", "incomplete_expired"}
#: what a CRM-linked object carries in its metadata
CRM_KEY, CRM_ACCOUNT_KEY, CRM_OPPORTUNITY_KEY = "crm", "crm_account_id", "crm_opportunity_id"
DAY_S = 86_400
METADATA_PREFIX = "rb_"
METADATA_VALUE_MAX = 500  # Stripe's limit per metadata value (and 40 characters per key)
METADATA_KEYS_MAX = 50  # Stripe's limit of metadata keys per object
_NOTE_HEADROOM = 5  # notes dropped beyond the one that must go, when an object is full
#: how long a write may take to show in Stripe's search (docs: "less than a minute" normally);
#: the reads that must not miss a recent write list the customers created in this window too
SEARCH_LAG_WINDOW_S = 600
#: at most this many customer events are read for that window (10 pages; one in a quiet account)
RECENT_EVENTS_MAX = 1000
#: documented field limits RevBridge writes to
COUPON_NAME_MAX = 40
DESCRIPTION_MAX = 350  # customer balance transaction description
CANCELLATION_COMMENT_MAX = 500  # kept as before (Stripe documents no lower limit)
_EPOCH = datetime.fromtimestamp(0, UTC)


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _upper(currency: Any) -> str:
    return str(currency or "usd").upper()


def note_key(idempotency_key: str) -> str:
    """The metadata key a note is stored under: stable per idempotency key, 15 characters."""
    return METADATA_PREFIX + hashlib.sha256(idempotency_key.encode()).hexdigest()[:12]


def monthly_recurring(subscription: Mapping[str, Any]) -> int:
    """MRR in minor units: each licensed item's ``unit_amount × quantity`` normalised to a month.

    Metered and tiered prices (no ``unit_amount``/quantity) and ended subscriptions count 0.
    """
    if subscription.get("status") in _NO_REVENUE:
        return 0
    return round(_items_monthly(subscription.get("items")))


def _items_monthly(items: Any) -> Fraction:
    """The monthly-normalised amount of a subscription's ``items`` list (no status check)."""
    return sum(
        (_item_monthly(item) for item in ((items or {}).get("data") or [])), start=Fraction(0)
    )


def _item_monthly(item: Mapping[str, Any]) -> Fraction:
    price = item.get("price") or {}
    recurring = price.get("recurring") or {}
    months = _MONTHS_PER_INTERVAL.get(recurring.get("interval") or "")
    unit = price.get("unit_amount")
    if months is None or unit is None or recurring.get("usage_type") == "metered":
        return Fraction(0)
    count = int(recurring.get("interval_count") or 1)
    quantity = int(item.get("quantity") if item.get("quantity") is not None else 1)
    return Fraction(int(unit) * quantity) / (months * count)


def _cut(text: str, limit: int) -> str:
    """``text`` within a documented length limit (an ellipsis marks a cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quote(value: str) -> str:
    """A search-query string literal (Stripe escapes quotes inside with a backslash)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _customer(
    cust: Mapping[str, Any], *, mrr: int = 0, currency: str | None = None
) -> BillingCustomer:
    return BillingCustomer(
        id=str(cust["id"]),
        company=cust.get("name") or cust.get("business_name") or None,
        email=cust.get("email") or None,
        created_at=_ts(cust.get("created")),
        metadata={
            str(k): str(v)
            for k, v in (cust.get("metadata") or {}).items()
            if not str(k).startswith(METADATA_PREFIX)
        },
        mrr=mrr,
        currency=currency or _upper(cust.get("currency")),
        language=locale_language(next(iter(cust.get("preferred_locales") or []), None)),
    )


def _invoice(inv: Mapping[str, Any]) -> Invoice:
    customer = inv.get("customer")
    sub = _subscription_of(inv)
    return Invoice(
        id=str(inv["id"]),
        customer_id=str(customer.get("id") if isinstance(customer, dict) else customer),
        subscription_id=sub.get("id") if isinstance(sub, dict) else sub,
        status=_STATUS.get(inv.get("status") or "", InvoiceStatus.OTHER),
        total=int(inv.get("total") or 0),
        amount_due=int(inv.get("amount_due") or 0),
        currency=_upper(inv.get("currency")),
        issued_at=_ts(inv.get("created")),
    )


def _price(price: Mapping[str, Any]) -> Price:
    recurring = price.get("recurring") or {}
    product = price.get("product")
    return Price(
        id=str(price["id"]),
        product=str(product.get("id") if isinstance(product, dict) else product or ""),
        unit_amount=int(price.get("unit_amount") or 0),
        currency=_upper(price.get("currency")),
        period=recurring.get("interval") or "one_time",
        period_count=int(recurring.get("interval_count") or 1),
    )


def _start_params(start: date | None, price: Price, now: float) -> dict[str, Any]:
    """How a future start date is expressed (see ``create_subscription``)."""
    if start is None:
        return {}
    at = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    if at <= now:
        return {}
    months = _MONTHS_PER_INTERVAL.get(price.period)
    # The next natural billing date, conservatively (a month is at least 28 days).
    horizon = now + float(months or 0) * price.period_count * 28 * DAY_S
    if at <= horizon:
        return {"billing_cycle_anchor": at, "proration_behavior": "none"}
    return {"trial_end": at}


def _replayed(obj: Any) -> bool:
    """Whether Stripe answered from its idempotency store (``Idempotent-Replayed: true``)."""
    response = getattr(obj, "last_response", None)
    headers = response.headers if response is not None else {}
    return any(
        k.lower() == "idempotent-replayed" and str(v).lower() == "true" for k, v in headers.items()
    )


def _ref(sub: Mapping[str, Any], percent: float, *, created: bool) -> SubscriptionRef:
    """The deal's MRR (items × price after the deal discount): also while ``incomplete``
    (awaiting its first payment), since that is what was sold; 0 once it ended."""
    factor = Fraction(1) - Fraction(str(percent)) / 100
    mrr = 0 if sub.get("status") in _ENDED else round(_items_monthly(sub.get("items")) * factor)
    return SubscriptionRef(
        id=str(sub["id"]),
        customer_id=str(sub["customer"]),
        status=str(sub.get("status")),
        mrr=max(0, mrr),
        currency=_upper(sub.get("currency")),
        created=created,
    )


def _coupon_id(discount: Mapping[str, Any]) -> str | None:
    coupon = (discount.get("source") or {}).get("coupon") or discount.get("coupon")
    return str(coupon.get("id") if isinstance(coupon, dict) else coupon) if coupon else None


def _ended(discount: Mapping[str, Any], now: float) -> bool:
    end = discount.get("end")
    return end is not None and int(end) <= now


def _subscription(sub: Mapping[str, Any], now: float) -> Subscription:
    """A subscription with its MRR after its active discounts (expanded coupons only)."""
    items = (sub.get("items") or {}).get("data") or []
    main = max(items, key=_item_monthly, default={})  # the item that earns the most
    monthly = Fraction(0) if sub.get("status") in _NO_REVENUE else _items_monthly(sub.get("items"))
    factor, amount_off = Fraction(1), Fraction(0)
    first = ((items[0].get("price") or {}).get("recurring") or {}) if items else {}
    months = _MONTHS_PER_INTERVAL.get(first.get("interval") or "", Fraction(1)) * int(
        first.get("interval_count") or 1
    )
    for discount in sub.get("discounts") or []:
        coupon = (
            (discount.get("source") or {}).get("coupon") if isinstance(discount, dict) else None
        )
        if not isinstance(coupon, dict) or _ended(discount, now):
            continue  # not expanded, or over
        if coupon.get("percent_off"):
            factor *= 1 - Fraction(str(coupon["percent_off"])) / 100
        elif coupon.get("amount_off"):
            amount_off += Fraction(int(coupon["amount_off"])) / months  # per invoice → per month
    quantity = main.get("quantity")
    return Subscription(
        id=str(sub["id"]),
        customer_id=str(sub["customer"]),
        status=str(sub.get("status")),
        plan=str((main.get("price") or {}).get("id") or ""),
        quantity=int(quantity) if quantity is not None else 1,
        mrr=max(0, round(monthly * factor - amount_off)),
        currency=_upper(sub.get("currency")),
        started_at=_ts(sub.get("start_date")),
        # current API versions keep the period on the items
        current_term_end=_ts(main.get("current_period_end") or sub.get("current_period_end")),
        cancel_at=_ts(sub.get("cancel_at")),
        discount_percent=float(round((1 - factor) * 100, 4)),
    )


def _intent_payment(pi: Mapping[str, Any], invoice_id: str | None) -> Payment | None:
    """A payment intent as a payment attempt; None for one never attempted yet."""
    error = pi.get("last_payment_error") or None
    succeeded = pi.get("status") == "succeeded"
    if not succeeded and error is None:
        return None
    return Payment(
        id=str(pi["id"]),
        invoice_id=invoice_id,
        succeeded=succeeded,
        amount=int((pi.get("amount_received") if succeeded else pi.get("amount")) or 0),
        currency=_upper(pi.get("currency")),
        decline_code=None if succeeded else (error.get("decline_code") or error.get("code")),
        decline_message=None if succeeded else error.get("message"),
        at=_ts(pi.get("created")),
    )


def _is_downgrade(obj: Mapping[str, Any], previous: Mapping[str, Any]) -> bool:
    """A lower monthly amount (fewer seats or a cheaper price) after the update than before.
    ``previous_attributes.items`` holds the whole old item list; older API versions also had
    top-level ``quantity`` / ``plan``."""
    if isinstance(previous.get("items"), dict):
        return _items_monthly(obj.get("items")) < _items_monthly(previous["items"])
    old_qty, new_qty = previous.get("quantity"), obj.get("quantity")
    if old_qty is not None and new_qty is not None and int(new_qty) < int(old_qty):
        return True
    old_plan, new_plan = previous.get("plan"), obj.get("plan")
    if isinstance(old_plan, dict) and isinstance(new_plan, dict):
        return int(new_plan.get("amount") or 0) < int(old_plan.get("amount") or 0)
    return False


def _subscription_of(inv: Mapping[str, Any]) -> Any:
    parent = inv.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return details.get("subscription")


def _payment(ip: Mapping[str, Any], invoice_id: str, currency: str) -> Payment | None:
    """One ``invoice_payment`` as a payment attempt; None for one never attempted yet."""
    pi = (ip.get("payment") or {}).get("payment_intent")
    status = ip.get("status")
    if isinstance(pi, dict):
        error = pi.get("last_payment_error") or None
        succeeded = pi.get("status") == "succeeded"
        if not succeeded and error is None:
            return None  # created (or processing) but no attempt has failed
        amount = pi.get("amount_received") if succeeded else pi.get("amount")
        paid_at = (ip.get("status_transitions") or {}).get("paid_at")
        return Payment(
            id=str(pi["id"]),
            invoice_id=invoice_id,
            succeeded=succeeded,
            amount=int(amount or ip.get("amount_requested") or 0),
            currency=_upper(pi.get("currency") or currency),
            decline_code=(error or {}).get("decline_code") or (error or {}).get("code"),
            decline_message=(error or {}).get("message"),
            at=_ts(paid_at if succeeded and paid_at else ip.get("created")),
        )
    if status == "paid":  # paid another way (e.g. out of band, a charge)
        return Payment(
            id=str(ip["id"]),
            invoice_id=invoice_id,
            succeeded=True,
            amount=int(ip.get("amount_paid") or 0),
            currency=_upper(ip.get("currency") or currency),
            at=_ts((ip.get("status_transitions") or {}).get("paid_at") or ip.get("created")),
        )
    return None
