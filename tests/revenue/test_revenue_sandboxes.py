"""The month close end to end through the sandboxes and the official-shape clients: Stripe's
invoices and a credit note read with the ``stripe`` client (periods, the credited line's unused
days), the entries posted to the NetSuite sandbox with TBA (Authlib-signed, HMAC-SHA256) — and
the first post answered only after the client gave up (committed, then a timeout): the
activity's retry finds the entry by its external ID, so the sandbox ledger holds one entry."""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from activities.revenue import RevenueActivities
from connectors.chargebee import ChargebeeBilling
from connectors.netsuite import NetSuiteErp
from connectors.revenue import revenue_source
from connectors.stripe import StripeBilling
from domain.approvals import QUERY, PendingApproval
from domain.policy import Outcome
from domain.revenue import WORKFLOW_TYPE, RevenueCloseInput, RevenueCloseResult, month_of
from domain.settings import ChargebeeSettings, NetSuiteSettings, StripeSettings
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.netsuite import NetSuiteEmulator, TbaCredentials
from sandbox.stripe import StripeEmulator
from tests.fast.fakes import Fakes, answer, counter, governance
from tests.pairs import eventually
from tests.revenue.conftest import POLICY_DIR, revenue_worker
from tests.revenue.test_revenue_close import EUR_LINES, USD_LINES, april_book

API_KEY = "sk_test_revbridge_revenue"
ACCOUNT = "7654321_SB1"
TBA = TbaCredentials(
    consumer_key="ck-rev-0001", consumer_secret="cs-rev", token_id="tk-rev-0001", token_secret="ts"
)
PUT_PATH = r"/services/rest/record/v1/journalEntry/eid:.*"


@pytest.fixture(scope="module")
def urls() -> Iterator[dict[str, str]]:
    stripe_em = StripeEmulator(api_key=API_KEY)
    ns_em = NetSuiteEmulator(account_id=ACCOUNT, tba=[TBA])
    with ServerThread({stripe_em: 0, ns_em: 0}) as thread:
        yield thread.urls


def ts(d: datetime) -> int:
    return int(d.timestamp())


def netsuite(urls: dict[str, str]) -> NetSuiteErp:
    """The connector over TBA (Authlib-signed), with a short timeout (the fault outlasts it)."""
    return NetSuiteErp(
        NetSuiteSettings.model_validate(
            {
                "account_id": ACCOUNT,
                "api_url": urls["netsuite"],
                "consumer_key": TBA.consumer_key,
                "consumer_secret": TBA.consumer_secret,
                "token_id": TBA.token_id,
                "token_secret": TBA.token_secret,
            }
        ),
        timeout_s=1.0,
    )


def invoice(client, customer: str, items: list[dict]) -> dict:  # noqa: ANN001
    inv = client.v1.invoices.create({"customer": customer, "collection_method": "send_invoice",
                                     "days_until_due": 30})  # fmt: skip
    for item in items:
        client.v1.invoice_items.create({"customer": customer, "invoice": inv.id, **item})
    return client.v1.invoices.finalize_invoice(inv.id).to_dict()


async def test_a_month_closed_from_stripe_posts_once_to_netsuite(
    client: Client, urls: dict[str, str]
) -> None:
    billing = StripeBilling(
        StripeSettings(api_key=SecretStr(API_KEY), api_url=urls["stripe"]), timeout_s=5.0
    )
    erp = netsuite(urls)
    stripe = billing.client
    now = datetime.now(UTC)
    month = month_of(now.date())
    first = datetime(now.year, now.month, 1, tzinfo=UTC)
    days = calendar.monthrange(now.year, now.month)[1]
    nxt = first + timedelta(days=days)
    usd = stripe.v1.customers.create({"name": f"Rev {uuid.uuid4().hex[:6]}"}).id
    eur = stripe.v1.customers.create({"name": f"Rev {uuid.uuid4().hex[:6]}"}).id
    # 31.00 USD for the whole month; then a credit note gives back 10.00 of it from today on
    whole = invoice(stripe, usd, [{"amount": 3_100, "currency": "usd",
                                   "period": {"start": ts(first), "end": ts(nxt)}}])  # fmt: skip
    # 30.00 USD over 30 days from the 17th (1.00 a day): this month has days - 16 of them
    invoice(stripe, usd, [{"amount": 3_000, "currency": "usd",
                           "period": {"start": ts(first + timedelta(days=16)),
                                      "end": ts(first + timedelta(days=46))}}])  # fmt: skip
    invoice(stripe, eur, [{"amount": 4_200, "currency": "eur",
                           "period": {"start": ts(first), "end": ts(nxt)}}])  # fmt: skip
    line_id = whole["lines"]["data"][0]["id"]
    stripe.v1.credit_notes.create({"invoice": whole["id"], "lines": [
        {"type": "invoice_line_item", "invoice_line_item": line_id, "amount": 1_000}]})  # fmt: skip
    usd_total = 3_100 - 1_000 + (days - 16) * 100

    httpx.post(
        urls["netsuite"] + "/_sandbox/faults",
        json={"kind": "commit_then_timeout", "method": "PUT", "path": PUT_PATH, "delay_s": 2.5},
    ).raise_for_status()
    acts = RevenueActivities(revenue_source(billing), erp, POLICY_DIR / "revenue.yaml")
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
        (pending,) = await eventually(
            lambda: handle.query(QUERY, result_type=list[PendingApproval]), bool, "approval"
        )
        await answer(handle, pending.action_id)
        result = await handle.result()
    erp.close()

    assert result.outcome == "executed" and result.documents == 4
    posted = httpx.get(urls["netsuite"] + "/_sandbox/netsuite/journal_entries").json()
    mine = [e for e in posted["journal_entries"] if e["externalId"].startswith(f"rb-rev-{month}-")]
    assert sorted(e["externalId"] for e in mine) == sorted(result.posted)  # one entry each
    by_cur = {e["externalId"].split("-")[4]: e for e in mine}
    assert set(by_cur) == {"usd", "eur"}
    usd_lines = (
        by_cur["usd"]["line"]["items"] if "line" in by_cur["usd"] else by_cur["usd"]["lines"]
    )
    debits = sum(float(x.get("debit") or 0) for x in usd_lines)
    credits = sum(float(x.get("credit") or 0) for x in usd_lines)
    assert round(debits * 100) == round(credits * 100) == usd_total
    puts = httpx.get(urls["netsuite"] + "/_sandbox/requests", params={"method": "PUT"}).json()[
        "requests"
    ]
    assert len(puts) == 2 and puts[0].get("fault") == "commit_then_timeout"  # one PUT per entry


def cb_ts(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


async def test_the_hand_computed_month_from_chargebee_posts_as_computed(
    client: Client, urls: dict[str, str]
) -> None:
    """The same April as tests/revenue/test_revenue_close.py, as Chargebee documents: each charge
    an invoice line with its date_from/date_to, each credit a credit note line (read with the
    chargebee client: GET /invoices and GET /credit_notes by date[between])."""
    em = ChargebeeEmulator(api_key="k", limits=False)
    with ServerThread({em: 0}) as thread:
        url = thread.urls["chargebee"]
        tag = uuid.uuid4().hex[:6]
        book = april_book()
        customers = [{"id": f"rev-{tag}-{c}", "first_name": "Rev", "last_name": c,
                      "email": f"{c}@rev.test", "company": f"Rev {c}"} for c in ("usd", "eur")]  # fmt: skip
        invoices, credits = [], []
        for i, ln in enumerate(book):
            doc = {"currency_code": ln.currency, "date": cb_ts(ln.start),
                   "customer_id": customers[ln.currency == "EUR"]["id"]}  # fmt: skip
            item = {"amount": abs(ln.amount), "date_from": cb_ts(ln.start),
                    "entity_id": ln.product,
                    "date_to": cb_ts(ln.end if ln.end - ln.start > timedelta(days=1) else ln.start)}  # fmt: skip
            if ln.amount > 0:
                invoices.append({**doc, "id": f"in-{tag}-{i}", "status": "paid",
                                 "total": ln.amount, "line_items": [item]})  # fmt: skip
            else:
                credits.append({"reference_invoice_id": invoices[-1]["id"], "date": doc["date"],
                                "line_items": [item]})  # fmt: skip
        seed = {"customers": customers, "invoices": invoices, "credit_notes": credits}
        httpx.post(url + "/_sandbox/seed", json=seed).raise_for_status()
        billing = ChargebeeBilling(
            ChargebeeSettings(site="acme-test", api_key=SecretStr("k"), api_url=url), timeout_s=5
        )
        erp = netsuite(urls)
        acts = RevenueActivities(revenue_source(billing), erp, POLICY_DIR / "revenue.yaml")
        fakes = governance(Fakes(), post_journal_entry=Outcome.NEEDS_APPROVAL).on(
            "upsert_crm_task", counter("task")
        )
        async with revenue_worker(client, fakes, acts) as tq:
            handle = await client.start_workflow(
                WORKFLOW_TYPE,
                RevenueCloseInput(billing="chargebee", month="2026-04", page_size=3),
                id=f"revenue-close:chargebee:2026-04:{tag}",
                task_queue=tq,
                result_type=RevenueCloseResult,
            )
            (pending,) = await eventually(
                lambda: handle.query(QUERY, result_type=list[PendingApproval]), bool, "approval"
            )
            await answer(handle, pending.action_id)
            result = await handle.result()
        erp.close()
        reads = [r["path"] for r in httpx.get(url + "/_sandbox/requests").json()["requests"]]
    # every document but May's invoice (issued after April: not read)
    assert result.outcome == "executed" and result.documents == len(book) - 1
    assert {e.currency: [(x.account, x.debit, x.credit) for x in e.lines]
            for e in result.entries} == {"USD": USD_LINES, "EUR": EUR_LINES}  # fmt: skip
    # a page of 3 documents per call: 7 invoices in 3 pages, 2 credit notes in 1
    assert [p.rsplit("/", 1)[-1] for p in reads] == ["invoices"] * 3 + ["credit_notes"]
    posted = httpx.get(urls["netsuite"] + "/_sandbox/netsuite/journal_entries").json()
    ids = [e["externalId"] for e in posted["journal_entries"]]
    assert all(ids.count(x) == 1 for x in result.posted) and len(result.posted) == 2
