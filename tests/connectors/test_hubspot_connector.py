"""The HubSpot connector through the official client against the HubSpot sandbox: lookups,
idempotent tickets (unique ``revbridge_key``) and audit notes (a marker looked up through their
ticket or company, since activities have no unique properties), v4 associations, and errors
classified for Temporal (timeouts after commit, 429 with Retry-After, 5xx, validation errors)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import hubspot
import pytest
from pydantic import SecretStr

from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.hubspot import HubSpotCrm, engagement_ref, note_html, note_text
from domain.audit import AuditEntry
from domain.models import CaseDraft, CasePriority, CustomerTier
from domain.settings import HubSpotSettings
from sandbox.framework import ServerThread, free_port
from sandbox.hubspot import HubSpotEmulator

TOKEN = "pat-test-hubspot"
TICKETS = "/crm/v3/objects/tickets"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[HubSpotEmulator, str]]:
    em = HubSpotEmulator(access_token=TOKEN)
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["hubspot"]


@pytest.fixture
def hs(servers: tuple[HubSpotEmulator, str]) -> HubSpotEmulator:
    em = servers[0]
    em.reset_state()
    with em.lock:
        em.faults.clear()
    return em


@pytest.fixture
def url(servers: tuple[HubSpotEmulator, str], hs: HubSpotEmulator) -> str:
    return servers[1]


@pytest.fixture
def crm(url: str) -> HubSpotCrm:
    return HubSpotCrm(HubSpotSettings(access_token=SecretStr(TOKEN), api_url=url), timeout_s=0.5)


@pytest.fixture
def raw(url: str) -> hubspot.HubSpot:
    """The official client, for checking what the connector left behind."""
    return hubspot.HubSpot(access_token=TOKEN, host=url, base_url=url, retry=False)


def seed_company(hs: HubSpotEmulator, customer: str = "cus_1", tier: str = "Enterprise") -> str:
    out = hs.seed(
        {
            "objects": {
                "companies": [
                    {
                        "ref": "acme",
                        "properties": {
                            "name": "Acme <Corp>",
                            "billing_customer_id": customer,
                            "billing_platform": "chargebee",
                            "customer_tier": tier,
                            "hubspot_owner_id": "77",
                        },
                    }
                ]
            }
        }
    )
    return out["refs"]["acme"]["id"]


def draft(key: str, account_id: str | None) -> CaseDraft:
    return CaseDraft(
        key=key,
        account_id=account_id,
        subject="Payment failed: insufficient_funds",
        description="Invoice INV-1 failed.\nworkflow dunning:chargebee:INV-1",
        priority=CasePriority.HIGH,
        invoice_id="INV-1",
    )


def entry(key: str, account_id: str | None, case_id: str | None, **kw: object) -> AuditEntry:
    base: dict[str, object] = {
        "key": key,
        "use_case": "dunning",
        "action": "create_case",
        "parameters_hash": "abc",
        "decision": "allow",
        "policy_ids": ["p1"],
        "outcome": "case opened",
        "summary": "Opened a case <b>&</b> notified the CSM",
        "workflow_id": "dunning:chargebee:INV-1",
        "run_id": "run-1",
        "account_id": account_id,
        "case_id": case_id,
        "at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    return AuditEntry(**{**base, **kw})  # type: ignore[arg-type]


def fault(url: str, **spec: object) -> None:
    assert httpx.post(f"{url}/_sandbox/faults", json=spec).status_code == 201


def tickets_with_key(hs: HubSpotEmulator, key: str) -> list[str]:
    """Every live ticket carrying ``key``, from the sandbox's own store (search lags writes)."""
    with hs.lock:
        return [t.id for t in hs.store.live("tickets") if t.props.get("revbridge_key") == key]


def associated(raw: hubspot.HubSpot, from_type: str, from_id: str, to_type: str) -> dict[str, set]:
    page = raw.crm.associations.v4.basic_api.get_page(from_type, from_id, to_type)
    return {str(r.to_object_id): {t.type_id for t in r.association_types} for r in page.results}


# --- lookups -------------------------------------------------------------------------------------


def test_find_account_found_and_not_found(crm: HubSpotCrm, hs: HubSpotEmulator) -> None:
    company = seed_company(hs)
    account = crm.find_account("chargebee", "cus_1")
    assert account is not None
    assert (account.id, account.name, account.tier, account.owner_id) == (
        company,
        "Acme <Corp>",
        CustomerTier.ENTERPRISE,
        "77",
    )
    assert crm.find_account("chargebee", "cus_nobody") is None
    assert crm.find_account("stripe", "cus_1") is None  # same id, other billing platform


# --- idempotent writes ---------------------------------------------------------------------------


def test_upsert_case_twice_is_one_ticket_associated_to_the_company(
    crm: HubSpotCrm, hs: HubSpotEmulator, raw: hubspot.HubSpot
) -> None:
    company = seed_company(hs)
    first = crm.upsert_case(draft("rb-case-1", company))
    second = crm.upsert_case(draft("rb-case-1", company))
    assert first.created is True and second.created is False
    assert first.id == second.id == first.number
    assert tickets_with_key(hs, "rb-case-1") == [first.id]
    ticket = raw.crm.tickets.basic_api.get_by_id(
        first.id,
        properties=["subject", "content", "hs_ticket_priority", "hs_pipeline", "hs_pipeline_stage"],
    )
    assert ticket.properties["hs_ticket_priority"] == "HIGH"
    assert (ticket.properties["hs_pipeline"], ticket.properties["hs_pipeline_stage"]) == ("0", "1")
    assert ticket.properties["content"].startswith("Invoice INV-1 failed.")
    assert associated(raw, "tickets", first.id, "companies") == {company: {339}}
    assert first.id in associated(raw, "companies", company, "tickets")

    no_account = crm.upsert_case(draft("rb-case-2", None))
    assert no_account.created and associated(raw, "tickets", no_account.id, "companies") == {}


def test_write_audit_twice_is_one_note_on_company_and_ticket(
    crm: HubSpotCrm, hs: HubSpotEmulator, raw: hubspot.HubSpot
) -> None:
    company = seed_company(hs)
    case = crm.upsert_case(draft("rb-case-a", company))
    e = entry("rb-audit-1", company, case.id)
    note_id = crm.write_audit(e)
    assert crm.write_audit(e) == note_id
    assert associated(raw, "notes", note_id, "companies") == {company: {190}}
    assert associated(raw, "notes", note_id, "tickets") == {case.id: {228}}
    assert list(associated(raw, "companies", company, "notes")) == [note_id]
    note = raw.crm.objects.notes.basic_api.get_by_id(
        note_id, properties=["hs_note_body", "hs_timestamp"]
    )
    body = note.properties["hs_note_body"]
    assert "<b>" not in body and "&lt;b&gt;&amp;&lt;/b&gt;" in body  # customer text stays data
    assert "<br>" in body and "\n" not in body
    assert note_text(body) == e.as_text()
    assert note.properties["hs_timestamp"] == "2025-01-02T03:04:05.000Z"
    assert body.endswith("<br>RevBridge ref: " + engagement_ref("rb-audit-1"))


def test_audit_log_lists_one_workflows_notes_oldest_first(
    crm: HubSpotCrm, hs: HubSpotEmulator
) -> None:
    company = seed_company(hs)
    t0 = datetime(2025, 1, 2, tzinfo=UTC)
    later = crm.write_audit(
        entry(
            "rb-a2",
            company,
            None,
            action="close_dunning",
            outcome="recovered",
            at=t0 + timedelta(hours=1),
        )  # fmt: skip
    )
    case = crm.upsert_case(draft("rb-case-log", company))
    earlier = crm.write_audit(entry("rb-a1", company, case.id, at=t0))
    crm.write_audit(entry("rb-other", company, None, workflow_id="dunning:chargebee:INV-10"))
    rows = crm.audit_log("dunning:chargebee:INV-1")
    assert [(r["id"], r["action"], r["outcome"]) for r in rows] == [
        (earlier, "create_case", "case opened"),
        (later, "close_dunning", "recovered"),
    ]
    assert "workflow: dunning:chargebee:INV-1 (run run-1)" in rows[0]["text"]
    assert (rows[0]["case_id"], rows[0]["account_id"]) == (case.id, company)
    assert (rows[1]["case_id"], rows[1]["account_id"]) == (None, company)
    assert crm.audit_log("dunning:chargebee:INV-404") == []


def test_note_html_round_trip() -> None:
    text = "a < b & 'c'\nline two"
    assert note_html(text) == "a &lt; b &amp; &#x27;c&#x27;<br>line two"
    assert note_text(note_html(text)) == text


# --- errors --------------------------------------------------------------------------------------


def test_commit_then_timeout_is_retryable_and_the_retry_finds_the_one_ticket(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str, raw: hubspot.HubSpot
) -> None:
    company = seed_company(hs)
    fault(url, kind="commit_then_timeout", method="POST", path=TICKETS, delay_s=1.5)
    with pytest.raises(ConnectorError) as exc:
        crm.upsert_case(draft("rb-timeout-1", company))
    assert exc.value.kind is ErrorKind.RETRYABLE and "timeout" in str(exc.value)
    again = crm.upsert_case(draft("rb-timeout-1", company))
    assert again.created is False  # the first attempt committed it
    assert tickets_with_key(hs, "rb-timeout-1") == [again.id]
    assert associated(raw, "tickets", again.id, "companies") == {company: {339}}


def test_a_repeat_is_refused_by_the_unique_key_then_read_back(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str
) -> None:
    """Create first (one call when new); a taken key (409) is read back by ``idProperty``."""
    httpx.delete(f"{url}/_sandbox/requests")
    first = crm.upsert_case(draft("rb-repeat-1", None))
    second = crm.upsert_case(draft("rb-repeat-1", None))
    assert (first.created, second.created, second.id) == (True, False, first.id)
    calls = [(r["method"], r["path"], r["status"]) for r in hs.ledger]
    assert calls == [
        ("POST", TICKETS, 201),
        ("POST", TICKETS, 409),
        ("GET", TICKETS + "/rb-repeat-1", 200),
    ]
    assert "idProperty=revbridge_key" in hs.ledger[2]["query"]


def test_rate_limit_is_rate_limited_with_retry_after(crm: HubSpotCrm, hs: HubSpotEmulator) -> None:
    hs.rate_limit_per_10s = 2
    try:
        crm.find_account("chargebee", "cus_1")
        crm.find_account("chargebee", "cus_1")
        with pytest.raises(ConnectorError) as exc:
            crm.find_account("chargebee", "cus_1")
    finally:
        hs.rate_limit_per_10s = 190
        hs.reset_state()
    err = exc.value
    assert err.kind is ErrorKind.RATE_LIMITED and err.status == 429
    assert err.code == "TEN_SECONDLY_ROLLING"
    assert err.retry_after is not None and 1 <= err.retry_after <= 10


def test_429_without_retry_after_waits_the_ten_second_window(crm: HubSpotCrm, url: str) -> None:
    fault(url, path="/crm/v3/objects/companies/.*", status=429)
    with pytest.raises(ConnectorError) as exc:
        crm.find_account("chargebee", "cus_1")
    assert exc.value.kind is ErrorKind.RATE_LIMITED and exc.value.retry_after == 10.0
    fault(url, path="/crm/v3/objects/companies/.*", status=429, retry_after=2.5)
    with pytest.raises(ConnectorError) as exc:
        crm.find_account("chargebee", "cus_1")
    assert exc.value.retry_after == 2.5


def test_5xx_is_retryable(crm: HubSpotCrm, url: str) -> None:
    fault(url, method="POST", path=TICKETS, status=503)
    with pytest.raises(ConnectorError) as exc:
        crm.upsert_case(draft("rb-503", None))
    assert exc.value.kind is ErrorKind.RETRYABLE and exc.value.status == 503
    assert crm.upsert_case(draft("rb-503", None)).created  # the fault was spent; nothing committed


def test_unknown_property_is_permanent(crm: HubSpotCrm, raw: hubspot.HubSpot) -> None:
    """A portal without RevBridge's custom properties: the same request will never succeed."""
    raw.crm.properties.core_api.archive("tickets", "revbridge_key")
    with pytest.raises(ConnectorError) as exc:
        crm.upsert_case(draft("rb-noprop", None))
    err = exc.value
    assert err.kind is ErrorKind.PERMANENT and err.status == 400
    assert err.code == "VALIDATION_ERROR" and "revbridge_key" in str(err)


def test_bad_token_and_missing_company_are_permanent(url: str, hs: HubSpotEmulator) -> None:
    bad = HubSpotCrm(HubSpotSettings(access_token=SecretStr("nope"), api_url=url), timeout_s=2)
    with pytest.raises(ConnectorError) as exc:
        bad.find_account("chargebee", "cus_1")
    assert exc.value.kind is ErrorKind.PERMANENT and exc.value.code == "INVALID_AUTHENTICATION"
    crm = HubSpotCrm(HubSpotSettings(access_token=SecretStr(TOKEN), api_url=url), timeout_s=2)
    with pytest.raises(ConnectorError) as exc:  # association to a company that does not exist
        crm.upsert_case(draft("rb-ghost", "999999"))
    assert exc.value.kind is ErrorKind.PERMANENT and not isinstance(exc.value, NotFound)


def test_connection_refused_is_retryable() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    crm = HubSpotCrm(HubSpotSettings(access_token=SecretStr(TOKEN), api_url=dead), timeout_s=1)
    with pytest.raises(ConnectorError) as exc:
        crm.find_account("chargebee", "cus_1")
    assert exc.value.kind is ErrorKind.RETRYABLE


def test_undeclared_success_status_is_not_silently_none(crm: HubSpotCrm, url: str) -> None:
    """The client returns None for a 200 where it declares 201 (reference §0.2)."""
    fault(url, method="POST", path=TICKETS, status=200, body={"id": "1"})
    with pytest.raises(ConnectorError) as exc:
        crm.upsert_case(draft("rb-200", None))
    assert exc.value.kind is ErrorKind.RETRYABLE and exc.value.code == "no_body"
