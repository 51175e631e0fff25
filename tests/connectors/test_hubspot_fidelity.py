"""The HubSpot connector against a sandbox that behaves like a real portal (issue 16): activities
have no unique property and no ``idProperty`` reads, search lags writes and is limited to a few
requests per second, text values hold 65,536 characters. And the hot path in as few requests as
HubSpot allows (issue 15): the account with its open cases, the case with its audit note.

Each test here failed against the connector and sandbox before this work: notes and tasks were
made idempotent with a unique ``revbridge_key`` read back by ``idProperty`` (refused by HubSpot),
long bodies were refused, there was no ``find_account_with_cases``, ``upsert_case`` took no audit
entry, and there was no ``preflight``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import hubspot
import pytest
from hubspot.crm.properties import PropertyCreate
from pydantic import SecretStr

from connectors import limits
from connectors.base import ConnectorError, ErrorKind
from connectors.hubspot import (
    INDEX_LAG_S,
    REQUIRED_PROPERTIES,
    REQUIRED_SCOPES,
    TEXT_MAX,
    HubSpotCrm,
    engagement_ref,
    note_text,
)
from domain.audit import AuditEntry
from domain.models import CaseDraft, CasePriority, TaskDraft
from domain.preflight import CheckStatus
from domain.records import ChurnScoreRecord
from domain.settings import HubSpotSettings
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.hubspot.catalog import default_properties
from sandbox.hubspot.emulator import DEFAULT_SCOPES, SEARCH_LAG_S

TOKEN = "pat-test-hubspot-fidelity"
NOTES = "/crm/v3/objects/notes"
TICKETS = "/crm/v3/objects/tickets"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[HubSpotEmulator, str]]:
    em = HubSpotEmulator(access_token=TOKEN)  # real limits and lag: the defaults
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["hubspot"]


@pytest.fixture
def hs(servers: tuple[HubSpotEmulator, str]) -> HubSpotEmulator:
    em = servers[0]
    em.reset_state()
    with em.lock:
        em.faults.clear()
    em.scopes = list(DEFAULT_SCOPES)
    return em


@pytest.fixture
def url(servers: tuple[HubSpotEmulator, str], hs: HubSpotEmulator) -> str:
    return servers[1]


@pytest.fixture
def crm(url: str) -> HubSpotCrm:
    return HubSpotCrm(HubSpotSettings(access_token=SecretStr(TOKEN), api_url=url), timeout_s=0.5)


@pytest.fixture
def raw(url: str) -> hubspot.HubSpot:
    return hubspot.HubSpot(access_token=TOKEN, host=url, base_url=url, retry=False)


def seed(hs: HubSpotEmulator, tickets: list[tuple[str, str]] = ()) -> tuple[str, list[str]]:
    """A company linked to chargebee ``cus_1`` and tickets ``(subject, stage)`` on it."""
    out = hs.seed(
        {
            "objects": {
                "companies": [
                    {
                        "ref": "acme",
                        "properties": {
                            "name": "Acme",
                            "billing_customer_id": "cus_1",
                            "billing_platform": "chargebee",
                            "customer_tier": "Enterprise",
                        },
                    }
                ],
                "tickets": [
                    {
                        "properties": {
                            "subject": subject,
                            "hs_pipeline": "0",
                            "hs_pipeline_stage": stage,
                        },
                        "associations": [],
                    }
                    for subject, stage in tickets
                ],
            },
            "associations": [
                {
                    "from": {"type": "tickets", "index": i},
                    "to": "acme",
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 339}],
                }
                for i in range(len(tickets))
            ],
        }
    )
    return out["refs"]["acme"]["id"], out["objects"].get("tickets", [])


def entry(key: str, account_id: str | None, case_id: str | None, **kw: Any) -> AuditEntry:
    base: dict[str, Any] = {
        "key": key,
        "use_case": "dunning",
        "action": "create_case",
        "parameters_hash": "abc",
        "decision": "allow",
        "outcome": "case opened",
        "summary": "Opened a case",
        "workflow_id": "dunning:chargebee:INV-9",
        "run_id": "run-1",
        "account_id": account_id,
        "case_id": case_id,
        "at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    return AuditEntry(**{**base, **kw})


def draft(key: str, account_id: str | None) -> CaseDraft:
    return CaseDraft(
        key=key,
        account_id=account_id,
        subject="Payment failed",
        description="Invoice INV-9 failed.",
        priority=CasePriority.HIGH,
        invoice_id="INV-9",
    )


def clear_ledger(url: str) -> None:
    httpx.delete(f"{url}/_sandbox/requests").raise_for_status()


def calls(hs: HubSpotEmulator) -> list[tuple[str, str, int | None]]:
    with hs.lock:
        return [(r["method"], r["path"], r["status"]) for r in hs.ledger]


def notes_with(hs: HubSpotEmulator, key: str) -> list[str]:
    """The live notes carrying ``key``'s marker, from the sandbox's own store."""
    ref = "RevBridge ref: " + engagement_ref(key)
    with hs.lock:
        return [n.id for n in hs.store.live("notes") if n.props["hs_note_body"].endswith(ref)]


def fault(url: str, **spec: Any) -> None:
    assert httpx.post(f"{url}/_sandbox/faults", json=spec).status_code == 201


# --- activities: exactly once without a unique property ------------------------------------------


def test_an_audit_note_committed_then_timed_out_is_one_note_after_the_retry(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str
) -> None:
    company, (ticket,) = seed(hs, [("Outage", "1")])
    e = entry("rb-fid-audit-1", company, ticket)
    fault(url, kind="commit_then_timeout", method="POST", path=NOTES, delay_s=1.5, times=1)
    with pytest.raises(ConnectorError) as err:
        crm.write_audit(e)
    assert err.value.kind is ErrorKind.RETRYABLE
    assert len(notes_with(hs, e.key)) == 1  # the first attempt committed
    clear_ledger(url)
    with limits.attempt(2):  # Temporal's retry, at once: well inside the search index's lag
        again = crm.write_audit(e)
    assert notes_with(hs, e.key) == [again]
    # found through the ticket's associations and a read by ID, never search or idProperty
    assert calls(hs) == [
        ("GET", f"/crm/v4/objects/tickets/{ticket}/associations/notes", 200),
        ("POST", f"{NOTES}/batch/read", 200),
    ]
    with hs.lock:
        assert not any("idProperty" in (r.get("query") or "") for r in hs.ledger)


def test_a_task_written_twice_is_one_task_found_through_its_company(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str, raw: hubspot.HubSpot
) -> None:
    company, _ = seed(hs)
    task = TaskDraft(
        key="rb-fid-task-1",
        account_id=company,
        subject="Call the customer",
        description="Strategic account: card declined.",
        high_priority=True,
    )
    first = crm.upsert_task(task)
    clear_ledger(url)
    assert crm.upsert_task(task) == first
    assert calls(hs) == [
        ("GET", f"/crm/v4/objects/companies/{company}/associations/tasks", 200),
        ("POST", "/crm/v3/objects/tasks/batch/read", 200),
    ]
    page = raw.crm.associations.v4.basic_api.get_page("companies", company, "tasks")
    assert [str(r.to_object_id) for r in page.results] == [first]


def test_an_unassociated_note_retried_waits_out_the_index_lag(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str
) -> None:
    """No ticket or company to look it up by: only search can find the earlier attempt's note,
    and search shows it only after the index lag, so the retry waits that out first."""
    assert SEARCH_LAG_S < INDEX_LAG_S
    e = entry("rb-fid-orphan-1", None, None)
    fault(url, kind="commit_then_timeout", method="POST", path=NOTES, delay_s=1.5, times=1)
    with pytest.raises(ConnectorError):
        crm.write_audit(e)
    started = time.monotonic()
    with limits.attempt(2):
        again = crm.write_audit(e)
    assert notes_with(hs, e.key) == [again]
    assert time.monotonic() - started >= INDEX_LAG_S - 0.1


def test_a_body_over_hubspots_limit_is_cut_with_a_marker_and_stays_idempotent(
    crm: HubSpotCrm, hs: HubSpotEmulator, raw: hubspot.HubSpot
) -> None:
    company, _ = seed(hs)
    e = entry("rb-fid-long-1", company, None, summary="x & y " * 20_000)  # 120,000 characters
    note_id = crm.write_audit(e)
    body = raw.crm.objects.notes.basic_api.get_by_id(note_id, properties=["hs_note_body"])
    stored = body.properties["hs_note_body"]
    assert len(stored) <= TEXT_MAX
    assert "[truncated by RevBridge: " in stored
    assert stored.endswith("RevBridge ref: " + engagement_ref(e.key))
    kept = stored.split("<br>… [truncated by RevBridge")[0]
    assert kept.endswith(("&amp;", " ", "x", "y"))  # never half an entity
    assert crm.write_audit(e) == note_id
    long_case = draft("rb-fid-long-case", company).model_copy(update={"description": "d" * 70_000})
    case = crm.upsert_case(long_case)
    content = raw.crm.tickets.basic_api.get_by_id(case.id, properties=["content"])
    assert len(content.properties["content"]) == TEXT_MAX
    assert "[truncated by RevBridge: 70,000 characters in full]" in content.properties["content"]


# --- the hot path in as few requests as HubSpot allows --------------------------------------------


def test_the_account_with_its_open_cases_is_one_request_or_two(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str
) -> None:
    company, _ = seed(hs)
    clear_ledger(url)
    account, cases = crm.find_account_with_cases("chargebee", "cus_1")
    assert account is not None and account.id == company and cases == []
    assert calls(hs) == [("GET", "/crm/v3/objects/companies/cus_1", 200)]  # no search

    hs.reset_state()
    company, tickets = seed(hs, [("Old", "1"), ("Closed", "4"), ("Newer", "2"), ("Newest", "3")])
    clear_ledger(url)
    account, cases = crm.find_account_with_cases("chargebee", "cus_1", limit=2)
    assert account is not None and account.id == company
    assert [c.subject for c in cases] == ["Newest", "Newer"]
    assert calls(hs) == [
        ("GET", "/crm/v3/objects/companies/cus_1", 200),
        ("POST", f"{TICKETS}/batch/read", 200),
    ]
    every = crm.find_account_with_cases("chargebee", "cus_1")[1]
    assert [c.subject for c in every] == ["Newest", "Newer", "Old"]
    assert {c.id for c in every} == {tickets[0], tickets[2], tickets[3]}
    assert crm.find_account_with_cases("stripe", "cus_1") == (None, [])
    assert crm.find_account_with_cases("chargebee", "cus_nobody") == (None, [])


def test_the_case_with_its_audit_note_is_two_requests_and_a_retry_writes_nothing_new(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str, raw: hubspot.HubSpot
) -> None:
    company, _ = seed(hs)
    audit = entry("rb-fid-case-audit", company, None)
    clear_ledger(url)
    case = crm.upsert_case(draft("rb-fid-case", company), audit)
    assert case.created
    assert calls(hs) == [("POST", TICKETS, 201), ("POST", NOTES, 201)]  # no re-read
    (note,) = notes_with(hs, audit.key)
    notes_of_ticket = raw.crm.associations.v4.basic_api.get_page("tickets", case.id, "notes")
    assert [str(r.to_object_id) for r in notes_of_ticket.results] == [note]
    body = raw.crm.objects.notes.basic_api.get_by_id(note, properties=["hs_note_body"])
    assert f"CRM case: {case.id}" in note_text(body.properties["hs_note_body"])

    clear_ledger(url)
    again = crm.upsert_case(draft("rb-fid-case", company), audit)
    assert (again.created, again.id) == (False, case.id)
    assert notes_with(hs, audit.key) == [note]
    assert calls(hs) == [
        ("POST", TICKETS, 409),
        ("GET", f"{TICKETS}/rb-fid-case", 200),  # by its unique key, with its notes
        ("POST", f"{NOTES}/batch/read", 200),
    ]


def test_a_case_whose_audit_note_timed_out_after_commit_has_one_note_after_the_retry(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str
) -> None:
    company, _ = seed(hs)
    audit = entry("rb-fid-case-audit-2", company, None)
    fault(url, kind="commit_then_timeout", method="POST", path=NOTES, delay_s=1.5, times=1)
    with pytest.raises(ConnectorError):
        crm.upsert_case(draft("rb-fid-case-2", company), audit)
    with limits.attempt(2):
        again = crm.upsert_case(draft("rb-fid-case-2", company), audit)
    assert again.created is False
    assert len(notes_with(hs, audit.key)) == 1


# --- preflight ----------------------------------------------------------------------------------


def test_preflight_passes_on_a_portal_set_up_like_the_sandbox(crm: HubSpotCrm) -> None:
    checks = crm.preflight()
    assert [c.line() for c in checks if c.status is not CheckStatus.OK] == []
    names = {c.name for c in checks}
    assert "token" in names and {f"scope:{s}" for s in REQUIRED_SCOPES} <= names
    assert {f"property:{t}.{p}" for t, p, *_ in REQUIRED_PROPERTIES} <= names


def test_preflight_reports_a_missing_property_a_wrong_one_and_a_missing_scope_with_fixes(
    crm: HubSpotCrm, hs: HubSpotEmulator, raw: hubspot.HubSpot
) -> None:
    raw.crm.properties.core_api.archive("companies", "churn_risk")
    raw.crm.properties.core_api.archive("tickets", "revbridge_key")
    raw.crm.properties.core_api.create(
        "tickets",
        PropertyCreate(
            name="revbridge_key", label="k", type="string", field_type="text", group_name="g"
        ),
    )  # re-created without unique values
    hs.scopes = [s for s in DEFAULT_SCOPES if s != "tickets"]
    failed = {c.name: c for c in crm.preflight() if c.failed}
    assert set(failed) == {
        "property:companies.churn_risk",
        "property:tickets.revbridge_key",
        "scope:tickets",
    }
    assert failed["property:companies.churn_risk"].fix == (
        "create property churn_risk (string) on companies"
    )
    line = failed["property:companies.churn_risk"].line()
    assert line.startswith("FAIL  hubspot: property:companies.churn_risk") and "\n" not in line
    assert "unique" in failed["property:tickets.revbridge_key"].detail
    assert failed["scope:tickets"].fix.startswith("add the tickets scope to the private app")


def test_preflight_with_a_token_hubspot_does_not_know_is_one_failure(url: str) -> None:
    bad = HubSpotCrm(HubSpotSettings(access_token=SecretStr("pat-wrong"), api_url=url))
    token = [c for c in bad.preflight() if c.name == "token"]
    assert [c.status for c in token] == [CheckStatus.FAIL]
    assert "HUBSPOT_ACCESS_TOKEN" in token[0].fix


def test_the_required_properties_are_those_the_sandbox_portal_has() -> None:
    """The preflight's list and the sandbox's catalog describe one portal set-up."""
    catalog = default_properties()
    for otype, name, kind, unique in REQUIRED_PROPERTIES:
        definition = catalog[otype][name]
        assert (definition["type"], definition["hasUniqueValue"]) == (kind, unique), name


# --- search limit ---------------------------------------------------------------------------------


def test_search_is_paced_under_hubspots_limit_even_when_no_worker_configured_it(
    crm: HubSpotCrm, hs: HubSpotEmulator
) -> None:
    limits.configure_pacing({limits.search_limit("hubspot"): None})
    for _ in range(8):  # the sandbox allows 5 searches a second, as HubSpot does
        assert crm.search_notes("nothing-here") == []
    with hs.lock:
        assert all(r["status"] == 200 for r in hs.ledger if r["path"].endswith("/search"))


def test_the_audit_log_reads_notes_the_search_index_does_not_show_yet(
    crm: HubSpotCrm, hs: HubSpotEmulator
) -> None:
    """Search points to the workflow's company; its notes are then read by association and ID,
    so a note written a moment ago (not indexed yet) is in the log too, without waiting."""
    company, (ticket,) = seed(hs, [("Outage", "1")])
    first = crm.write_audit(entry("rb-fid-log-1", company, None))
    time.sleep(SEARCH_LAG_S + 0.1)
    second = crm.write_audit(entry("rb-fid-log-2", company, ticket, action="close_dunning"))
    crm.write_audit(entry("rb-fid-log-3", company, None, workflow_id="dunning:chargebee:INV-10"))
    started = time.monotonic()
    rows = crm.audit_log("dunning:chargebee:INV-9")
    assert time.monotonic() - started < INDEX_LAG_S  # no wait: the first note was indexed
    assert [(r["id"], r["action"]) for r in rows] == [
        (first, "create_case"),
        (second, "close_dunning"),
    ]
    assert (rows[1]["account_id"], rows[1]["case_id"]) == (company, ticket)


# --- the churn sweep: a page of customers at once -------------------------------------------------


def test_a_page_of_accounts_with_their_open_cases_is_three_requests(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str
) -> None:
    def company(ref: str, customer: str, billing: str) -> dict[str, Any]:
        return {
            "ref": ref,
            "properties": {
                "name": ref,
                "billing_customer_id": customer,
                "billing_platform": billing,
            },
        }

    link = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 339}
    out = hs.seed(
        {
            "objects": {
                "companies": [
                    company("a", "cus_a", "chargebee"),
                    company("b", "cus_b", "chargebee"),
                    company("s", "cus_s", "stripe"),
                ],
                "tickets": [
                    {"ref": "t1", "properties": {"subject": "Open", "hs_pipeline_stage": "1"}},
                    {"ref": "t2", "properties": {"subject": "Closed", "hs_pipeline_stage": "4"}},
                    {"ref": "t3", "properties": {"subject": "Newer", "hs_pipeline_stage": "2"}},
                ],
            },
            "associations": [{"from": t, "to": "a", "types": [link]} for t in ("t1", "t2", "t3")],
        }
    )
    refs = {k: v["id"] for k, v in out["refs"].items()}
    clear_ledger(url)
    page = crm.find_accounts_with_cases("chargebee", ["cus_a", "cus_b", "cus_s", "cus_none"])
    assert set(page) == {"cus_a", "cus_b"}  # other billing platform, or no company: absent
    account, cases = page["cus_a"]
    assert account.id == refs["a"] and [c.subject for c in cases] == ["Newer", "Open"]
    assert page["cus_b"][1] == []
    assert [(m, p) for m, p, _ in calls(hs)] == [
        ("POST", "/crm/v3/objects/companies/batch/read"),
        ("POST", "/crm/v4/associations/companies/tickets/batch/read"),
        ("POST", f"{TICKETS}/batch/read"),
    ]


def test_a_page_of_churn_scores_is_one_request_and_a_missing_company_is_reported(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str, raw: hubspot.HubSpot
) -> None:
    company, _ = seed(hs)
    at = datetime(2025, 3, 1, tzinfo=UTC)
    records = [
        ChurnScoreRecord(
            account_id=company,
            score=72,
            level="high",
            reasons=["3 failures"],
            narrative="n" * 70_000,
            scored_at=at,
        ),  # fmt: skip
        ChurnScoreRecord(account_id="999999", score=10, level="low", scored_at=at),
    ]
    clear_ledger(url)
    assert crm.write_churn_scores(records) == {"999999": "OBJECT_NOT_FOUND"}
    assert [(m, p) for m, p, _ in calls(hs)] == [("POST", "/crm/v3/objects/companies/batch/update")]
    written = raw.crm.companies.basic_api.get_by_id(
        company, properties=["churn_risk", "churn_level", "churn_narrative"]
    ).properties
    assert (written["churn_risk"], written["churn_level"]) == ("72", "high")
    assert len(written["churn_narrative"]) == TEXT_MAX  # cut to HubSpot's limit, with a marker


def test_a_task_with_its_audit_note_skips_the_notes_look_up_when_the_task_is_new(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str
) -> None:
    company, _ = seed(hs)
    task = TaskDraft(key="rb-fid-task-audit", account_id=company, subject="Call", description="d")
    audit = entry("rb-fid-task-audit-entry", company, None, action="create_task")
    clear_ledger(url)
    task_id = crm.upsert_task(task, audit)
    assert calls(hs) == [
        ("GET", f"/crm/v4/objects/companies/{company}/associations/tasks", 200),
        ("POST", "/crm/v3/objects/tasks", 201),
        ("POST", NOTES, 201),
    ]
    assert crm.upsert_task(task, audit) == task_id  # a repeat: both found, nothing new
    assert len(notes_with(hs, audit.key)) == 1
