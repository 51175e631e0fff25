"""Issue 15, Recurly's hot path (connectors/recurly_hot.py) against its sandbox through the
official client: the invoice's subscription lines give the MRR the subscription and plan reads
gave (so the run reads neither), the audit entries written together are one account note, each
entry once — also when the note's create committed and its answer was lost; and, over fake
activities, the run reads the customer left by the first read once, after the case."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from connectors import limits
from connectors.base import ConnectorError, ErrorKind
from connectors.recurly import RecurlyBilling, marker, to_minor
from connectors.recurly_hot import NOTE_MAX, mrr_from_lines, one_note, split_note, whole_months
from domain import temporal as names
from domain.dunning import WORKFLOW_TYPE, DunningInput, DunningResult
from domain.models import BillingCustomer, NoteTarget
from domain.settings import RecurlySettings
from sandbox.framework import ServerThread
from sandbox.recurly import RecurlyEmulator
from sandbox.recurly.seeding import catalog_plans, dunning_seed
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.fast.fakes import Fakes, not_found, started
from tests.fast.test_dunning import BILLING, Run, dunning_fakes
from tests.pairs import eventually

KEY = "recurly_hot_path_test_key"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[RecurlyEmulator, str]]:
    em = RecurlyEmulator(api_key=KEY, rate_limit_per_minute=None)
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["recurly"]


@pytest.fixture
def url(server: tuple[RecurlyEmulator, str]) -> str:
    em, base = server
    with em.lock:
        em.ledger.clear()
        em.faults.clear()
        em.reset_state()
    httpx.post(base + "/_sandbox/seed", json={"plans": catalog_plans()}).raise_for_status()
    return base


@pytest.fixture
def billing(url: str) -> RecurlyBilling:
    return RecurlyBilling(RecurlySettings(api_key=SecretStr(KEY), api_url=url), timeout_s=1.0)


def requests(url: str) -> list[str]:
    rows = httpx.get(url + "/_sandbox/requests").json()["requests"]
    return [f"{r['method']} {r['path']}" for r in sorted(rows, key=lambda r: r["seq"])]


def test_the_invoice_lines_give_the_mrr_the_subscription_and_plan_reads_gave(
    url: str, billing: RecurlyBilling
) -> None:
    s = uuid.uuid4().hex[:6]
    httpx.post(url + "/_sandbox/seed", json=dunning_seed(DEMO_CUSTOMERS, s)).raise_for_status()
    for customer in DEMO_CUSTOMERS:
        invoice = customer.ids(s)["invoice"]
        httpx.delete(url + "/_sandbox/requests").raise_for_status()
        hot = billing.get_invoice_context(invoice, payments=0)
        assert [r.split(" ")[1].split("/")[1] for r in requests(url)] == ["invoices", "accounts"]
        full = billing.get_invoice_context(invoice)
        assert any("/subscriptions/" in r for r in requests(url))  # the reads it replaces
        assert hot.customer.mrr == full.customer.mrr > 0, customer.key
        assert hot.invoice == full.invoice and hot.recent_payments == []


def line(**fields: object) -> SimpleNamespace:
    base = {
        "subscription_id": "sub1",
        "origin": "plan",
        "type": "charge",
        "proration_rate": None,
        "start_date": "2026-01-31T00:00:00Z",
        "end_date": "2026-02-28T00:00:00Z",
        "amount": 120.0,
        "currency": "USD",
    }
    return SimpleNamespace(**{**base, **fields})


def test_mrr_from_lines_only_where_every_subscription_line_says_it() -> None:
    inv = SimpleNamespace(currency="USD", has_more_line_items=False, line_items=[])
    assert whole_months(date(2026, 1, 31), date(2026, 2, 28)) == 1
    assert whole_months(date(2026, 1, 15), date(2027, 1, 15)) == 12
    assert whole_months(date(2026, 1, 15), date(2026, 2, 1)) is None
    assert whole_months(date(2026, 1, 1), date(2026, 1, 15)) is None  # a plan billed in days
    assert mrr_from_lines(inv, to_minor) is None  # no subscription line
    inv.line_items = [line(), line(origin="add_on", amount=30.0), line(subscription_id=None)]
    assert mrr_from_lines(inv, to_minor) == 15_000
    annual = line(start_date="2026-03-01T00:00:00Z", end_date="2027-03-01T00:00:00Z")
    inv.line_items = [annual]
    assert mrr_from_lines(inv, to_minor) == 1_000
    for odd in (
        line(proration_rate=0.5),
        line(end_date=None),
        line(end_date="2026-02-14T00:00:00Z"),
    ):
        inv.line_items = [line(), odd]
        assert mrr_from_lines(inv, to_minor) is None  # the caller reads the subscriptions
    inv.line_items, inv.has_more_line_items = [line()], True
    assert mrr_from_lines(inv, to_minor) is None


def test_one_note_carries_several_entries_and_splits_back() -> None:
    tags = [marker("k1"), marker("k2")]
    message = one_note("Invoice i1: ", [("case opened", tags[0]), ("day 0", tags[1])])
    assert message is not None
    assert split_note(message) == [
        f"Invoice i1: case opened\n{tags[0]}",
        f"Invoice i1: day 0\n{tags[1]}",
    ]
    assert split_note("a note of someone else") == ["a note of someone else"]
    assert one_note("", [("x" * NOTE_MAX, tags[0]), ("y", tags[1])]) is None


def test_entries_written_together_are_one_note_each_once_after_a_lost_answer(
    url: str, billing: RecurlyBilling
) -> None:
    s = uuid.uuid4().hex[:6]
    httpx.post(url + "/_sandbox/seed", json=dunning_seed(DEMO_CUSTOMERS[:1], s)).raise_for_status()
    invoice = DEMO_CUSTOMERS[0].ids(s)["invoice"]
    entries = [("create_case: allow → executed", "rb-case"), ("send_email: sent", "rb-day0")]
    billing.get_invoice_context(invoice, payments=0)  # the run's read: the invoice's account
    httpx.delete(url + "/_sandbox/requests").raise_for_status()
    # the create commits, its answer is lost: the activity's first attempt fails
    httpx.post(
        url + "/_sandbox/faults",
        json={"kind": "commit_then_timeout", "method": "POST", "path": ".*/notes", "delay_s": 1.5},
    ).raise_for_status()
    with limits.attempt(1), pytest.raises(ConnectorError) as lost:
        billing.add_notes(NoteTarget.INVOICE, invoice, entries)
    assert lost.value.kind is ErrorKind.RETRYABLE
    first = requests(url)
    assert [r.split(" ")[0] for r in first] == ["POST"]  # no look-up on a first attempt
    # the retry looks, finds both entries' markers in the one note, writes nothing
    with limits.attempt(2):
        ids = billing.add_notes(NoteTarget.INVOICE, invoice, entries)
    retry = requests(url)[len(first) :]
    assert retry and all(r.startswith("GET ") for r in retry), retry
    assert len(set(ids)) == 1
    assert billing.list_notes(NoteTarget.INVOICE, invoice) == [t for t, _ in entries]
    # a first attempt writes them as one note, in one request
    more = [("retry_payment: declined", "rb-r1"), ("send_email: day 3", "rb-day3")]
    httpx.delete(url + "/_sandbox/requests").raise_for_status()
    with limits.attempt(1):
        billing.add_notes(NoteTarget.INVOICE, invoice, more)
    assert [r.split(" ")[0] for r in requests(url)] == ["POST"]
    listed = billing.list_notes(NoteTarget.INVOICE, invoice)  # Recurly lists newest first
    assert sorted(listed) == sorted(t for t, _ in entries + more)


# --- the run: the customer after the case (``dunning-customer-after-case``), over fakes ----------


async def _to_day_0(client: Client, customer: object) -> Fakes:
    """A run whose first read left the customer (Recurly's invoice alone), to day 0's email;
    ``customer``: what get_billing_customer answers."""
    run = Run()
    first = run.context().model_copy(
        update={
            "customer": BillingCustomer(id=run.customer, company="Globex", mrr=120_000),
            "customer_later": True,
        }
    )
    fakes = dunning_fakes(run).on("get_invoice_context", first)
    fakes.on("get_billing_customer", customer)
    declined = run.context().recent_payments[0]
    async with started(
        client,
        fakes,
        WORKFLOW_TYPE,
        DunningInput(billing=BILLING, invoice_id=run.invoice),
        id=run.wf_id,
        start_signal=names.SIGNAL_PAYMENT_FAILED,
        start_signal_args=[run.failure().model_copy(update={"payment": declined})],
        result_type=DunningResult,
    ):
        await eventually(
            lambda: asyncio.sleep(0.05, fakes.names()), lambda n: "send_email" in n, "day 0"
        )
    return fakes


async def test_the_run_reads_the_customer_once_after_the_case_for_day_0(client: Client) -> None:
    since = datetime.now(UTC) - timedelta(days=400)
    fakes = await _to_day_0(
        client,
        BillingCustomer(id="x", company="Globex", created_at=since, language="fr", mrr=0),
    )
    reads = [n for n in fakes.names() if n in ("upsert_crm_case", "get_billing_customer")]
    assert reads == ["upsert_crm_case", "get_billing_customer"]  # once, after the case
    assert len(fakes.inputs("get_invoice_context")) == 1
    [draft] = fakes.inputs("draft_reminder")
    assert draft["language"] == "fr"  # the account's, for day 0


async def test_a_failed_customer_read_keeps_what_the_invoice_said(client: Client) -> None:
    fakes = await _to_day_0(client, not_found("account"))
    [draft] = fakes.inputs("draft_reminder")
    assert draft["language"] == "en" and "send_email" in fakes.names()
