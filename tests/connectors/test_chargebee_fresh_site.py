"""A Chargebee site as Chargebee hands it over (issue 16): only its configured payment terms,
Contract Terms off, no CRM-link custom field (and, once created, not searchable until Chargebee
support says so), the test-site limits. The emulator refuses what such a site refuses, through
the official client; the connector turns each refusal into a ``ConfigurationError`` (a
non-retryable ``chargebee.needs_configuration`` failure) and ``preflight()`` names each with its
one-line fix before go-live."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import chargebee
import httpx
import pytest
from pydantic import SecretStr

from activities.errors import to_application_error
from connectors.base import ErrorKind
from connectors.chargebee import (
    COMMENT_MAX_CHARS,
    TRUNCATED_MARKER,
    ChargebeeBilling,
    ConfigurationError,
)
from domain.models import NoteTarget
from domain.preflight import CheckStatus
from domain.records import CustomerDraft, SubscriptionDraft, SubscriptionLine
from domain.settings import ChargebeeSettings
from sandbox.chargebee import ChargebeeEmulator
from sandbox.chargebee.emulator import FRESH_NET_TERMS
from sandbox.framework import ServerThread
from sandbox.scenarios import chargebee_seed

KEY = "k"


def _connector(url: str, key: str = KEY) -> ChargebeeBilling:
    return ChargebeeBilling(
        ChargebeeSettings(site="acme-test", api_key=SecretStr(key), api_url=url), timeout_s=5
    )


@pytest.fixture
def fresh() -> Iterator[tuple[ChargebeeEmulator, str]]:
    em = ChargebeeEmulator.fresh_site(api_key=KEY)
    with ServerThread({em: 0}) as thread:
        url = thread.urls["chargebee"]
        catalog = chargebee_seed((), "fresh")["item_prices"]
        httpx.post(url + "/_sandbox/seed", json={"item_prices": catalog}).raise_for_status()
        yield em, url


def _customer(uid: str, **kw: object) -> CustomerDraft:
    base: dict = {
        "key": f"rb-cust-{uid}",
        "company": f"Acme {uid}",
        "email": f"ap+{uid}@acme.test",
        "crm": "salesforce",
        "crm_account_id": f"001{uid}",
        "net_term_days": 30,
    }
    return CustomerDraft(**{**base, **kw})


def _subscription(uid: str, customer_id: str, **kw: object) -> SubscriptionDraft:
    base: dict = {
        "key": f"rb-sub-{uid}",
        "customer_id": customer_id,
        "lines": [SubscriptionLine(price_id="core-USD-monthly")],
        "term_months": 12,
        "crm": "salesforce",
        "crm_opportunity_id": f"006{uid}",
    }
    return SubscriptionDraft(**{**base, **kw})


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _make_field(url: str, searchable: bool) -> None:
    httpx.post(
        url + "/_sandbox/chargebee/site",
        json={"custom_field": {"api_name": "cf_crm_link", "searchable": searchable}},
    ).raise_for_status()


# --- the emulator refuses what a fresh site refuses (official client) --------------------------


def test_a_fresh_site_refuses_unconfigured_terms_and_contract_terms(
    fresh: tuple[ChargebeeEmulator, str],
) -> None:
    _em, url = fresh
    cb = _connector(url).client
    with pytest.raises(chargebee.InvalidRequestError) as err:
        cb.Customer.create({"company": "X", "net_term_days": 75})
    assert (err.value.http_status_code, err.value.api_error_code) == (400, "param_wrong_value")
    assert err.value.param == "net_term_days"
    cust = cb.Customer.create({"company": "X", "net_term_days": 30}).customer
    assert cust.net_term_days == 30
    with pytest.raises(chargebee.InvalidRequestError) as err:
        cb.Subscription.create_with_items(
            cust.id,
            {
                "subscription_items": [{"item_price_id": "core-USD-monthly"}],
                "billing_cycles": 12,
                "contract_term": {"action_at_term_end": "renew"},
            },
        )
    assert err.value.api_error_code == "configuration_incompatible"
    with pytest.raises(chargebee.InvalidRequestError) as err:
        cb.Customer.create({"company": "Y", "cf_crm_link": "salesforce:001"})
    assert err.value.param == "cf_crm_link"


# --- the connector: a clear configuration error, never an obscure failed run -------------------


def test_each_missing_setting_is_a_configuration_error_the_activity_never_retries(
    fresh: tuple[ChargebeeEmulator, str],
) -> None:
    _em, url = fresh
    billing = _connector(url)
    uid = _uid()
    with pytest.raises(ConfigurationError) as err:
        billing.create_customer(_customer(uid))
    assert err.value.check == "custom-field:cf_crm_link"
    failure = to_application_error(err.value)
    assert failure.non_retryable and failure.type == "chargebee.needs_configuration"
    assert "Custom Fields" in str(err.value)

    _make_field(url, searchable=False)
    uid = _uid()  # the emulator replays the refused key's answer for 30 minutes
    with pytest.raises(ConfigurationError) as err:
        billing.create_customer(_customer(_uid(), net_term_days=75))
    assert err.value.check == "net-terms" and err.value.kind is ErrorKind.PERMANENT
    made = billing.create_customer(_customer(uid))

    with pytest.raises(ConfigurationError) as err:
        billing.find_customer_by_crm("salesforce", "001-nobody")
    assert err.value.check == "searchable:cf_crm_link"

    with pytest.raises(ConfigurationError) as err:
        billing.create_subscription(_subscription(uid, made.id))
    assert err.value.check == "contract-terms"
    assert "Contract Terms" in err.value.fix


def test_once_the_site_is_configured_quote_to_cash_goes_through(
    fresh: tuple[ChargebeeEmulator, str],
) -> None:
    _em, url = fresh
    httpx.post(
        url + "/_sandbox/chargebee/site", json={"net_terms": [75], "contract_terms": True}
    ).raise_for_status()
    _make_field(url, searchable=True)
    billing = _connector(url)
    uid = _uid()
    made = billing.create_customer(_customer(uid, net_term_days=75))
    assert billing.find_customer_by_crm("salesforce", f"001{uid}") is not None
    sub = billing.create_subscription(_subscription(uid, made.id, net_term_days=75))
    assert sub.created


# --- preflight: each misconfiguration with its one-line fix ----------------------------------


def test_preflight_reports_each_misconfiguration_of_a_fresh_site(
    fresh: tuple[ChargebeeEmulator, str],
) -> None:
    _em, url = fresh
    billing = _connector(url)
    checks = {
        c.name: c for c in billing.preflight(net_term_days=(30, 75), site_net_terms=FRESH_NET_TERMS)
    }
    assert checks["credentials"].status is CheckStatus.OK
    for name in ("custom-field:cf_crm_link", "searchable:cf_crm_link", "contract-terms"):
        assert checks[name].status is CheckStatus.FAIL, checks[name]
    assert checks["net-terms"].status is CheckStatus.FAIL
    assert "Net 75" in checks["net-terms"].fix and "Net 30" not in checks["net-terms"].fix
    for check in checks.values():
        if check.failed:
            assert check.fix and "\n" not in check.fix
            assert check.line().startswith("FAIL  chargebee: ")
    # Without the site's terms (the API does not expose them) the check names what to verify.
    unknown = {c.name: c for c in billing.preflight()}["net-terms"]
    assert unknown.status is CheckStatus.WARN and "Net 30" in unknown.fix

    # the field created but not yet searchable, with a customer on the site
    _make_field(url, searchable=False)
    billing.client.Customer.create({"company": "Someone", "cf_crm_link": "hubspot:1"})
    checks = {c.name: c for c in billing.preflight()}
    assert checks["custom-field:cf_crm_link"].status is CheckStatus.OK
    assert checks["searchable:cf_crm_link"].status is CheckStatus.FAIL
    assert "support" in checks["searchable:cf_crm_link"].fix


def test_preflight_passes_on_a_configured_site_and_fails_on_a_wrong_key(
    fresh: tuple[ChargebeeEmulator, str],
) -> None:
    _em, url = fresh
    httpx.post(url + "/_sandbox/chargebee/site", json={"contract_terms": True}).raise_for_status()
    _make_field(url, searchable=True)
    billing = _connector(url)
    billing.create_customer(_customer(_uid()))
    checks = billing.preflight(site_net_terms=FRESH_NET_TERMS)
    assert [c.name for c in checks if c.status is not CheckStatus.OK] == []
    wrong = {c.name: c for c in _connector(url, key="wrong").preflight()}
    assert wrong["credentials"].status is CheckStatus.FAIL
    assert "CHARGEBEE_API_KEY" in wrong["credentials"].fix
    assert wrong["contract-terms"].status is CheckStatus.SKIP


# --- field limits and rate limits, on by default ----------------------------------------------


def test_comments_over_1000_characters_are_refused_and_the_connector_truncates(
    fresh: tuple[ChargebeeEmulator, str],
) -> None:
    _em, url = fresh
    billing = _connector(url)
    cust = billing.client.Customer.create({"company": "Long notes"}).customer
    long = "audit " * 400  # 2,400 characters
    with pytest.raises(chargebee.InvalidRequestError) as err:
        billing.client.Comment.create(
            {"entity_type": "customer", "entity_id": cust.id, "notes": long}
        )
    assert err.value.param == "notes"
    note_id = billing.add_note(NoteTarget.CUSTOMER, cust.id, long, idempotency_key="rb-long-1")
    (stored,) = billing.list_notes(NoteTarget.CUSTOMER, cust.id)
    assert len(stored) == COMMENT_MAX_CHARS and stored.endswith(TRUNCATED_MARKER)
    assert long.startswith(stored[: -len(TRUNCATED_MARKER)])
    again = billing.add_note(NoteTarget.CUSTOMER, cust.id, long, idempotency_key="rb-long-1")
    assert again == note_id


def test_the_test_site_rate_limit_is_on_by_default_and_can_be_turned_off() -> None:
    assert ChargebeeEmulator().rate_limit_per_minute == 150
    assert ChargebeeEmulator(limits=False).rate_limit_per_minute is None
    em = ChargebeeEmulator(api_key=KEY)
    with ServerThread({em: 0}) as thread, httpx.Client(auth=(KEY, "")) as http:
        url = thread.urls["chargebee"] + "/api/v2/customers"
        statuses = [http.get(url, params={"limit": 1}).status_code for _ in range(151)]
        assert statuses[:150] == [200] * 150
        assert statuses[150] == 429
        blocked = http.get(url)
        body = blocked.json()
        assert body["api_error_code"] == "api_request_limit_exceeded"
        assert 1 <= int(blocked.headers["retry-after"]) <= 60


def test_a_probe_that_fails_for_another_reason_is_reported_not_raised(
    fresh: tuple[ChargebeeEmulator, str],
) -> None:
    _em, url = fresh
    httpx.post(
        url + "/_sandbox/faults",
        json={"kind": "status", "status": 503, "path": r"/api/v2/item_prices.*", "times": 1},
    ).raise_for_status()
    checks = {c.name: c for c in _connector(url).preflight()}
    assert checks["contract-terms"].status is CheckStatus.SKIP
    assert "could not be checked" in checks["contract-terms"].detail
    assert checks["custom-field:cf_crm_link"].status is CheckStatus.FAIL
