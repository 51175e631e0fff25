"""The Zuora connector against the emulator: every protocol method, Zuora's error vocabulary by
category, the token's life, pagination, idempotent replays and both kinds of 429."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.zuora import ZuoraBilling, note_marker
from domain.models import InvoiceStatus, NoteTarget
from domain.records import CustomerDraft, SubscriptionDraft, SubscriptionLine
from domain.settings import ZuoraSettings
from sandbox.framework import ServerThread
from sandbox.scenarios import DEMO_CUSTOMERS
from sandbox.zuora import ZuoraEmulator
from sandbox.zuora.scenarios import zuora_seed
from tests.zuora.shapes import problems

ID, SECRET = "zc", "zs"


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[ZuoraBilling, ZuoraEmulator, ServerThread]]:
    em = ZuoraEmulator(client_id=ID, client_secret=SECRET)
    with ServerThread({em: 0}) as thread:
        url = thread.urls["zuora"]
        httpx.post(url + "/_sandbox/seed", json=zuora_seed(DEMO_CUSTOMERS, "t1")).raise_for_status()
        billing = ZuoraBilling(
            ZuoraSettings(client_id=ID, client_secret=SecretStr(SECRET), api_url=url), timeout_s=2
        )
        yield billing, em, thread
        billing.close()


@pytest.fixture
def billing(env: tuple[ZuoraBilling, ZuoraEmulator, ServerThread]) -> Iterator[ZuoraBilling]:
    yield env[0]
    url = env[2].urls["zuora"]
    httpx.delete(url + "/_sandbox/faults")
    httpx.post(url + "/_sandbox/zuora/limits", json={"rate_per_minute": None, "reserved": 0})


@pytest.fixture
def url(env: tuple[ZuoraBilling, ZuoraEmulator, ServerThread]) -> str:
    return env[2].urls["zuora"]


def _ledger(url: str, method: str | None = None, prefix: str = "") -> list[dict[str, Any]]:
    params = {"path_prefix": prefix, **({"method": method} if method else {})}
    return httpx.get(url + "/_sandbox/requests", params=params).json()["requests"]


def _decline(em: ZuoraEmulator, thread: ServerThread, invoice: str, code: str) -> None:
    assert thread.loop is not None
    asyncio.run_coroutine_threadsafe(em.decline(invoice, code), thread.loop).result(5)


def _fresh_customer(
    billing: ZuoraBilling, url: str, *, decline: str | None = None
) -> tuple[str, str, str]:
    """A new account with a subscription and a posted invoice: (account, subscription, invoice)."""
    tag = uuid.uuid4().hex[:8]
    seed = {
        "accounts": [
            {
                "id": f"acct-{tag}",
                "name": f"Fresh {tag}",
                "email": f"{tag}@example.com",
                "card": {"decline_code": decline},
            }
        ],
        "subscriptions": [
            {
                "subscriptionNumber": f"S-{tag}",
                "account": f"acct-{tag}",
                "plans": [{"plan": "PRP-BUSINESS-MONTHLY", "quantity": 2}],
            }
        ],
        "invoices": [
            {
                "id": f"inv-{tag}",
                "account": f"acct-{tag}",
                "subscription": f"S-{tag}",
                "amount": 19_800,
            }
        ],
    }
    httpx.post(url + "/_sandbox/seed", json=seed).raise_for_status()
    return f"acct-{tag}", f"S-{tag}", f"inv-{tag}"


# --- dunning reads and writes --------------------------------------------------------------------------


def test_invoice_context_reads_invoice_account_mrr_and_the_declined_payment(
    env: tuple[ZuoraBilling, ZuoraEmulator, ServerThread],
) -> None:
    billing, em, thread = env
    globex = DEMO_CUSTOMERS[1]
    ids = globex.ids("t1")
    _decline(em, thread, ids["invoice"], "insufficient_funds")
    ctx = billing.get_invoice_context(ids["invoice"])
    assert ctx.invoice.status is InvoiceStatus.OPEN
    assert (
        ctx.invoice.amount_due == globex.invoice_total and ctx.invoice.total == globex.invoice_total
    )
    assert (
        ctx.invoice.subscription_id == ids["subscription"]
        and ctx.invoice.customer_id == ids["customer"]
    )
    assert ctx.customer.mrr == globex.invoice_total and ctx.customer.company == globex.company
    assert ctx.customer.email == f"billing+{ids['customer']}@example.com"
    assert ctx.customer.created_at is not None
    failure = ctx.last_failure
    assert (
        failure
        and failure.decline_code == "insufficient_funds"
        and failure.invoice_id == ids["invoice"]
    )


def test_missing_invoice_is_not_found(billing: ZuoraBilling) -> None:
    with pytest.raises(NotFound):
        billing.get_invoice_context("no-such-invoice")


def test_notes_go_to_account_and_subscription_once_per_key(billing: ZuoraBilling, url: str) -> None:
    acct, sub, inv = _fresh_customer(billing, url)
    first = billing.add_note(NoteTarget.INVOICE, inv, "Reminder sent\nto billing", "rb-note-1")
    again = billing.add_note(NoteTarget.INVOICE, inv, "Reminder sent\nto billing", "rb-note-1")
    assert first == again
    assert billing.list_notes(NoteTarget.INVOICE, inv) == ["Reminder sent to billing"]
    billing.add_note(NoteTarget.CUSTOMER, acct, "Case opened", "rb-note-2")
    billing.add_note(NoteTarget.CUSTOMER, acct, "Case opened", "rb-note-2")
    assert billing.list_notes(NoteTarget.CUSTOMER, acct) == [
        f"invoice {inv}: Reminder sent to billing",
        "Case opened",
    ]
    assert billing.list_notes(NoteTarget.INVOICE, inv) == ["Reminder sent to billing"]
    account_notes = billing.request("GET", f"/v1/accounts/{acct}")["basicInfo"]["notes"]
    assert account_notes.splitlines()[1] == f"{note_marker('rb-note-2')} Case opened"
    puts = [r for r in _ledger(url, "PUT", f"/v1/accounts/{acct}")]
    assert len(puts) == 2  # one per key, none for the retries
    # the subscription keeps short lines within its 500 characters, newest last
    for n in range(12):
        billing.add_note(NoteTarget.INVOICE, inv, f"step {n} " + "x" * 200, f"rb-fill-{n}")
    sub_notes = billing.request("GET", f"/v1/subscriptions/{sub}")["notes"]
    assert len(sub_notes) <= 500
    assert sub_notes.splitlines()[-1].startswith(note_marker("rb-fill-11") + " step 11 ")
    assert note_marker("rb-note-1") not in sub_notes
    assert len(billing.list_notes(NoteTarget.INVOICE, inv)) == 13  # all kept on the account


def test_retry_payment_decline_is_an_outcome_then_success_then_never_twice(
    env: tuple[ZuoraBilling, ZuoraEmulator, ServerThread],
) -> None:
    billing, em, thread = env
    url = thread.urls["zuora"]
    acct, _, inv = _fresh_customer(billing, url, decline="expired_card")
    attempt = billing.retry_payment(inv, "rb-retry-1")
    assert attempt.succeeded is False and attempt.decline_code == "expired_card"
    assert attempt.message == "Your card has expired."
    again = billing.retry_payment(inv, "rb-retry-1")  # replayed by Zuora: no second charge
    assert again == attempt
    em.set_card_decline(acct, None)
    assert billing.retry_payment(inv, "rb-retry-2").succeeded is True
    before = len(_ledger(url, "POST", "/v1/operations/invoice-collect"))
    paid = billing.retry_payment(inv, "rb-retry-3")
    assert paid.succeeded is True and paid.message == "already paid"
    assert (
        len(_ledger(url, "POST", "/v1/operations/invoice-collect")) == before
    )  # not collected again
    collects = _ledger(url, "POST", "/v1/operations/invoice-collect")
    assert {r["headers"]["idempotency-key"] for r in collects} >= {"rb-retry-1", "rb-retry-2"}
    payments = billing.request("GET", "/v1/payments", params={"accountId": acct})["payments"]
    assert [p["status"] for p in payments] == ["Processed", "Error"]


def test_retry_after_a_lost_answer_replays_and_charges_once(
    billing: ZuoraBilling, url: str
) -> None:
    acct, _, inv = _fresh_customer(billing, url)
    httpx.post(
        url + "/_sandbox/faults",
        json={
            "kind": "commit_then_timeout",
            "method": "POST",
            "path": "/v1/operations/invoice-collect",
            "delay_s": 5,
        },
    ).raise_for_status()
    with pytest.raises(ConnectorError) as lost:
        billing.retry_payment(inv, "rb-lost-1")
    assert lost.value.kind is ErrorKind.RETRYABLE
    assert billing.retry_payment(inv, "rb-lost-1").succeeded is True
    payments = billing.request("GET", "/v1/payments", params={"accountId": acct})["payments"]
    assert len(payments) == 1


def test_courtesy_credit_is_one_memo_applied_to_the_open_invoice(
    billing: ZuoraBilling, url: str
) -> None:
    acct, _, inv = _fresh_customer(billing, url)
    memo = billing.apply_credit(acct, 2_500, "USD", "courtesy for the outage", "rb-credit-1")
    assert (
        billing.apply_credit(acct, 2_500, "USD", "courtesy for the outage", "rb-credit-1") == memo
    )
    assert billing.request("GET", f"/v1/invoices/{inv}")["balance"] == 173.0
    got = billing.request("GET", f"/v1/credit-memos/{memo}")
    assert (
        got["amount"] == 25.0
        and got["unappliedAmount"] == 0.0
        and got["comment"] == "courtesy for the outage"
    )
    memos = [r for r in _ledger(url, "POST", "/v1/credit-memos") if r["status"] == 200]
    assert {r["headers"]["idempotency-key"] for r in memos} == {"rb-credit-1-memo"}
    with pytest.raises(ConnectorError) as wrong:
        billing.apply_credit(acct, 100, "EUR", "x", "rb-credit-2")
    assert wrong.value.kind is ErrorKind.PERMANENT


# --- Zuora's error vocabulary -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (50000020, ErrorKind.PERMANENT),  # invalid value
        (50000022, ErrorKind.PERMANENT),  # missing required field
        (50000030, ErrorKind.PERMANENT),  # business rule
        (50000010, ErrorKind.PERMANENT),  # permission
        (50000050, ErrorKind.RETRYABLE),  # lock contention
        (50000060, ErrorKind.RETRYABLE),  # internal
        (50000061, ErrorKind.RETRYABLE),  # temporary
        (50000070, ErrorKind.RATE_LIMITED),  # request exceeded limit
        (50000099, ErrorKind.PERMANENT),  # gateway / tax integration
    ],
)
def test_success_false_on_http_200_maps_by_category(
    billing: ZuoraBilling, url: str, code: int, kind: ErrorKind
) -> None:
    body = {"success": False, "processId": "P1", "reasons": [{"code": code, "message": "no"}]}
    httpx.post(
        url + "/_sandbox/faults",
        json={"method": "GET", "path": "/object-query/invoices", "status": 200, "body": body},
    ).raise_for_status()
    with pytest.raises(ConnectorError) as err:
        billing.get_invoice_context(DEMO_CUSTOMERS[0].ids("t1")["invoice"])
    assert err.value.kind is kind and err.value.code == str(code) and err.value.status == 200


def test_category_40_is_not_found_and_crud_errors_are_permanent(
    billing: ZuoraBilling, url: str
) -> None:
    body = {"success": False, "reasons": [{"code": 50000040, "message": "Cannot find entity"}]}
    httpx.post(
        url + "/_sandbox/faults",
        json={"method": "GET", "path": "/object-query/invoices", "status": 200, "body": body},
    ).raise_for_status()
    with pytest.raises(NotFound):
        billing.get_invoice_context("x")
    acct, _, _ = _fresh_customer(billing, url)
    with pytest.raises(ConnectorError) as crud:
        billing.request(
            "POST", "/v1/object/usage", json={"AccountId": acct, "UOM": "API_CALL"}, key="rb-u-1"
        )
    assert crud.value.kind is ErrorKind.PERMANENT and crud.value.code == "MISSING_REQUIRED_VALUE"


def test_5xx_and_network_are_retryable(billing: ZuoraBilling, url: str) -> None:
    httpx.post(
        url + "/_sandbox/faults",
        json={"method": "GET", "path": "/object-query/invoices", "status": 503},
    ).raise_for_status()
    with pytest.raises(ConnectorError) as err:
        billing.get_invoice_context(DEMO_CUSTOMERS[0].ids("t1")["invoice"])
    assert err.value.kind is ErrorKind.RETRYABLE
    dead = ZuoraBilling(
        ZuoraSettings(client_id=ID, client_secret=SecretStr(SECRET), api_url="http://127.0.0.1:9"),
        timeout_s=1,
    )
    with pytest.raises(ConnectorError) as down:
        dead.get_invoice_context("x")
    assert down.value.kind is ErrorKind.RETRYABLE


def test_rate_and_concurrency_429s_are_rate_limited_with_retry_after(
    billing: ZuoraBilling, url: str
) -> None:
    inv = DEMO_CUSTOMERS[0].ids("t1")["invoice"]
    billing.get_invoice_context(inv)  # a token in hand
    httpx.post(url + "/_sandbox/zuora/limits", json={"rate_per_minute": 1}).raise_for_status()
    with pytest.raises(ConnectorError) as rate:
        for _ in range(3):
            billing.get_invoice_context(inv)
    assert rate.value.kind is ErrorKind.RATE_LIMITED and rate.value.code == "rate_limited"
    assert rate.value.retry_after and rate.value.retry_after >= 1
    httpx.post(
        url + "/_sandbox/zuora/limits", json={"rate_per_minute": None, "reserved": 40}
    ).raise_for_status()
    with pytest.raises(ConnectorError) as busy:
        billing.get_invoice_context(inv)
    assert busy.value.kind is ErrorKind.RATE_LIMITED and busy.value.code == "concurrency_limited"
    assert busy.value.retry_after == 1.0


def test_token_is_cached_and_refreshed_once_when_it_expires_mid_run(
    billing: ZuoraBilling, url: str
) -> None:
    inv = DEMO_CUSTOMERS[0].ids("t1")["invoice"]
    billing.get_invoice_context(inv)
    tokens = len(_ledger(url, "POST", "/oauth/token"))
    billing.get_invoice_context(inv)
    assert len(_ledger(url, "POST", "/oauth/token")) == tokens  # cached
    httpx.post(url + "/_sandbox/zuora/tokens/expire").raise_for_status()
    assert billing.get_invoice_context(inv).invoice.id == inv
    assert len(_ledger(url, "POST", "/oauth/token")) == tokens + 1  # one refresh, then on


def test_wrong_client_secret_is_permanent(url: str) -> None:
    bad = ZuoraBilling(ZuoraSettings(client_id=ID, client_secret=SecretStr("nope"), api_url=url))
    with pytest.raises(ConnectorError) as err:
        bad.get_invoice_context("x")
    assert err.value.kind is ErrorKind.PERMANENT and err.value.code == "auth_failed"
    assert "nope" not in str(err.value)


# --- quote-to-cash ----------------------------------------------------------------------------------------


def test_quote_to_cash_customer_price_subscription_and_compensation(
    billing: ZuoraBilling, url: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    price = billing.get_price("PRP-CORE-USD-MONTHLY")
    assert (price.unit_amount, price.currency, price.period) == (50_000, "USD", "month")
    with pytest.raises(NotFound):
        billing.get_price("PRP-NOPE")
    draft = CustomerDraft(
        key=f"rb-cust-{tag}",
        company=f"Vandelay {tag}",
        email=f"art-{tag}@vandelay.example",
        crm="salesforce",
        crm_account_id=f"001{tag}",
        net_term_days=30,
    )
    made = billing.create_customer(draft)
    assert billing.create_customer(draft).id == made.id  # found again by its account number
    assert made.metadata == {"crm": "salesforce", "crm_account_id": f"001{tag}"}
    assert billing.find_customer_by_crm("salesforce", f"001{tag}").id == made.id  # type: ignore[union-attr]
    assert billing.find_customer_by_crm("hubspot", f"001{tag}") is None
    assert [c.id for c in billing.find_customers(f"art-{tag}@vandelay.example", None)] == [made.id]
    assert [c.id for c in billing.find_customers(None, f"vandelay {tag}")] == [made.id]
    detail = billing.request("GET", f"/v1/accounts/{made.id}")
    assert (
        detail["billingAndPayment"]["paymentTerm"] == "Net 30"
        and detail["billingAndPayment"]["autoPay"] is False
    )
    sub_draft = SubscriptionDraft(
        key=f"rb-sub-{tag}",
        customer_id=made.id,
        currency="USD",
        lines=[
            SubscriptionLine(price_id="PRP-CORE-USD-MONTHLY"),
            SubscriptionLine(price_id="PRP-SEAT-USD-MONTHLY", quantity=10, unit_amount=3_500),
        ],
        term_months=12,
        discount_percent=10,
        crm="salesforce",
        crm_opportunity_id=f"006{tag}",
        start_date=date.today(),
    )
    ref = billing.create_subscription(sub_draft)
    assert ref.created and ref.status == "active" and ref.customer_id == made.id
    assert ref.mrr == round((50_000 + 35_000) * 0.9)
    again = billing.create_subscription(sub_draft)
    assert again.id == ref.id and again.created is False
    sub = billing.request("GET", f"/v1/subscriptions/{ref.id}")
    assert (
        sub["CrmOpportunityId__c"] == f"006{tag}"
        and sub["termType"] == "TERMED"
        and sub["initialTerm"] == 12
    )
    orders = [
        r
        for r in _ledger(url, "POST", "/v1/orders")
        if f"rb-sub-{tag}" in r["headers"].get("idempotency-key", "")
    ]
    assert len(orders) == 1
    # compensation: cancel (twice is fine), unlink, delete (twice is fine)
    assert billing.cancel_subscription(ref.id, f"rb-cancel-{tag}", "saga") == "cancelled"
    assert billing.cancel_subscription(ref.id, f"rb-cancel-{tag}", "saga") == "cancelled"
    billing.set_crm_link(made.id, "salesforce", None, f"rb-unlink-{tag}")
    assert billing.find_customer_by_crm("salesforce", f"001{tag}") is None
    billing.delete_customer(made.id, f"rb-del-{tag}")
    billing.delete_customer(made.id, f"rb-del-{tag}")
    with pytest.raises(ConnectorError):
        billing.create_subscription(
            sub_draft.model_copy(update={"key": f"rb-sub2-{tag}", "currency": "EUR"})
        )


# --- churn and support -----------------------------------------------------------------------------------


def test_list_customers_pages_with_the_object_query_cursor(billing: ZuoraBilling) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = billing.list_customers(cursor, limit=2)
        pages += 1
        seen += [c.id for c in page.customers]
        cursor = page.next_cursor
        if not cursor:
            break
    assert pages >= 2 and len(seen) == len(set(seen))
    assert {c.ids("t1")["customer"] for c in DEMO_CUSTOMERS} <= set(seen)


def test_snapshot_counts_order_downgrades_not_discounts_and_reads_usage(
    billing: ZuoraBilling, url: str
) -> None:
    acct, sub, inv = _fresh_customer(billing, url)
    billing.request(
        "POST",
        "/v1/object/usage",
        key=f"rb-usage-{acct}",
        json={
            "AccountId": acct,
            "SubscriptionNumber": sub,
            "UOM": "API_CALL",
            "Quantity": 40,
            "StartDateTime": date.today().isoformat(),
        },
    )
    before = billing.customer_snapshot(acct)
    assert before.downgrades_90d == 0 and before.usage_30d == 40 and before.usage_prev_30d == 0
    assert before.subscriptions[0].id == sub and before.subscriptions[0].quantity == 2
    assert before.customer.mrr == 19_800 and before.invoices[0].id == inv
    raw = billing.request("GET", f"/v1/subscriptions/{sub}")
    rp = raw["ratePlans"][0]
    billing.request(
        "POST",
        "/v1/orders",
        key=f"rb-down-{acct}",
        json={
            "orderDate": date.today().isoformat(),
            "existingAccountNumber": raw["accountNumber"],
            "subscriptions": [
                {
                    "subscriptionNumber": sub,
                    "orderActions": [
                        {
                            "type": "UpdateProduct",
                            "updateProduct": {
                                "ratePlanId": rp["id"],
                                "chargeUpdates": [
                                    {
                                        "chargeNumber": rp["ratePlanCharges"][0]["number"],
                                        "pricing": {"recurringPerUnit": {"quantity": 1}},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        },
    )
    discount = billing.apply_discount(sub, 20, 3, f"rb-offer-{acct}")
    assert billing.apply_discount(sub, 20, 3, f"rb-offer-{acct}") == discount
    after = billing.customer_snapshot(acct)
    assert after.downgrades_90d == 1  # the seat drop, not the retention discount
    assert after.subscriptions[0].discount_percent == 20 and after.subscriptions[0].mrr == round(
        9_900 * 0.8
    )
    offers = [
        r
        for r in _ledger(url, "POST", "/v1/orders")
        if r["headers"].get("idempotency-key") == f"rb-offer-{acct}"
    ]
    assert len(offers) == 1


def test_an_invoice_in_collects_retry_cycle_is_left_to_it(
    env: tuple[ZuoraBilling, ZuoraEmulator, ServerThread],
) -> None:
    """Zuora Collect retries a declined payment run on its own schedule; RevBridge does not
    charge the card in between, and collects once the invoice is out of the cycle."""
    billing, em, thread = env
    url = thread.urls["zuora"]
    cpr = ("collections@revbridge.local", "test_cpr_token")
    collect = ZuoraBilling(
        ZuoraSettings(
            client_id=ID,
            client_secret=SecretStr(SECRET),
            api_url=url,
            collect_api_url=url,
            collect_username=cpr[0],
            collect_token=SecretStr(cpr[1]),
        ),
        timeout_s=2,
    )
    acct, _, inv = _fresh_customer(billing, url, decline="insufficient_funds")
    _decline(em, thread, inv, "insufficient_funds")  # the payment run declines: a cycle starts
    cycle_url = f"{url}/api/v1/payments/active_invoice_cycle_information/{inv}"
    [cycle] = httpx.get(cycle_url, auth=cpr).json()["cycles"]
    assert cycle["status"] == "Cycle Incomplete" and cycle["current_attempt_number"] == 1
    before = len(_ledger(url, "POST", "/v1/operations/invoice-collect"))
    left = collect.retry_payment(inv, "rb-cpr-1")
    assert left.succeeded is False and "left to Zuora Collect's retry cycle" in (left.message or "")
    assert len(_ledger(url, "POST", "/v1/operations/invoice-collect")) == before  # no charge
    # a person takes it out of the cycle; the next retry collects (the card works again)
    removed = httpx.put(f"{url}/api/v1/payments/remove_invoice_from_retry_cycle/{inv}", auth=cpr)
    assert removed.json()["success"] is True
    em.set_card_decline(acct, None)
    assert collect.retry_payment(inv, "rb-cpr-2").succeeded is True
    assert httpx.get(cycle_url, auth=cpr).json()["cycles"][0]["status"] == "Stopped"
    # without Collect credentials the connector never asks (and Collect refuses strangers)
    assert httpx.get(cycle_url, auth=(cpr[0], "nope")).status_code == 401
    wrong = ZuoraBilling(
        ZuoraSettings(
            client_id=ID,
            client_secret=SecretStr(SECRET),
            api_url=url,
            collect_api_url=url,
            collect_username=cpr[0],
            collect_token=SecretStr("nope"),
        )
    )
    with pytest.raises(ConnectorError) as refused:
        wrong.retry_payment(_fresh_customer(billing, url)[2], "rb-cpr-3")
    assert refused.value.kind is ErrorKind.PERMANENT and refused.value.code == "collect_refused"


def test_a_churn_book_seeds_failures_non_renewals_and_downgrade_orders(
    billing: ZuoraBilling, url: str
) -> None:
    """The churn book in Zuora's shape reads back as churn scoring needs it."""
    from harness.drivers import ZuoraDriver
    from sandbox import books
    from sandbox.zuora.scenarios import book_downgrades, book_seed

    book = books.book(16, prefix=f"cb{uuid.uuid4().hex[:6]}", seed=16)
    httpx.post(url + "/_sandbox/seed", json=book_seed(book), timeout=30).raise_for_status()
    driver = ZuoraDriver(url, billing)
    for number, quantity in book_downgrades(book):
        driver.downgrade(number, quantity)
    by_id = {c.id: c for c in book.customers}
    down = next(c for c in book.customers if c.downgrade_by)
    snap = billing.customer_snapshot(down.id)
    assert snap.downgrades_90d == 1
    assert snap.subscriptions[0].quantity == down.quantity - down.downgrade_by
    ending = next(c for c in book.customers if c.non_renewing)
    sub = billing.customer_snapshot(ending.id).subscriptions[0]
    assert sub.status == "non_renewing" and sub.cancel_at is not None
    failing = next(c for c in book.customers if c.failures)
    payments = billing.customer_snapshot(failing.id).payments
    assert sum(not p.succeeded for p in payments) == failing.failures
    assert all(p.decline_code == "card_declined" for p in payments if not p.succeeded)
    healthy = next(
        c for c in book.customers if not (c.failures or c.downgrade_by or c.non_renewing)
    )
    snap = billing.customer_snapshot(healthy.id)
    assert (snap.downgrades_90d, snap.subscriptions[0].status) == (0, "active")
    assert snap.customer.mrr == by_id[healthy.id].mrr


def test_every_request_the_connector_sends_fits_zuoras_request_models(
    billing: ZuoraBilling, url: str
) -> None:
    """The bodies the connector wrote (read back from the sandbox's ledger) against the request
    models of zuora-sdk 3.21.0, required fields included; paths not among the 36 operations in
    ../shared/specs/zuora (credit memos from a charge, Collect) are not checked."""
    import json as _json
    import re

    from tests.zuora.shapes import spec

    # exercise the writes: q2c, notes, a retry, a credit, a discount, a cancel
    after = max((r["seq"] for r in _ledger(url)), default=0)  # only this test's requests
    tag = uuid.uuid4().hex[:6]
    made = billing.create_customer(
        CustomerDraft(
            key=f"rb-shape-{tag}",
            company=f"Shape {tag}",
            email=f"s-{tag}@x.example",
            crm="hubspot",
            crm_account_id=f"9{tag}",
            net_term_days=15,
        )
    )
    ref = billing.create_subscription(
        SubscriptionDraft(
            key=f"rb-shape-sub-{tag}",
            customer_id=made.id,
            currency="USD",
            lines=[SubscriptionLine(price_id="PRP-CORE-USD-MONTHLY", unit_amount=45_000)],
            discount_percent=5,
            crm="hubspot",
            crm_opportunity_id=f"8{tag}",
        )
    )
    billing.set_crm_link(made.id, "hubspot", f"9{tag}-b", f"rb-shape-link-{tag}")
    billing.apply_discount(ref.id, 10, 2, f"rb-shape-offer-{tag}")
    acct, _, inv = _fresh_customer(billing, url)
    billing.add_note(NoteTarget.INVOICE, inv, "shape", f"rb-shape-note-{tag}")
    billing.retry_payment(inv, f"rb-shape-retry-{tag}")
    billing.cancel_subscription(ref.id, f"rb-shape-cancel-{tag}", "shape")

    ops = [
        (o["method"], re.compile(re.sub(r"\{[^}]+\}", "[^/]+", o["path"]) + "$"), o["request_body"])
        for o in spec()["operations"]
        if o["request_body"]
    ]
    checked: set[str] = set()
    for row in _ledger(url):
        if row["seq"] <= after or row["method"] not in ("POST", "PUT") or not row["body"]:
            continue
        for method, path, model in ops:
            if method == row["method"] and path.match(row["path"]):
                assert problems(model, _json.loads(row["body"]), request=True) == [], (
                    row["path"],
                    model,
                )
                checked.add(model)
    assert {
        "CreateAccountRequest",
        "UpdateAccountRequest",
        "CreateOrderRequest",
        "UpdateSubscriptionRequest",
        "CreateInvoiceCollectRequest",
    } <= checked, checked
