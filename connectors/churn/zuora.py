"""The churn sweep's page read on Zuora (issue 15), moved out of ``connectors/zuora.py``: no
request per customer any more.

For a page of at most 99 accounts (Object Query's ``IN`` and ``pageSize`` bound), all Object
Query reads with ``accountId.IN:[…]``:

- the accounts come from the page ``list_customers`` just returned (``id.IN`` only for one it
  did not hold);
- ``subscriptions`` (latest versions) with ``expand[]=rateplans``,
  ``rateplans.rateplancharges``, ``rateplans.rateplancharges.rateplanchargetiers`` and
  ``rateplans.productrateplan``: the rate plans and charges the per-customer read took from
  ``GET /v1/subscriptions/accounts/{key}`` (one request per customer);
- ``invoices``, the **unpaid** ones only (``status.EQ:Posted``, ``balance.GT:0``), with
  ``expand[]=invoiceitems.subscription``: an unpaid invoice's subscription from its items, which
  the per-customer read took from ``GET /v1/invoices/{id}/items`` (one request per unpaid
  invoice). They are all the score uses of invoices on Zuora: a declined payment is never applied
  to its invoice (no invoice to look up for it), and only an unpaid invoice carries its
  subscription into the MRR baseline;
- ``payments``, the **failed** ones only (``status.EQ:Error``): the score counts failures;
- ``usages``; the orders behind downgrades walked once per sweep (``_downgrades_walk``). Not
  read: the unapplied credit memos (the snapshot's credit is the account's balance only; the
  score does not use credit).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from domain.churn import SweepSnapshot
from domain.records import Subscription

SUBSCRIPTION_EXPAND = [
    "rateplans",
    "rateplans.rateplancharges",
    "rateplans.rateplancharges.rateplanchargetiers",
    "rateplans.productrateplan",
]


def snapshots(zb: Any, kit: Any, customer_ids: list[str], invoices: int = 5) -> dict[str, Any]:
    """A page's snapshots; an account deleted since the page was listed is absent. ``zb``: the
    ``ZuoraBilling``; ``kit``: its module's helpers and bounds (``minor``, ``_ts``,
    ``_status``, ``BULK_IN_MAX``, ``BULK_PAGES_MAX``), handed in so this module does not import
    the connector back."""
    z = kit
    out: dict[str, SweepSnapshot] = {}
    ids = list(dict.fromkeys(customer_ids))
    for start in range(0, len(ids), z.BULK_IN_MAX):
        out.update(_chunk(zb, kit, ids[start : start + z.BULK_IN_MAX], invoices))
    return out


def _chunk(zb: Any, kit: Any, ids: list[str], invoices: int) -> dict[str, SweepSnapshot]:
    z = kit
    listed: dict[str, dict[str, Any]] = getattr(zb, "_listed_accounts", {})
    accounts = {cid: listed[cid] for cid in ids if cid in listed}
    missing = [cid for cid in ids if cid not in accounts]
    if missing:
        accounts.update(
            {
                str(a["id"]): a
                for a in zb._query_all(
                    "accounts",
                    [f"id.IN:[{','.join(missing)}]"],
                    max_pages=2,
                    expand=["billTo"],
                )
            }
        )
    ids = [cid for cid in ids if cid in accounts]
    if not ids:
        return {}
    among = f"[{','.join(ids)}]"
    subs_of: dict[str, list[dict[str, Any]]] = {}
    for s in zb._query_all(
        "subscriptions",
        [f"accountId.IN:{among}", "isLatestVersion.EQ:true"],
        max_pages=z.BULK_PAGES_MAX,
        expand=SUBSCRIPTION_EXPAND,
    ):
        subs_of.setdefault(str(s.get("accountId")), []).append(s)
    by_account: dict[str, list[dict[str, Any]]] = {}
    for inv in zb._query_all(
        "invoices",
        [f"accountId.IN:{among}", "status.EQ:Posted", "balance.GT:0"],
        sort="invoiceDate.DESC",
        max_pages=z.BULK_PAGES_MAX,
        expand=["invoiceitems.subscription"],
    ):
        by_account.setdefault(str(inv.get("accountId")), []).append(inv)
    payments: dict[str, list[dict[str, Any]]] = {}
    for p in zb._query_all(
        "payments",
        [f"accountId.IN:{among}", "status.EQ:Error"],
        sort="createdDate.DESC",
        max_pages=z.BULK_PAGES_MAX,
        expand=["paymentApplications"],
    ):
        payments.setdefault(str(p.get("accountId")), []).append(p)
    now = time.time()
    usage = zb._usage_in(among, now)
    downgrades = zb._downgrades_walk(now)
    out: dict[str, SweepSnapshot] = {}
    for customer_id in ids:
        acct = accounts[customer_id]
        currency = str(acct.get("currency") or "USD").upper()
        raw_subs = subs_of.get(customer_id, [])
        subs = [subscription(kit, s, currency) for s in raw_subs]
        invs = by_account.get(customer_id, [])[: max(1, min(invoices, 99))]
        sub_of = {}
        for inv in invs:
            if inv.get("status") == "Posted" and z.minor(inv.get("balance"), currency) > 0:
                sub_of[inv["id"]] = _invoice_subscription(inv)
        # the account's credit balance only: the unapplied credit memos (a credit-memos read
        # per page) are not read, as the score does not use credit (support context does, from
        # the per-customer snapshot)
        credit = z.minor(acct.get("creditBalance"), currency)
        used = usage.get(customer_id) if usage is not None else None
        out[customer_id] = SweepSnapshot(
            customer=zb._customer(acct, mrr=sum(s.mrr for s in subs)),
            subscriptions=subs,
            invoices=[zb._invoice(i, sub_of.get(i["id"])) for i in invs],
            payments=[zb._payment(p, None) for p in payments.get(customer_id, [])[:10]],
            credit_balance=credit,
            downgrades_90d=sum(downgrades.get(s.id, 0) for s in subs),
            usage_30d=used[0] if used else None,
            usage_prev_30d=used[1] if used else None,
        )
    return out


def _invoice_subscription(inv: dict[str, Any]) -> str | None:
    """The subscription (its number) the invoice's first subscription item bills."""
    return next(
        (
            str(item["subscription"]["name"])
            for item in inv.get("invoiceItems") or []
            if (item.get("subscription") or {}).get("name")
        ),
        None,
    )


def subscription(kit: Any, sub: dict[str, Any], currency: str) -> Subscription:
    """``ZuoraBilling._subscription`` for an Object Query subscription (``ExpandedSubscription``
    with its rate plans, charges and tiers): the number is ``name``, the net MRR ``cMRR``, a
    discount charge's percentage sits on its tier, and a cancellation still to come is the
    ``subscriptionEndDate`` of an active subscription (the v1 read's ``scheduledCancelDate``)."""
    z = kit
    cur = str(sub.get("currency") or currency).upper()
    now = datetime.now(UTC)
    main = None
    keep = 1.0
    for rp in sub.get("ratePlans") or []:
        for ch in rp.get("ratePlanCharges") or []:
            end = z._ts(ch.get("effectiveEndDate"))
            if end is not None and end <= now:
                continue
            tier = (ch.get("ratePlanChargeTiers") or [{}])[0]
            if "discount" in str(ch.get("chargeModel") or "").lower().replace("-", ""):
                keep *= 1 - float(tier.get("discountPercentage") or 0) / 100
            elif main is None and ch.get("chargeType") == "Recurring":
                main = (rp, ch)
    ends = sub.get("subscriptionEndDate") or sub.get("cancelledDate")
    status = z._status(sub)
    if status == "active" and ends and (z._ts(ends) or now) > now:
        status = "non_renewing"
    plan = ""
    if main is not None:
        prp = main[0].get("productRatePlan") or {}
        plan = str(prp.get("productRatePlanNumber") or main[0].get("productRatePlanId") or "")
    return Subscription(
        id=str(sub.get("name") or sub["id"]),
        customer_id=str(sub.get("accountId") or ""),
        status=status,
        plan=plan,
        quantity=int(float(main[1].get("quantity") or 1)) if main else 1,
        mrr=z.minor(sub.get("cMRR"), cur),
        currency=cur,
        started_at=z._ts(sub.get("subscriptionStartDate") or sub.get("contractEffectiveDate")),
        current_term_end=z._ts(sub.get("termEndDate")),
        cancel_at=z._ts(ends),
        discount_percent=round((1 - keep) * 100, 4),
    )
