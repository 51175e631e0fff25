"""The Salesforce emulator where a real org is stricter than a kind emulator would be, through
``simple-salesforce``: the ``/composite`` resource (references, per-subrequest status codes,
``allOrNone`` rollback, the 25-subrequest limit, one API call), parent-to-child subqueries that
answer ``null`` when empty, standard long text areas of 32,000 characters, the daily API
allowance over a rolling 24 hours (and the knob that turns it off), and an org not yet set up
for RevBridge (fields and objects missing, object permissions lacking)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceRefusedRequest

from sandbox.framework import ServerThread, WebhookTarget
from sandbox.salesforce import SalesforceEmulator
from tests.sandbox.test_salesforce_emulator import (
    CLIENT_ID,
    CLIENT_SECRET,
    Receiver,
    error_code,
    fetch_token,
    make_client,
)

B = "/services/data/v62.0"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[SalesforceEmulator, Receiver, str, Clock, str]]:
    clock = Clock()
    emulator, receiver = SalesforceEmulator(clock=clock), Receiver()
    with ServerThread({emulator: 0, receiver.app: 0}) as st:
        yield emulator, receiver, st.urls["salesforce"], clock, st.urls["receiver"] + "/hook"


@pytest.fixture
def em(servers: tuple[SalesforceEmulator, Receiver, str, Clock, str]) -> SalesforceEmulator:
    httpx.post(f"{servers[2]}/_sandbox/reset").raise_for_status()
    return servers[0]


@pytest.fixture
def base(
    servers: tuple[SalesforceEmulator, Receiver, str, Clock, str], em: SalesforceEmulator
) -> str:
    return servers[2]


@pytest.fixture
def sf(base: str) -> Salesforce:
    resp = fetch_token(base)
    resp.raise_for_status()
    return make_client(resp.json())


def composite(sf: Salesforce, subrequests: list[dict[str, Any]], all_or_none: bool) -> list[dict]:
    body = {"allOrNone": all_or_none, "compositeRequest": subrequests}
    return sf.restful("composite", method="POST", json=body)["compositeResponse"]


def case_upsert(key: str, ref: str = "case", **fields: Any) -> dict[str, Any]:
    return {
        "method": "PATCH",
        "url": f"{B}/sobjects/Case/RevBridge_Key__c/{key}",
        "referenceId": ref,
        "body": {"Subject": f"case {key}", **fields},
    }


def audit_upsert(key: str, **fields: Any) -> dict[str, Any]:
    return {
        "method": "PATCH",
        "url": f"{B}/sobjects/AI_Agent_Log__c/RevBridge_Key__c/{key}",
        "referenceId": "audit",
        "body": {"Case__c": "@{case.id}", "Details__c": "audit", **fields},
    }


# --- /composite ----------------------------------------------------------------------------------


def test_composite_runs_subrequests_in_order_with_references_as_one_api_call(
    sf: Salesforce, em: SalesforceEmulator
) -> None:
    before = em.api_used
    out = composite(
        sf,
        [
            case_upsert("k-1"),
            {
                "method": "GET",
                "url": f"{B}/sobjects/Case/@{{case.id}}?fields=CaseNumber,Subject",
                "referenceId": "read",
            },
            audit_upsert("a-1"),
            {
                "method": "GET",
                "url": f"{B}/query?q=SELECT+Id+FROM+AI_Agent_Log__c+WHERE+Case__c='@{{case.id}}'",
                "referenceId": "logs",
            },
        ],
        all_or_none=True,
    )
    assert [r["referenceId"] for r in out] == ["case", "read", "audit", "logs"]
    assert [r["httpStatusCode"] for r in out] == [201, 200, 201, 200]
    case_id = out[0]["body"]["id"]
    assert out[0]["body"] == {"id": case_id, "success": True, "errors": [], "created": True}
    assert out[0]["httpHeaders"] == {"Location": f"{B}/sobjects/Case/{case_id}"}
    assert out[1]["body"]["CaseNumber"] and out[1]["body"]["Subject"] == "case k-1"
    assert em.get_record(out[2]["body"]["id"])["Case__c"] == case_id
    assert out[3]["body"]["totalSize"] == 1
    assert em.api_used == before + 1  # a composite call is one API request, whatever it holds

    again = composite(sf, [case_upsert("k-1"), audit_upsert("a-1")], all_or_none=True)
    assert [r["httpStatusCode"] for r in again] == [200, 200]  # upserts by key: updated
    assert again[0]["body"]["created"] is False and again[0]["body"]["id"] == case_id
    assert len(em.records("Case")) == 1 and len(em.records("AI_Agent_Log__c")) == 1


def test_all_or_none_rolls_everything_back_and_halts_the_others(
    sf: Salesforce, em: SalesforceEmulator, servers: tuple[Any, Receiver, str, Clock, str]
) -> None:
    out = composite(
        sf,
        [case_upsert("k-2"), audit_upsert("a-2", Decision__c="x" * 41), case_upsert("k-3", "c3")],
        all_or_none=True,
    )
    assert [r["httpStatusCode"] for r in out] == [400, 400, 400]
    assert out[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert out[1]["body"][0]["errorCode"] == "STRING_TOO_LONG"
    assert out[1]["body"][0]["fields"] == ["Decision__c"]
    assert out[2]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert em.records("Case") == [] and em.records("AI_Agent_Log__c") == []


def test_without_all_or_none_only_dependent_subrequests_are_skipped(
    sf: Salesforce, em: SalesforceEmulator
) -> None:
    out = composite(
        sf,
        [
            case_upsert("k-4", Status="Bogus"),  # restricted picklist: fails
            audit_upsert("a-4"),  # references the failed case: not run
            case_upsert("k-5", "other"),  # independent: runs and stays
        ],
        all_or_none=False,
    )
    assert [r["httpStatusCode"] for r in out] == [400, 400, 201]
    assert out[0]["body"][0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert out[1]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert "case.id" in out[1]["body"][0]["message"]
    assert [c["Subject"] for c in em.records("Case")] == ["case k-5"]
    assert em.records("AI_Agent_Log__c") == []


def test_composite_limits_and_malformed_requests(sf: Salesforce, em: SalesforceEmulator) -> None:
    too_many = [case_upsert(f"k-{n}", f"c{n}") for n in range(26)]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        composite(sf, too_many, all_or_none=True)
    assert error_code(exc) == "LIMIT_EXCEEDED"
    queries = [
        {"method": "GET", "url": f"{B}/query?q=SELECT+Id+FROM+Case", "referenceId": f"q{n}"}
        for n in range(6)
    ]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        composite(sf, queries, all_or_none=False)
    assert error_code(exc) == "LIMIT_EXCEEDED"
    with pytest.raises(SalesforceMalformedRequest):  # referenceIds are unique
        composite(sf, [case_upsert("k-6"), case_upsert("k-7")], all_or_none=True)
    with pytest.raises(SalesforceMalformedRequest):  # subrequest URLs are /services/data/...
        composite(sf, [{"method": "GET", "url": "/x", "referenceId": "x"}], all_or_none=False)
    assert composite(sf, too_many[:25], all_or_none=True)[-1]["httpStatusCode"] == 201
    assert len(em.records("Case")) == 25


def test_a_rolled_back_case_sends_no_case_created_callout(
    sf: Salesforce, em: SalesforceEmulator, servers: tuple[Any, Receiver, str, Clock, str]
) -> None:
    receiver, hook = servers[1], servers[4]
    em.webhook_targets = [WebhookTarget(url=hook)]
    try:
        composite(sf, [case_upsert("k-8"), audit_upsert("a-8", Account__c="001bogus")], True)
        assert em.records("Case") == []
        composite(sf, [case_upsert("k-9")], True)
        received = receiver.wait_for(1)
    finally:
        em.webhook_targets = []
    assert [r["body"]["record"]["Subject"] for r in received] == ["case k-9"]


# --- parent-to-child subqueries ------------------------------------------------------------------


def test_cases_subquery_is_null_when_empty_and_keeps_only_open_cases_newest_first(
    sf: Salesforce, em: SalesforceEmulator
) -> None:
    seeded = em.seed(
        {
            "records": {
                "Account": [{"Ref": "a", "Name": "A", "Billing_Customer_Id__c": "cus_a"}],
                "Case": [
                    {"AccountId": "@a", "Subject": "old", "CreatedDate": "2024-01-01T00:00:00Z"},
                    {"AccountId": "@a", "Subject": "new", "CreatedDate": "2024-03-01T00:00:00Z"},
                    {"AccountId": "@a", "Subject": "mid", "CreatedDate": "2024-02-01T00:00:00Z"},
                    {"AccountId": "@a", "Subject": "shut", "Status": "Closed"},
                ],
            }
        }
    )
    soql = (
        "SELECT Id, (SELECT Subject FROM Cases WHERE IsClosed = false "
        "ORDER BY CreatedDate DESC LIMIT 2) FROM Account WHERE Billing_Customer_Id__c = '{}'"
    )
    row = sf.query(soql.format("cus_a"))["records"][0]
    assert row["Id"] == seeded["refs"]["a"]
    cases = row["Cases"]
    assert (cases["totalSize"], cases["done"]) == (2, True)
    assert [c["Subject"] for c in cases["records"]] == ["new", "mid"]
    assert cases["records"][0]["attributes"]["type"] == "Case"
    em.seed({"records": {"Account": [{"Name": "B", "Billing_Customer_Id__c": "cus_b"}]}})
    assert sf.query(soql.format("cus_b"))["records"][0]["Cases"] is None


# --- field lengths -------------------------------------------------------------------------------


def test_standard_descriptions_hold_32000_characters(sf: Salesforce) -> None:
    assert sf.Case.create({"Subject": "ok", "Description": "d" * 32000})["success"]
    for obj, fields in (
        (sf.Case, {"Subject": "long"}),
        (sf.Task, {"Subject": "long"}),
        (sf.Account, {"Name": "long"}),
    ):
        with pytest.raises(SalesforceMalformedRequest) as exc:
            obj.create({**fields, "Description": "d" * 32001})
        assert error_code(exc) == "STRING_TOO_LONG"
        assert exc.value.content[0]["fields"] == ["Description"]
    described = {f["name"]: f for f in sf.Case.describe()["fields"]}
    assert described["Description"]["length"] == 32000
    assert described["Billing_Context__c"]["length"] == 32768  # RevBridge's own Long Text Area


# --- the daily API allowance ---------------------------------------------------------------------


def test_the_allowance_is_a_rolling_24_hours(
    sf: Salesforce, em: SalesforceEmulator, servers: tuple[Any, Any, str, Clock, str]
) -> None:
    clock = servers[3]
    em.api_used = em.daily_api_limit - 1
    sf.query("SELECT Id FROM Account")  # the last request of the allowance
    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (15000, 15000)
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.query("SELECT Id FROM Account")
    assert error_code(exc) == "REQUEST_LIMIT_EXCEEDED"
    clock.now += 23 * 3600
    with pytest.raises(SalesforceRefusedRequest):
        sf.query("SELECT Id FROM Account")
    clock.now += 3600 + 60  # the requests of 24 hours ago leave the window
    sf.query("SELECT Id FROM Account")
    assert sf.api_usage["api-usage"].used == 1


def test_limits_off_never_refuses_but_still_counts() -> None:
    em = SalesforceEmulator(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, limits=False)
    with ServerThread({em: 0}) as st:
        token = fetch_token(st.urls["salesforce"])
        sf = make_client(token.json())
        em.api_used = em.daily_api_limit
        sf.query("SELECT Id FROM Account")
        assert sf.api_usage["api-usage"].used == em.daily_api_limit + 1


# --- an org not yet set up -----------------------------------------------------------------------


def test_an_org_without_revbridge_setup(sf: Salesforce, em: SalesforceEmulator, base: str) -> None:
    httpx.post(
        f"{base}/_sandbox/salesforce/org",
        json={
            "drop_fields": ["Case.Billing_Context__c"],
            "drop_objects": ["AI_Agent_Log__c"],
            "access": {"Task": {"create": False}},
        },
    ).raise_for_status()
    assert "Billing_Context__c" not in {f["name"] for f in sf.Case.describe()["fields"]}
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Case.create({"Subject": "s", "Billing_Context__c": "x"})
    assert error_code(exc) == "INVALID_FIELD"
    assert "AI_Agent_Logs__r" not in {
        c["relationshipName"] for c in sf.Account.describe()["childRelationships"]
    }
    assert "AI_Agent_Log__c" not in {o["name"] for o in sf.describe()["sobjects"]}
    task = sf.Task.describe()
    assert (task["createable"], task["updateable"]) == (False, True)
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Task.create({"Subject": "call"})
    assert error_code(exc) == "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"
    httpx.post(f"{base}/_sandbox/reset").raise_for_status()
    assert sf.Task.create({"Subject": "call"})["success"]  # reset restores the base org
