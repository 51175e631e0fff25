"""The churn sweep's page read on Recurly (issue 15: ≤ 1 vendor call per 20 customers), moved
out of ``connectors/recurly.py``.

Recurly's site lists cannot filter by account, and ``ids`` takes the records' own IDs, so the
sweep walks each list once per sweep (``SWEEP_WALK_TTL_S``, or until the sweep lists its first
page again) at Recurly's limit of 200 and groups it by account code; the accounts come from the
page ``list_customers`` just returned (200 a page: ``RecurlyBilling.sweep_page_size``), one it
did not hold is read alone. The walks read only what the score uses:

- the subscriptions (MRR, terms, cancellation; usage add-ons' usage is read per add-on);
- the invoices (a failed payment's invoice status, and the MRR baseline: the oldest of an
  account's five newest subscription invoices);
- the **failed** payment transactions only (``success=false``): the successes were 5 of every
  6 pages of that walk and the score does not use them;
- the pending credits, and the 90 days' line items (prorations: the downgrades).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.base import NotFound
from domain.churn import SweepSnapshot

#: failed payments kept per account (the per-customer snapshot reads the 10 newest payments)
FAILED_PER_ACCOUNT = 10


@dataclass
class _RecurlyBook:
    """One sweep's walk of the site lists, grouped by account code."""

    at: float
    subscriptions: dict[str, list[Any]] = field(default_factory=dict)
    invoices: dict[str, list[Any]] = field(default_factory=dict)
    payments: dict[str, list[Any]] = field(default_factory=dict)
    credits: dict[str, list[Any]] = field(default_factory=dict)
    prorations: dict[str, list[Any]] = field(default_factory=dict)


def snapshots(
    rb: Any, kit: Any, customer_ids: list[str], invoices: int = 5
) -> dict[str, SweepSnapshot]:
    """A page's snapshots; a customer deleted since the page was listed is absent. ``rb``: the
    ``RecurlyBilling``; ``kit``: its module's helpers and bounds (``to_minor``, ``_invoice``,
    ``_payment``, ``DAY_S``, ``SWEEP_WALK_TTL_S``, ``SWEEP_WALK_PAGES_MAX``), handed in so this
    module does not import the connector back."""
    r = kit
    now = time.time()
    book = _sweep_book(rb, kit, now)
    listed: dict[str, Any] = getattr(rb, "_listed_accounts", {})
    n = max(1, min(invoices, 200))
    out: dict[str, SweepSnapshot] = {}
    for customer_id in dict.fromkeys(customer_ids):
        account = listed.get(customer_id)
        if account is None:
            try:
                account = rb._call(
                    lambda c, cid=customer_id: c.get_account(f"code-{cid}"),
                    f"account {customer_id}",
                )
            except NotFound:
                continue
        raw_subs = book.subscriptions.get(customer_id, [])
        subs = [rb._subscription(s) for s in raw_subs]
        live = [s for s in subs if s.status in ("active", "non_renewing", "paused", "future")]
        credit = sum(-r.to_minor(i.amount, i.currency) for i in book.credits.get(customer_id, []))
        currency = (live[0].currency if live else None) or (subs[0].currency if subs else "USD")
        usage = rb._usage(raw_subs, now)
        out[customer_id] = SweepSnapshot(
            customer=rb._customer(account, mrr=sum(s.mrr for s in live), currency=currency),
            subscriptions=subs,
            invoices=[r._invoice(i) for i in book.invoices.get(customer_id, [])[:n]],
            payments=[r._payment(t) for t in book.payments.get(customer_id, [])],
            credit_balance=max(credit, 0),
            downgrades_90d=downgrade_count(book.prorations.get(customer_id, [])),
            usage_30d=usage[0] if usage else None,
            usage_prev_30d=usage[1] if usage else None,
        )
    return out


def _sweep_book(rb: Any, kit: Any, now: float) -> _RecurlyBook:
    """One walk of each site list the snapshots need, grouped by account code, in the order one
    account's list would give (subscriptions, invoices and payments newest first; the 90 days'
    line items oldest first)."""
    r = kit
    cached: _RecurlyBook | None = getattr(rb, "_sweep_cache", None)
    if cached is not None and now - cached.at < r.SWEEP_WALK_TTL_S:
        return cached
    book = _RecurlyBook(at=now)
    since = datetime.fromtimestamp(now - 90 * r.DAY_S, UTC)
    walks: list[tuple[Any, dict[str, list[Any]], str, int]] = [
        (
            lambda c: c.list_subscriptions(params={"limit": 200}),
            book.subscriptions,
            "subscriptions",
            1_000,
        ),
        (
            lambda c: c.list_invoices(params={"limit": 200, "order": "desc"}),
            book.invoices,
            "invoices",
            200,
        ),
        (
            lambda c: c.list_transactions(
                params={"limit": 200, "order": "desc", "type": "payment", "success": "false"}
            ),
            book.payments,
            "transactions",
            FAILED_PER_ACCOUNT,
        ),
        (
            lambda c: c.list_line_items(
                params={"limit": 200, "state": "pending", "type": "credit"}
            ),
            book.credits,
            "line items",
            1_000,
        ),
        (
            lambda c: c.list_line_items(params={"limit": 200, "begin_time": since, "order": "asc"}),
            book.prorations,
            "line items",
            1_000,
        ),
    ]
    for fetch, into, what, keep in walks:
        for item in rb._scan(fetch, what, pages=r.SWEEP_WALK_PAGES_MAX):
            rows = into.setdefault(item.account.code, [])
            if len(rows) < keep:
                rows.append(item)
    rb._sweep_cache = book
    return book


def downgrade_count(line_items: list[Any]) -> int:
    """``RecurlyBilling._downgrades`` over line items already read (one account's, oldest
    first): per change (subscription, time), a proration credit above its charge."""
    groups: dict[tuple[str, str], dict[str, float]] = {}
    for li in line_items:
        if (
            li.proration_rate is None
            or not li.subscription_id
            or li.origin not in ("plan", "add_on")
        ):
            continue
        key = (li.subscription_id, str(li.created_at))
        groups.setdefault(key, {})[li.type] = float(li.unit_amount or 0) * int(li.quantity or 1)
    return sum(1 for g in groups.values() if "credit" in g and g.get("charge", 0) < g["credit"])
