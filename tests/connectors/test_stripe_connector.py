"""The Stripe connector through the official client against the stateful emulator: invoice
context, notes as metadata, our own idempotency keys on every POST, and error classification
(including the ambiguous commit-then-timeout)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from pydantic import SecretStr

from connectors.base import BillingPlatform, ConnectorError, ErrorKind, NotFound
from connectors.stripe import StripeBilling, monthly_recurring, note_key
from domain.ids import idempotency_key
from domain.models import InvoiceStatus, NoteTarget
from domain.settings import StripeSettings
from sandbox.framework import ServerThread
from sandbox.stripe import StripeEmulator

API_KEY = "sk_test_revbridge_connector"


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[StripeEmulator, str]]:
    em = StripeEmulator(api_key=API_KEY)
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["stripe"]


@pytest.fixture(scope="module")
def url(emulator: tuple[StripeEmulator, str]) -> str:
    return emulator[1]


@pytest.fixture(scope="module")
def em(emulator: tuple[StripeEmulator, str]) -> StripeEmulator:
    return emulator[0]


@pytest.fixture(scope="module")
def billing(url: str) -> StripeBilling:
    return StripeBilling(StripeSettings(api_key=SecretStr(API_KEY), api_url=url), timeout_s=5.0)


@pytest.fixture(autouse=True)
def _no_faults(url: str) -> Iterator[None]:
    yield
    httpx.delete(url + "/_sandbox/faults")


def seed(url: str, decline: str | None = "insufficient_funds") -> dict[str, str]:
    """A customer on a yearly plan (3 seats × 1,200.00/yr) with an open subscription invoice."""
    u = uuid.uuid4().hex[:10]
    ids = {
        "customer": f"cus_{u}",
        "subscription": f"sub_{u}",
        "invoice": f"in_{u}",
        "price": f"price_{u}",
    }
    resp = httpx.post(
        url + "/_sandbox/seed",
        json={
            "products": [{"id": f"prod_{u}", "name": "Pro"}],
            "prices": [
                {
                    "id": ids["price"],
                    "product": f"prod_{u}",
                    "unit_amount": 120_000,
                    "currency": "eur",
                    "recurring": {"interval": "year"},
                }
            ],
            "customers": [
                {
                    "id": ids["customer"],
                    "email": f"billing-{u}@example.com",
                    "name": "Acme GmbH",
                    "card": {"decline_code": decline},
                }
            ],
            "subscriptions": [
                {
                    "id": ids["subscription"],
                    "customer": ids["customer"],
                    "items": [{"price": ids["price"], "quantity": 3}],
                }
            ],
            "invoices": [
                {
                    "id": ids["invoice"],
                    "customer": ids["customer"],
                    "subscription": ids["subscription"],
                    "lines": [{"amount": 360_000, "description": "Pro, yearly"}],
                }
            ],
        },
    )
    assert resp.status_code == 200, resp.text
    return ids


def ledger(url: str, method: str | None = None, path_prefix: str = "") -> list[dict[str, Any]]:
    params = {"path_prefix": path_prefix, **({"method": method} if method else {})}
    return httpx.get(url + "/_sandbox/requests", params=params).json()["requests"]


def fault(url: str, **spec: Any) -> None:
    assert httpx.post(url + "/_sandbox/faults", json=spec).status_code == 201


def key(step: str) -> str:
    return idempotency_key(f"dunning:stripe:{uuid.uuid4().hex}", step)


# --- reads -------------------------------------------------------------------------------------------


def test_is_a_billing_platform(billing: StripeBilling) -> None:
    assert isinstance(billing, BillingPlatform)
    assert billing.name == "stripe"
    assert isinstance(billing.client, stripe.StripeClient)


def test_invoice_context_after_a_declined_payment(billing: StripeBilling, url: str) -> None:
    ids = seed(url)
    paid = httpx.post(f"{url}/_sandbox/stripe/invoices/{ids['invoice']}/pay").json()
    assert paid["paid"] is False and paid["error"]["decline_code"] == "insufficient_funds"

    before = len(ledger(url, "GET"))
    ctx = billing.get_invoice_context(ids["invoice"])
    assert len(ledger(url, "GET")) == before + 1  # one call: everything else is expanded

    inv = ctx.invoice
    assert (inv.id, inv.customer_id, inv.subscription_id) == (
        ids["invoice"],
        ids["customer"],
        ids["subscription"],
    )
    assert inv.status is InvoiceStatus.OPEN
    assert (inv.total, inv.amount_due, inv.currency) == (360_000, 360_000, "EUR")
    assert inv.issued_at is not None
    assert ctx.customer.company == "Acme GmbH" and ctx.customer.created_at is not None
    assert ctx.customer.mrr == 30_000  # 3 × 1,200.00 a year = 300.00 a month
    assert ctx.customer.currency == "EUR"

    first = ctx.recent_payments[0]
    assert first.succeeded is False
    assert first.decline_code == "insufficient_funds"
    assert first.decline_message == "Your card has insufficient funds."
    assert (first.amount, first.currency, first.invoice_id) == (360_000, "EUR", ids["invoice"])
    assert ctx.last_failure == first


def test_paid_invoice_lists_the_successful_payment(billing: StripeBilling, url: str) -> None:
    ids = seed(url, decline=None)
    assert httpx.post(f"{url}/_sandbox/stripe/invoices/{ids['invoice']}/pay").json()["paid"]
    ctx = billing.get_invoice_context(ids["invoice"])
    assert ctx.invoice.status is InvoiceStatus.PAID
    assert [(p.succeeded, p.amount) for p in ctx.recent_payments] == [(True, 360_000)]
    assert ctx.last_failure is None


def test_invoice_without_attempts_has_no_payments(billing: StripeBilling, url: str) -> None:
    ids = seed(url)
    ctx = billing.get_invoice_context(ids["invoice"])
    assert ctx.recent_payments == [] and ctx.invoice.status is InvoiceStatus.OPEN


def test_mrr_normalisation() -> None:
    def sub(*items: tuple[int | None, int | None, str, int, str], status: str = "active") -> Any:
        return {
            "status": status,
            "items": {
                "data": [
                    {
                        "quantity": q,
                        "price": {
                            "unit_amount": a,
                            "recurring": {"interval": i, "interval_count": n, "usage_type": u},
                        },
                    }
                    for a, q, i, n, u in items
                ]
            },
        }

    assert monthly_recurring(sub((5_000, 2, "month", 1, "licensed"))) == 10_000
    assert monthly_recurring(sub((120_000, 1, "year", 1, "licensed"))) == 10_000
    assert monthly_recurring(sub((30_000, 1, "month", 3, "licensed"))) == 10_000  # quarterly
    assert monthly_recurring(sub((1_000, None, "month", 1, "licensed"))) == 1_000
    assert monthly_recurring(sub((5, None, "month", 1, "metered"))) == 0  # usage: not recurring
    assert monthly_recurring(sub((None, 1, "month", 1, "licensed"))) == 0  # tiered
    assert monthly_recurring(sub((5_000, 2, "month", 1, "licensed"), status="canceled")) == 0
    assert monthly_recurring({"items": {"data": []}}) == 0


# --- notes as metadata -----------------------------------------------------------------------------


def test_same_key_writes_one_entry_with_one_idempotency_key(
    billing: StripeBilling, url: str
) -> None:
    ids = seed(url)
    k = key("audit-1")
    first = billing.add_note(NoteTarget.INVOICE, ids["invoice"], "RevBridge: dunning started", k)
    again = billing.add_note(NoteTarget.INVOICE, ids["invoice"], "RevBridge: dunning started", k)
    assert first == again == f"{ids['invoice']}#metadata.{note_key(k)}"
    assert billing.list_notes(NoteTarget.INVOICE, ids["invoice"]) == ["RevBridge: dunning started"]

    posts = ledger(url, "POST", f"/v1/invoices/{ids['invoice']}")
    assert [p["headers"]["idempotency-key"] for p in posts] == [k, k]

    other = billing.add_note(NoteTarget.INVOICE, ids["invoice"], "RevBridge: case opened", key("x"))
    assert other != first
    notes = billing.list_notes(NoteTarget.INVOICE, ids["invoice"])
    assert sorted(notes) == ["RevBridge: case opened", "RevBridge: dunning started"]


def test_customer_note_is_truncated_to_the_metadata_limit(billing: StripeBilling, url: str) -> None:
    ids = seed(url)
    note_id = billing.add_note(NoteTarget.CUSTOMER, ids["customer"], "x" * 2_000, key("long"))
    assert note_id.startswith(f"{ids['customer']}#metadata.rb_")
    [note] = billing.list_notes(NoteTarget.CUSTOMER, ids["customer"])
    assert len(note) == 500 and note.endswith("…")


def test_every_post_carries_our_own_key(billing: StripeBilling, url: str) -> None:
    httpx.delete(url + "/_sandbox/requests")
    ids = seed(url)
    httpx.post(f"{url}/_sandbox/stripe/invoices/{ids['invoice']}/pay")
    billing.get_invoice_context(ids["invoice"])
    billing.add_note(NoteTarget.INVOICE, ids["invoice"], "a", key("a"))
    billing.add_note(NoteTarget.CUSTOMER, ids["customer"], "b", key("b"))
    billing.list_notes(NoteTarget.CUSTOMER, ids["customer"])
    rows = ledger(url)
    posts = [r for r in rows if r["method"] == "POST"]
    assert len(posts) == 2
    assert all(r["headers"].get("idempotency-key", "").startswith("rb-") for r in posts), posts
    assert all("idempotency-key" not in r["headers"] for r in rows if r["method"] == "GET")


def test_note_on_missing_customer_is_not_found(billing: StripeBilling) -> None:
    with pytest.raises(NotFound):
        billing.add_note(NoteTarget.CUSTOMER, "cus_missing", "text", key("nf"))


# --- errors ------------------------------------------------------------------------------------------


def test_429_is_rate_limited_with_retry_after(billing: StripeBilling, url: str) -> None:
    ids = seed(url)
    fault(url, status=429, retry_after=7, method="GET", path="/v1/invoices/.*")
    with pytest.raises(ConnectorError) as exc:
        billing.get_invoice_context(ids["invoice"])
    assert exc.value.kind is ErrorKind.RATE_LIMITED
    assert exc.value.retry_after == 7.0 and exc.value.status == 429

    fault(url, status=429, method="POST", path="/v1/customers/.*")
    with pytest.raises(ConnectorError) as exc:
        billing.add_note(NoteTarget.CUSTOMER, ids["customer"], "t", key("rl"))
    assert exc.value.kind is ErrorKind.RATE_LIMITED and exc.value.retry_after == 2.0


def test_concurrent_use_of_a_key_is_retryable(billing: StripeBilling, url: str) -> None:
    ids = seed(url)
    fault(url, status=409, method="POST", path="/v1/invoices/.*")
    with pytest.raises(ConnectorError) as exc:
        billing.add_note(NoteTarget.INVOICE, ids["invoice"], "t", key("409"))
    assert exc.value.kind is ErrorKind.RETRYABLE and exc.value.code == "idempotency_key_in_use"


def test_bad_api_key_is_permanent(url: str) -> None:
    bad = StripeBilling(StripeSettings(api_key=SecretStr("sk_test_wrong"), api_url=url))
    with pytest.raises(ConnectorError) as exc:
        bad.get_invoice_context("in_any")
    assert exc.value.kind is ErrorKind.PERMANENT and exc.value.status == 401


def test_same_key_other_params_is_permanent(billing: StripeBilling, url: str) -> None:
    ids = seed(url)
    k = key("conflict")
    billing.add_note(NoteTarget.INVOICE, ids["invoice"], "first text", k)
    with pytest.raises(ConnectorError) as exc:
        billing.add_note(NoteTarget.INVOICE, ids["invoice"], "other text", k)
    assert exc.value.kind is ErrorKind.PERMANENT and exc.value.code == "idempotency_error"
    with pytest.raises(ConnectorError) as exc:  # same key, other endpoint
        billing.add_note(NoteTarget.CUSTOMER, ids["customer"], "first text", k)
    assert exc.value.kind is ErrorKind.PERMANENT and exc.value.code == "idempotency_error"


def test_commit_then_timeout_is_retryable_and_the_retry_replays(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write lands but the answer never comes: RETRYABLE, and the retry with the same key
    gets Stripe's saved answer instead of running again."""
    fast = StripeBilling(StripeSettings(api_key=SecretStr(API_KEY), api_url=url), timeout_s=0.5)
    seen: list[tuple[int, dict[str, str]]] = []
    original = stripe.RequestsClient.request

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        body, status, headers = original(self, *args, **kwargs)
        seen.append((status, {k.lower(): v for k, v in headers.items()}))
        return body, status, headers

    monkeypatch.setattr(stripe.RequestsClient, "request", spy)
    ids = seed(url)
    k = key("audit-timeout")
    fault(url, kind="commit_then_timeout", delay_s=1.5, method="POST", path="/v1/customers/.*")
    with pytest.raises(ConnectorError) as exc:
        fast.add_note(NoteTarget.CUSTOMER, ids["customer"], "RevBridge: reminder sent", k)
    assert exc.value.kind is ErrorKind.RETRYABLE and exc.value.status is None
    assert fast.list_notes(NoteTarget.CUSTOMER, ids["customer"]) == ["RevBridge: reminder sent"]

    note_id = fast.add_note(NoteTarget.CUSTOMER, ids["customer"], "RevBridge: reminder sent", k)
    assert note_id == f"{ids['customer']}#metadata.{note_key(k)}"
    status, headers = seen[-1]
    assert status == 200 and headers.get("idempotent-replayed") == "true"
    assert fast.list_notes(NoteTarget.CUSTOMER, ids["customer"]) == ["RevBridge: reminder sent"]
    posts = ledger(url, "POST", f"/v1/customers/{ids['customer']}")
    assert [p["headers"]["idempotency-key"] for p in posts] == [k, k]
