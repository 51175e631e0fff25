"""The Stripe connector on a realistic account (issues 15 and 16): it paces below the rate
limiter, finds what it wrote moments ago although search lags, matches emails whatever their
case, keeps coupon names within 40 characters, shares one keep-alive HTTP client per process,
reads the invoice context in one call, and checks the account before go-live (preflight).

Against the emulator as it was, the connector ran unpaced (a burst would be 429 on a real
account), missed a customer linked under a second ago (search only), missed ``Jane@…`` for
``jane@…`` (case-sensitive list filter), and had no preflight."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from connectors import stripe as stripe_connector
from connectors.stripe import StripeBilling
from domain.models import NoteTarget
from domain.preflight import CheckStatus
from domain.records import CustomerDraft
from domain.settings import StripeSettings
from sandbox.framework import ServerThread, WebhookTarget
from sandbox.stripe import StripeEmulator

API_KEY = "sk_test_revbridge_fidelity"


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[StripeEmulator, str]]:
    em = StripeEmulator(api_key=API_KEY)  # realistic: 25/s, search 20/s, search lag
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["stripe"]


@pytest.fixture
def em(emulator: tuple[StripeEmulator, str]) -> Iterator[StripeEmulator]:
    em = emulator[0]
    lag = em.search_lag_s
    yield em
    em.set_search_lag(lag)
    em.webhook_targets.clear()
    em.webhook_enabled_events = ["*"]


@pytest.fixture(scope="module")
def url(emulator: tuple[StripeEmulator, str]) -> str:
    return emulator[1]


@pytest.fixture(scope="module")
def billing(url: str) -> StripeBilling:
    return StripeBilling(StripeSettings(api_key=SecretStr(API_KEY), api_url=url), timeout_s=5.0)


def _ledger(url: str) -> list[dict]:
    return httpx.get(url + "/_sandbox/requests").json()["requests"]


def test_a_burst_of_reads_is_paced_below_the_rate_limit(
    em: StripeEmulator, billing: StripeBilling
) -> None:
    before = em.rate_limited
    for _ in range(45):
        billing.list_customers(limit=1)
    assert em.rate_limited == before  # never a 429: 20/s of the account's 25


def test_a_customer_created_a_moment_ago_is_found_despite_search_lag(
    em: StripeEmulator, billing: StripeBilling
) -> None:
    em.set_search_lag(60)  # as slow as Stripe documents it
    account = "001" + uuid.uuid4().hex[:12]
    created = billing.create_customer(
        CustomerDraft(
            key=f"k-{account}",
            company=f"Lagging Widgets {account}",
            email=f"ops-{account}@lagging.example",
            crm="salesforce",
            crm_account_id=account,
        )
    )
    found = billing.find_customer_by_crm("salesforce", account)
    assert found is not None and found.id == created.id
    by_name = billing.find_customers(None, f"lagging widgets {account}")
    assert [c.id for c in by_name] == [created.id]


def test_a_link_set_on_an_old_customer_is_found_despite_search_lag(
    em: StripeEmulator, url: str, billing: StripeBilling
) -> None:
    u = uuid.uuid4().hex[:10]
    httpx.post(
        url + "/_sandbox/seed", json={"customers": [{"id": f"cus_{u}", "email": "o@x.example"}]}
    )
    em.set_search_lag(60)
    billing.set_crm_link(f"cus_{u}", "hubspot", f"co-{u}", idempotency_key=f"link-{u}")
    found = billing.find_customer_by_crm("hubspot", f"co-{u}")
    assert found is not None and found.id == f"cus_{u}"
    billing.set_crm_link(f"cus_{u}", "hubspot", None, idempotency_key=f"unlink-{u}")
    assert billing.find_customer_by_crm("hubspot", f"co-{u}") is None


def test_email_match_whatever_the_crm_case(url: str, billing: StripeBilling) -> None:
    u = uuid.uuid4().hex[:10]
    httpx.post(
        url + "/_sandbox/seed",
        json={"customers": [{"id": f"cus_{u}", "email": f"jane-{u}@acme.example"}]},
    )
    found = billing.find_customers(f"Jane-{u.upper()}@Acme.example".replace(u.upper(), u), None)
    assert [c.id for c in found] == [f"cus_{u}"]


def test_coupon_names_are_cut_to_stripes_40_characters(billing: StripeBilling) -> None:
    coupon_id = billing._create_coupon(
        {
            "percent_off": 5,
            "duration": "once",
            "name": "Retention offer for a very long account name",
        },
        f"coupon-{uuid.uuid4().hex}",
    )
    coupon = billing.client.v1.coupons.retrieve(coupon_id)
    assert coupon.name is not None and len(coupon.name) == 40 and coupon.name.endswith("…")


def test_invoice_context_is_one_call(url: str, billing: StripeBilling) -> None:
    from tests.connectors.test_stripe_connector import seed

    ids = seed(url)
    httpx.post(url + f"/_sandbox/stripe/invoices/{ids['invoice']}/fail_payment", json={})
    httpx.delete(url + "/_sandbox/requests")
    ctx = billing.get_invoice_context(ids["invoice"])
    calls = _ledger(url)
    assert ctx.invoice.id == ids["invoice"] and ctx.customer.id == ids["customer"]
    assert ctx.customer.mrr > 0 and ctx.recent_payments  # customer, subscription, payments
    assert [(c["method"], c["path"]) for c in calls] == [("GET", f"/v1/invoices/{ids['invoice']}")]
    assert len(calls) <= 2  # issue 15's budget for the context


def test_one_keep_alive_http_client_per_process(url: str, billing: StripeBilling) -> None:
    other = StripeBilling(StripeSettings(api_key=SecretStr(API_KEY), api_url=url), timeout_s=5.0)
    assert other.client._requestor._client is billing.client._requestor._client  # type: ignore[attr-defined]
    session = stripe_connector.shared_http_client(billing.call_timeout_s)._session
    assert session is not None
    for _ in range(8):
        other.list_customers(limit=1)
        billing.list_customers(limit=1)
    pools = list(session.get_adapter(url).poolmanager.pools._container.values())
    opened = sum(p.num_connections for p in pools if p.port == int(url.rsplit(":", 1)[1]))
    assert opened == 1  # 16 requests, one TCP connection (one thread)


def test_preflight_on_a_configured_account(em: StripeEmulator, billing: StripeBilling) -> None:
    em.webhook_targets.append(WebhookTarget(url="https://rb.example/webhooks/stripe"))
    checks = {c.name: c for c in billing.preflight()}
    assert checks["key-mode"].status is CheckStatus.OK and "test mode" in checks["key-mode"].detail
    assert checks["credentials"].status is CheckStatus.OK
    assert checks["webhook-endpoint"].status is CheckStatus.OK


def test_preflight_finds_a_missing_endpoint_and_missing_events(
    em: StripeEmulator, billing: StripeBilling
) -> None:
    (missing,) = [c for c in billing.preflight() if c.name == "webhook-endpoint"]
    assert missing.failed and "/webhooks/stripe" in missing.fix
    em.webhook_targets.append(WebhookTarget(url="https://rb.example/webhooks/stripe"))
    em.webhook_enabled_events = ["invoice.payment_failed", "customer.updated"]
    (partial,) = [c for c in billing.preflight() if c.name == "webhook-endpoint"]
    assert partial.failed and "invoice.paid" in partial.detail
    assert "\n" not in partial.line()


def test_preflight_with_a_refused_key(url: str) -> None:
    bad = StripeBilling(
        StripeSettings(api_key=SecretStr("sk_live_not_the_key"), api_url=url), timeout_s=5.0
    )
    checks = {c.name: c for c in bad.preflight()}
    assert checks["key-mode"].status is CheckStatus.OK and "live" in checks["key-mode"].detail
    assert checks["credentials"].failed and "STRIPE_API_KEY" in checks["credentials"].fix
    assert checks["webhook-endpoint"].status is CheckStatus.SKIP


def test_a_note_on_a_full_object_makes_room_among_our_own_notes(
    url: str, billing: StripeBilling
) -> None:
    """Stripe refuses a 51st metadata key: the note still goes in, in place of some of
    RevBridge's older notes, never of metadata RevBridge did not write."""
    u = uuid.uuid4().hex[:10]
    httpx.post(
        url + "/_sandbox/seed", json={"customers": [{"id": f"cus_{u}", "email": "f@x.example"}]}
    )
    billing.set_crm_link(f"cus_{u}", "salesforce", f"001{u}", idempotency_key=f"link-{u}")
    for n in range(48):
        billing.add_note(NoteTarget.CUSTOMER, f"cus_{u}", f"note {n}", idempotency_key=f"n{n}-{u}")
    last = billing.add_note(NoteTarget.CUSTOMER, f"cus_{u}", "the 49th", idempotency_key=f"x-{u}")
    metadata = billing.client.v1.customers.retrieve(f"cus_{u}").to_dict()["metadata"]
    assert len(metadata) <= 50 and metadata[last.rsplit(".", 1)[1]] == "the 49th"
    assert metadata["crm"] == "salesforce" and metadata["crm_account_id"] == f"001{u}"
    assert len(billing.list_notes(NoteTarget.CUSTOMER, f"cus_{u}")) == 48 - 5
    # the same note again (a retried activity) changes nothing
    billing.add_note(NoteTarget.CUSTOMER, f"cus_{u}", "the 49th", idempotency_key=f"x-{u}")
    assert billing.client.v1.customers.retrieve(f"cus_{u}").to_dict()["metadata"] == metadata


def test_a_recent_link_is_found_behind_a_page_of_newer_customer_events(
    em: StripeEmulator, url: str, billing: StripeBilling
) -> None:
    u = uuid.uuid4().hex[:10]
    httpx.post(
        url + "/_sandbox/seed",
        json={"customers": [{"id": f"cus_a{u}", "email": "a@x.example"}, {"id": f"cus_b{u}"}]},
    )
    em.set_search_lag(60)
    billing.set_crm_link(f"cus_a{u}", "salesforce", f"001{u}", idempotency_key=f"link-{u}")
    for n in range(105):  # a busy account: more than one page of newer customer events
        billing.client.v1.customers.update(f"cus_b{u}", {"description": f"d{n}"})
    found = billing.find_customer_by_crm("salesforce", f"001{u}")
    assert found is not None and found.id == f"cus_a{u}"
