"""The Salesforce connector's hot path and its fidelity to a real org, through simple-salesforce
against the emulator: the account with its open cases in one SOQL, the case with its audit
entry in one ``/composite`` call (exactly once on a retry, all or nothing), texts cut to the
org's field lengths with a marker, and ``preflight`` (what ``revbridge doctor`` prints) on a
ready org, a half set-up one, a spent allowance and wrong credentials — each counted from the
emulator's request ledger."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.base import ConnectorError, ErrorKind
from connectors.salesforce import SalesforceCrm
from domain.audit import AuditEntry
from domain.models import CaseDraft, CasePriority, TaskDraft
from domain.preflight import CheckStatus
from domain.records import ChurnScoreRecord
from domain.settings import SalesforceSettings
from sandbox.framework import ServerThread
from sandbox.salesforce import SalesforceEmulator


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SalesforceEmulator, str]]:
    em = SalesforceEmulator(client_id="app", client_secret="s3cret")
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["salesforce"]


@pytest.fixture
def em(server: tuple[SalesforceEmulator, str]) -> SalesforceEmulator:
    httpx.post(server[1] + "/_sandbox/reset").raise_for_status()
    return server[0]


@pytest.fixture
def url(server: tuple[SalesforceEmulator, str], em: SalesforceEmulator) -> str:
    return server[1]


def connector(url: str, secret: str = "s3cret") -> SalesforceCrm:  # noqa: S107
    return SalesforceCrm(
        SalesforceSettings(
            token_url=url + "/services/oauth2/token",
            client_id="app",
            client_secret=SecretStr(secret),
        ),
        timeout_s=5,
    )


@pytest.fixture
def crm(url: str) -> SalesforceCrm:
    return connector(url)


def api_requests(url: str) -> list[dict[str, Any]]:
    """The REST calls in the ledger (the OAuth token requests are not API calls)."""
    rows = httpx.get(url + "/_sandbox/requests").json()["requests"]
    return [r for r in rows if r["path"].startswith("/services/data/")]


def forget_requests(url: str) -> None:
    httpx.delete(url + "/_sandbox/requests").raise_for_status()


def account(em: SalesforceEmulator, customer: str = "cus_1") -> str:
    seeded = em.seed(
        {
            "records": {
                "Account": [
                    {
                        "Name": "Globex",
                        "Customer_Tier__c": "Enterprise",
                        "Billing_Customer_Id__c": customer,
                        "Billing_Platform__c": "chargebee",
                    }
                ]
            }
        }
    )
    return seeded["ids"]["Account"][0]


def draft(key: str, account_id: str | None, description: str = "declined") -> CaseDraft:
    return CaseDraft(
        key=key,
        account_id=account_id,
        subject="Payment failed",
        description=description,
        priority=CasePriority.HIGH,
        invoice_id="INV-1",
    )


def audit(key: str, **overrides: Any) -> AuditEntry:
    fields: dict[str, Any] = {
        "key": key,
        "use_case": "dunning",
        "action": "create_case",
        "parameters_hash": "0" * 64,
        "decision": "allow",
        "outcome": "executed",
        "summary": "opened the case",
        "workflow_id": "dunning:chargebee:INV-1",
        "run_id": "run-1",
        "at": datetime.now(UTC),
    }
    return AuditEntry(**{**fields, **overrides})


# --- the hot path --------------------------------------------------------------------------------


def test_the_account_and_its_open_cases_come_in_one_soql(
    crm: SalesforceCrm, em: SalesforceEmulator, url: str
) -> None:
    acct = account(em)
    for n, status in enumerate(("New", "Closed", "Working", "New")):
        em.seed(
            {
                "records": {
                    "Case": [
                        {
                            "AccountId": acct,
                            "Subject": f"case {n}",
                            "Status": status,
                            "CreatedDate": f"2024-0{n + 1}-01T00:00:00Z",
                        }
                    ]
                }
            }
        )
    crm.find_account("chargebee", "cus_1")  # the token first: only the read is counted
    forget_requests(url)
    found, cases = crm.find_account_with_cases("chargebee", "cus_1", limit=2)
    assert found is not None and (found.id, found.name) == (acct, "Globex")
    assert [c.subject for c in cases] == ["case 3", "case 2"]  # open ones, newest first
    assert cases == crm.open_cases(acct, limit=2)[:2]
    (read,) = api_requests(url)[:1]
    assert len(api_requests(url)) == 2  # this read, then open_cases' comparison read
    assert "FROM Cases" in read["query"] or "FROM+Cases" in read["query"]
    assert crm.find_account_with_cases("chargebee", "nobody") == (None, [])
    account(em, "cus_2")
    found, cases = crm.find_account_with_cases("chargebee", "cus_2")
    assert found is not None and cases == []  # "Cases": null


def test_a_page_of_customers_is_one_soql_with_their_open_cases(
    crm: SalesforceCrm, em: SalesforceEmulator, url: str
) -> None:
    ids = {f"cus_{n}": account(em, f"cus_{n}") for n in range(250)}
    em.seed({"records": {"Case": [{"AccountId": ids["cus_7"], "Subject": "open"}]}})
    crm.find_account("chargebee", "cus_0")
    forget_requests(url)
    page = crm.find_accounts_with_cases("chargebee", [*ids, "nobody"])
    assert set(page) == set(ids)
    assert [c.subject for c in page["cus_7"][1]] == ["open"] and page["cus_8"][1] == []
    assert page["cus_7"][0].id == ids["cus_7"]
    assert len(api_requests(url)) == 2  # 250 customers: two SOQL of at most 200 IDs


def test_a_page_of_scores_is_one_collections_write_and_a_gone_account_holds_none_back(
    crm: SalesforceCrm, em: SalesforceEmulator, url: str
) -> None:
    ids = [account(em, f"cus_{n}") for n in range(3)]
    gone = ids[1]
    crm.client.Account.delete(gone)
    forget_requests(url)
    at = datetime(2024, 5, 1, tzinfo=UTC)
    records = [
        ChurnScoreRecord(account_id=i, score=70, level="high", reasons=["r"], scored_at=at)
        for i in ids
    ]
    assert crm.write_churn_scores(records) == {gone: "ENTITY_IS_DELETED"}
    assert [r["method"] for r in api_requests(url)] == ["PATCH"]
    assert em.get_record(ids[2])["Churn_Level__c"] == "high"  # type: ignore[index]
    assert crm.write_churn_scores(records[2:]) == {}  # a field set: a retry changes nothing


def test_the_case_and_its_audit_entry_are_one_request_and_exactly_once(
    crm: SalesforceCrm, em: SalesforceEmulator, url: str
) -> None:
    acct = account(em)
    crm.find_account("chargebee", "cus_1")
    forget_requests(url)
    first = crm.upsert_case(draft("rb-case-1", acct), audit=audit("rb-audit-1"))
    (call,) = api_requests(url)
    assert (call["method"], call["path"]) == ("POST", "/services/data/v62.0/composite")
    assert first.created and first.number == "00001001"
    again = crm.upsert_case(draft("rb-case-1", acct), audit=audit("rb-audit-1"))
    assert (again.id, again.number, again.created) == (first.id, first.number, False)
    assert len(api_requests(url)) == 2  # no re-read after either upsert
    (case,) = em.records("Case")
    (log,) = em.records("AI_Agent_Log__c")
    assert case["Id"] == first.id
    assert (log["Case__c"], log["Account__c"]) == (first.id, acct)
    assert crm.audit_log("dunning:chargebee:INV-1")[0]["case_id"] == first.id


def test_a_task_and_its_audit_entry_are_one_request_and_exactly_once(
    crm: SalesforceCrm, em: SalesforceEmulator, url: str
) -> None:
    acct = account(em)
    task = TaskDraft(key="rb-task-2", subject="Call", description="d", account_id=acct)
    entry = audit("rb-audit-task-2", action="send_email", account_id=acct)
    crm.find_account("chargebee", "cus_1")
    forget_requests(url)
    first = crm.upsert_task(task, audit=entry)
    assert crm.upsert_task(task, audit=entry) == first
    assert [(r["method"], r["path"]) for r in api_requests(url)] == [
        ("POST", "/services/data/v62.0/composite")
    ] * 2
    assert [t["Id"] for t in em.records("Task")] == [first]
    (log,) = em.records("AI_Agent_Log__c")
    assert (log["Action__c"], log["Account__c"]) == ("send_email", acct)


def test_a_composite_committed_then_timed_out_is_one_case_and_one_entry_after_the_retry(
    crm: SalesforceCrm, em: SalesforceEmulator, url: str
) -> None:
    acct = account(em)
    crm.find_account("chargebee", "cus_1")
    httpx.post(
        url + "/_sandbox/faults",
        json={
            "kind": "commit_then_timeout",
            "method": "POST",
            "path": r"/services/data/.*/composite",
            "delay_s": 6,
            "times": 1,
        },
    ).raise_for_status()
    with pytest.raises(ConnectorError) as err:
        crm.upsert_case(draft("rb-case-2", acct), audit=audit("rb-audit-2"))
    assert err.value.kind is ErrorKind.RETRYABLE
    again = crm.upsert_case(draft("rb-case-2", acct), audit=audit("rb-audit-2"))
    assert again.created is False
    assert [c["Id"] for c in em.records("Case")] == [again.id]
    assert len(em.records("AI_Agent_Log__c")) == 1


def test_a_refused_audit_entry_rolls_the_case_back(
    crm: SalesforceCrm, em: SalesforceEmulator
) -> None:
    acct = account(em)
    bad = audit("rb-audit-3", account_id="001000000000000AAA")  # no such account
    with pytest.raises(ConnectorError) as err:
        crm.upsert_case(draft("rb-case-3", acct), audit=bad)
    assert err.value.kind is ErrorKind.PERMANENT
    assert err.value.code in ("INVALID_CROSS_REFERENCE_KEY", "MALFORMED_ID")
    assert em.records("Case") == [] and em.records("AI_Agent_Log__c") == []  # all or none


# --- field lengths: cut before sending, with a marker --------------------------------------------


def test_long_texts_are_cut_to_the_org_field_lengths_with_a_marker(
    crm: SalesforceCrm, em: SalesforceEmulator, url: str
) -> None:
    acct = account(em)
    long_text = "x" * 40_000
    case = crm.upsert_case(
        draft("rb-case-4", acct, long_text),
        audit=audit(
            "rb-audit-4",
            summary="s" * 200_000,
            policy_ids=[f"policy-{n}" for n in range(60)],
            decision="needs_approval_from_a_very_long_named_group",
        ),
    )
    stored = em.get_record(case.id)
    assert stored is not None and len(stored["Description"]) == 32_000
    assert stored["Description"].endswith("[truncated by RevBridge: 40000 characters in all]")
    (log,) = em.records("AI_Agent_Log__c")
    assert len(log["Details__c"]) == 131_072
    assert log["Details__c"].startswith("[RevBridge] dunning: create_case → executed\ncorrelation:")
    assert len(log["Policy_Ids__c"]) == 255 and log["Policy_Ids__c"].endswith("…")
    assert len(log["Decision__c"]) == 40
    crm.annotate_case(case.id, long_text, "rb-note-1")
    context = em.get_record(case.id)["Billing_Context__c"]  # type: ignore[index]
    assert len(context) == 32_768 and context.endswith("40000 characters in all]")
    task = TaskDraft(key="rb-task-1", subject="t" * 300, description=long_text, account_id=acct)
    forget_requests(url)
    task_id = crm.upsert_task(task)
    assert crm.upsert_task(task) == task_id
    assert [r["method"] for r in api_requests(url)] == ["PATCH", "PATCH"]  # no re-reads
    row = em.get_record(task_id)
    assert row is not None and len(row["Description"]) == 32_000 and len(row["Subject"]) == 255


# --- preflight -----------------------------------------------------------------------------------


def test_preflight_on_a_ready_org_is_all_ok_in_two_requests(
    em: SalesforceEmulator, url: str
) -> None:
    forget_requests(url)
    checks = connector(url).preflight()
    assert [c.status for c in checks] == [CheckStatus.OK] * len(checks), [c.line() for c in checks]
    names = [c.name for c in checks]
    assert names[0] == "credentials" and names[-1] == "api-allowance"
    assert {"object:Case", "object:AI_Agent_Log__c", "object:Account"} <= set(names)
    assert checks[-1].detail == f"{15000 - 1} of 15000 daily API requests left"
    calls = httpx.get(url + "/_sandbox/requests").json()["requests"]
    assert [r["path"] for r in calls] == [
        "/services/oauth2/token",
        "/services/data/v62.0/composite",
    ]


def test_preflight_reports_each_misconfiguration_with_a_one_line_fix(
    em: SalesforceEmulator, url: str
) -> None:
    em.configure_org(
        drop_fields=["Case.Billing_Context__c", "Account.Billing_Customer_Id__c"],
        drop_objects=["AI_Agent_Log__c"],
        access={"Case": {"create": False}},
    )
    em.add_field("Account", {"name": "Billing_Customer_Id__c", "type": "string"})  # no ext ID
    em.configure_org(drop_fields=["Account.Churn_Narrative__c"])
    em.add_field("Account", {"name": "Churn_Narrative__c", "type": "textarea", "length": 4000})
    em.api_used = int(em.daily_api_limit * 0.85)
    checks = {c.name: c for c in connector(url).preflight()}
    failed = {n for n, c in checks.items() if c.status is CheckStatus.FAIL}
    assert failed == {
        "field:Case.Billing_Context__c",
        "field:Account.Billing_Customer_Id__c",
        "field:Account.Churn_Narrative__c",
        "object:AI_Agent_Log__c",
        "object:Case:permissions",
    }
    assert checks["api-allowance"].status is CheckStatus.WARN
    assert checks["object:Opportunity"].status is CheckStatus.OK
    for name in failed | {"api-allowance"}:
        line = checks[name].line()
        assert "\n" not in line and "(fix: " in line, line
    assert "External ID" in checks["field:Account.Billing_Customer_Id__c"].fix
    assert "32768" in checks["field:Account.Churn_Narrative__c"].fix
    assert "Create" in checks["object:Case:permissions"].detail


def test_preflight_finds_a_restricted_picklist_that_would_refuse_the_score(
    crm: SalesforceCrm, em: SalesforceEmulator, url: str
) -> None:
    acct = account(em)
    # an admin created Churn_Level__c with capitalised values and restricted it
    em.configure_org(picklists={"Account.Churn_Level__c": ["Low", "Medium", "High", "Critical"]})
    score = ChurnScoreRecord(
        account_id=acct, score=80, level="high", scored_at=datetime(2024, 5, 1, tzinfo=UTC)
    )
    with pytest.raises(ConnectorError) as err:  # what the sweep would meet on this org
        crm.write_churn_score(score)
    assert err.value.code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    checks = {c.name: c for c in connector(url).preflight()}
    failed = {n for n, c in checks.items() if c.status is CheckStatus.FAIL}
    assert failed == {"field:Account.Churn_Level__c"}
    fix = "add low, medium, high, critical to the picklist Account.Churn_Level__c"
    assert checks["field:Account.Churn_Level__c"].fix == fix
    with pytest.raises(ValueError, match="standard picklist"):
        em.configure_org(picklists={"Case.Type": ["Question"]})  # as in a real org


def test_preflight_on_a_spent_allowance_and_on_wrong_credentials(
    em: SalesforceEmulator, url: str
) -> None:
    em.api_used = em.daily_api_limit
    checks = {c.name: c for c in connector(url).preflight()}
    assert checks["credentials"].status is CheckStatus.OK
    assert checks["api-allowance"].status is CheckStatus.FAIL
    em.api_used = 0
    wrong = connector(url, secret="nope").preflight()
    assert [(c.name, c.status) for c in wrong] == [
        ("credentials", CheckStatus.FAIL),
        ("org", CheckStatus.SKIP),
    ]
    assert "nope" not in wrong[0].line() and wrong[0].fix
