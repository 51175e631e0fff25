"""A month with a Stripe refund and no credit note, closed end to end: the close reads the month's
refunds with the ``stripe`` client (``GET /v1/refunds``), finds the refunded invoice through the
payment intent it was paid by, reverses the refund by ``domain.revenue.refund_lines`` and posts
the entry to the NetSuite sandbox once approved; a refund a credit note names is not reversed a
second time; a second close of the month posts nothing.

The hand computation (today is day ``t + 1`` of a month of ``days`` days; every line starts on
the 1st):

- invoice A, paid by card: ``pro`` 6,000 and ``addon`` 3,000, each over 60 days (100 and 50 a
  day); the month recognizes ``100·days + 50·days``. Refunded 3,000 today with no credit note:
  shared 2,000 / 1,000 (in proportion); each share is less than what its line has not recognized
  yet (6,000 − 100·t and 3,000 − 50·t), so it is spread over the line's remaining ``60 − t``
  days from today, of which ``days − t`` fall in this month: the month gives back
  ``⌊2,000·(days − t)/(60 − t)⌋ + ⌊1,000·(days − t)/(60 − t)⌋``.
- invoice B, paid by card: 100·days over this month; a credit note of 400 with ``refund_amount``
  400 (a refund the credit note names): −400 today through the credit note, nothing through the
  refund.
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from activities.revenue import RevenueActivities
from connectors.revenue import revenue_source
from connectors.stripe import StripeBilling
from domain.approvals import QUERY, PendingApproval
from domain.policy import Outcome
from domain.revenue import WORKFLOW_TYPE, RevenueCloseInput, RevenueCloseResult, month_of
from domain.settings import StripeSettings
from sandbox.framework import ServerThread
from sandbox.netsuite import NetSuiteEmulator
from sandbox.stripe import StripeEmulator
from tests.fast.fakes import Fakes, answer, counter, governance
from tests.pairs import eventually
from tests.revenue.conftest import POLICY_DIR, revenue_worker
from tests.revenue.test_revenue_sandboxes import ACCOUNT, TBA, netsuite

API_KEY = "sk_test_revbridge_refund_close"


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    stripe_em = StripeEmulator(api_key=API_KEY, realistic=False)
    ns_em = NetSuiteEmulator(account_id=ACCOUNT, tba=[TBA])
    with ServerThread({stripe_em: 0, ns_em: 0}) as thread:
        yield thread.urls


def paid_invoice(stripe, customer: str, items: list[dict]) -> dict:  # noqa: ANN001
    inv = stripe.v1.invoices.create({"customer": customer, "collection_method": "send_invoice",
                                     "days_until_due": 30})  # fmt: skip
    for item in items:
        stripe.v1.invoice_items.create({"customer": customer, "invoice": inv.id, **item})
    stripe.v1.invoices.finalize_invoice(inv.id)
    return stripe.v1.invoices.pay(inv.id).to_dict()


async def close(client: Client, acts: RevenueActivities, month: str) -> RevenueCloseResult:
    fakes = governance(Fakes(), post_journal_entry=Outcome.NEEDS_APPROVAL).on(
        "upsert_crm_task", counter("task")
    )
    async with revenue_worker(client, fakes, acts) as tq:
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            RevenueCloseInput(billing="stripe", month=month),
            id=f"revenue-close:stripe:{month}:{uuid.uuid4().hex[:6]}",
            task_queue=tq,
            result_type=RevenueCloseResult,
        )

        async def pending_or_done() -> list[PendingApproval] | None:
            desc = await handle.describe()
            if desc.status and desc.status.name != "RUNNING":
                return None
            return await handle.query(QUERY, result_type=list[PendingApproval])

        pending = await eventually(pending_or_done, lambda p: p is None or bool(p), "approval")
        if pending:
            await answer(handle, pending[0].action_id)
        return await handle.result()


async def test_a_refund_without_credit_note_reverses_revenue_in_the_close(
    client: Client, urls: dict[str, str]
) -> None:
    billing = StripeBilling(
        StripeSettings(api_key=SecretStr(API_KEY), api_url=urls["stripe"]), timeout_s=5.0
    )
    stripe = billing.client
    now = datetime.now(UTC)
    month = month_of(now.date())
    first = datetime(now.year, now.month, 1, tzinfo=UTC)
    days = calendar.monthrange(now.year, now.month)[1]
    t = now.day - 1
    sixty = {"start": int(first.timestamp()), "end": int((first + timedelta(days=60)).timestamp())}
    whole = {
        "start": int(first.timestamp()),
        "end": int((first + timedelta(days=days)).timestamp()),
    }
    cus = stripe.v1.customers.create({"name": f"Refund {uuid.uuid4().hex[:6]}"}).id
    a = paid_invoice(stripe, cus, [
        {"amount": 6_000, "currency": "usd", "period": sixty, "description": "pro"},
        {"amount": 3_000, "currency": "usd", "period": sixty, "description": "addon"},
    ])  # fmt: skip
    b = paid_invoice(stripe, cus, [{"amount": 100 * days, "currency": "usd", "period": whole}])
    (pay_a,) = stripe.v1.invoice_payments.list({"invoice": a["id"]}).data
    refund = stripe.v1.refunds.create({"payment_intent": pay_a.payment.payment_intent,
                                       "amount": 3_000})  # fmt: skip
    cn = stripe.v1.credit_notes.create({"invoice": b["id"], "amount": 400, "refund_amount": 400})
    named = cn.refunds[0].refund
    assert stripe.v1.refunds.retrieve(named).amount == 400  # a real refund, named by the note

    expected = (
        150 * days
        - 2_000 * (days - t) // (60 - t)
        - 1_000 * (days - t) // (60 - t)
        + 100 * days
        - 400
    )
    # the source alone: the refund's reversal lines, nothing for the refund the note names
    source = revenue_source(billing)
    cursor: str | None = None
    lines = []
    while True:
        page = source.revenue_lines(first.date() - timedelta(days=31), now.date() + timedelta(
            days=1), cursor, 100)  # fmt: skip
        lines.extend(page.lines)
        cursor = page.next_cursor
        if cursor is None:
            break
    reversed_ = [x for x in lines if x.source_id.startswith(refund.id)]
    assert sum(x.amount for x in reversed_) == -3_000 and len(reversed_) == 2
    assert all(x.start == now.date() for x in reversed_)
    assert not [x for x in lines if x.source_id.startswith(named)]

    erp = netsuite(urls)
    acts = RevenueActivities(revenue_source(billing), erp, POLICY_DIR / "revenue.yaml")
    result = await close(client, acts, month)
    assert result.outcome == "executed", result
    posted = httpx.get(urls["netsuite"] + "/_sandbox/netsuite/journal_entries").json()
    mine = [e for e in posted["journal_entries"] if e["externalId"].startswith(f"rb-rev-{month}-")]
    assert len(mine) == 1 and mine[0]["externalId"] in result.posted
    items = mine[0]["line"]["items"] if "line" in mine[0] else mine[0]["lines"]
    debits = sum(round(float(x.get("debit") or 0) * 100) for x in items)
    credits = sum(round(float(x.get("credit") or 0) * 100) for x in items)
    assert debits == credits == expected  # balances, at the hand-computed revenue

    again = await close(client, acts, month)
    erp.close()
    assert again.outcome == "nothing_new" and again.adjustments == []
    posted = httpx.get(urls["netsuite"] + "/_sandbox/netsuite/journal_entries").json()
    assert len([e for e in posted["journal_entries"]
                if e["externalId"].startswith(f"rb-rev-{month}-")]) == 1  # fmt: skip
