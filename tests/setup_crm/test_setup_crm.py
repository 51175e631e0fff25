"""`revbridge setup crm [--dry-run]` against the Salesforce and HubSpot sandboxes (issue 19's
"Onboarding the CRM"): a fresh org / portal → the dry run lists every field, object, group and
property RevBridge needs and changes nothing (the ledger holds only reads) → setup creates them
through the vendor's admin API (Tooling API, properties API) → the CRM lines `revbridge doctor`
prints are all OK and the connector writes to what was created → a second setup plans nothing.
A Salesforce integration user without an object permission ends in one line naming the
permission to grant. Plus the emulators' admin endpoints on their own (shapes, duplicates,
refusals), through the official clients.

Every test runs its own emulator (the session's sandboxes stay as they are) on a free port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate
from pydantic import SecretStr
from simple_salesforce.exceptions import SalesforceMalformedRequest

from cli.crm_use_cases import hubspot_properties, use_case_checks
from connectors.base import ConnectorError
from connectors.hubspot import REQUIRED_PROPERTIES, HubSpotCrm
from connectors.salesforce_fields import NEEDS
from connectors.salesforce_setup import SETUP_OBJECTS
from domain.preflight import CheckStatus
from domain.records import ChurnScoreRecord
from domain.settings import HubSpotSettings, Settings
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.hubspot.admin import fresh_portal
from sandbox.salesforce import SalesforceEmulator
from sandbox.salesforce.tooling import fresh_org
from tests.setup_crm.org import SF_ID, SF_SECRET, crm_checks, setup_crm, sf_crm, sf_env

HS_TOKEN = "pat-setup"
#: what setup creates on a fresh org: each custom field of NEEDS and each custom object
SF_CREATES = sum(1 for fields in NEEDS.values() for f in fields if f.endswith("__c")) + len(
    SETUP_OBJECTS
)
#: and the access it grants: the permission set, one grant per object, the assignment
SF_GRANTS = 1 + len(NEEDS) + 1
#: on a fresh portal: each property, and the RevBridge group on each object type
#: (and the use cases' own: the reconciliation's exception ticket properties)
HS_PROPERTIES = (*REQUIRED_PROPERTIES, *hubspot_properties())
HS_CREATES = len(HS_PROPERTIES) + len({t for t, *_ in HS_PROPERTIES})


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[SalesforceEmulator, HubSpotEmulator, dict[str, str]]]:
    sf = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    hs = HubSpotEmulator(access_token=HS_TOKEN, limits=False)
    with ServerThread({sf: 0, hs: 0}) as thread:
        yield sf, hs, thread.urls


@pytest.fixture
def sf(servers: tuple[SalesforceEmulator, HubSpotEmulator, dict[str, str]]) -> SalesforceEmulator:
    em = servers[0]
    with em.lock:
        em.reset_state()
    fresh_org(em)
    em.ledger.clear()
    return em


@pytest.fixture
def hs(servers: tuple[SalesforceEmulator, HubSpotEmulator, dict[str, str]]) -> HubSpotEmulator:
    em = servers[1]
    with em.lock:
        em.reset_state()
    fresh_portal(em)
    em.require_property_groups = True  # as HubSpot: a property's group first
    em.ledger.clear()
    return em


def hs_env(urls: dict[str, str]) -> dict[str, str]:
    return {
        "REVBRIDGE_CRM": "hubspot",
        "REVBRIDGE_HTTP_TIMEOUT_S": "5",
        "HUBSPOT_ACCESS_TOKEN": HS_TOKEN,
        "HUBSPOT_API_URL": urls["hubspot"],
    }


def sf_writes(em: SalesforceEmulator) -> list[str]:
    """Every request in the ledger that could change the org: anything but the token, GETs and
    a /composite made only of GETs."""
    out = []
    for r in em.ledger:
        if r["path"] == "/services/oauth2/token" or r["method"] == "GET":
            continue
        if r["path"].endswith("/composite"):
            body = json.loads(r["body"])
            if all(s["method"] == "GET" for s in body["compositeRequest"]):
                continue
        out.append(f"{r['method']} {r['path']}")
    return out


# --- Salesforce ----------------------------------------------------------------------------------


def test_a_fresh_salesforce_org_is_planned_created_ready_and_then_left_alone(
    servers: Any,
    sf: SalesforceEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = sf_env(servers[2]["salesforce"])
    before = crm_checks(env)
    assert any(c.failed for c in before)  # a fresh org is not ready
    sf.ledger.clear()

    code, lines, err = setup_crm(monkeypatch, capsys, env, "--dry-run")
    assert code == 0 and err == ""
    plan = [line for line in lines if line.startswith("+ ")]
    assert len(plan) == SF_CREATES + SF_GRANTS == len(lines) - 1, lines
    assert "+ salesforce: create object AI_Agent_Log__c — AI Agent Log (AutoNumber name)" in plan
    assert plan[SF_CREATES:][0] == (
        "+ salesforce: create permission set RevBridge_Integration — RevBridge Integration "
        "(Edit Tasks)"
    )
    assert (
        "+ salesforce: grant Case — Read, Create, Edit on Case; read/edit on 3 fields in "
        "permission set RevBridge_Integration" in plan
    )
    assert plan[-1].startswith(
        "+ salesforce: assign RevBridge_Integration — to the integration user 005"
    )
    assert (
        "+ salesforce: create field Case.RevBridge_Key__c — Text(64), External ID, unique" in plan
    )
    assert "+ salesforce: create field AI_Agent_Log__c.Case__c — Lookup to Case" in plan
    assert lines[-1] == (
        f"salesforce: plan: {SF_CREATES + SF_GRANTS} to create, 0 by hand "
        "(dry run: nothing changed)"
    )
    assert sf_writes(sf) == []  # the dry run only read
    assert sf.schema.get("AI_Agent_Log__c") is None
    assert sf.schema.get("Account").field("MRR__c") is None  # type: ignore[union-attr]

    sf.ledger.clear()
    code, lines, err = setup_crm(monkeypatch, capsys, env)
    assert code == 0 and err == "", (lines, err)
    assert lines[-2] == f"salesforce: {SF_CREATES + SF_GRANTS} created, 0 there already"
    assert lines[-1].startswith("salesforce: ready (")
    tooling = [w for w in sf_writes(sf) if "/tooling/" in w]
    assert len(tooling) == SF_CREATES
    assert tooling[0].endswith("/tooling/sobjects/CustomField")
    # the grants: the set, its object and its field permissions (one collection each), the
    # assignment
    assert [
        w.rpartition("/v62.0/")[2].rstrip("/") for w in sf_writes(sf) if "/tooling/" not in w
    ] == [
        "sobjects/PermissionSet",
        "composite/sobjects",
        "composite/sobjects",
        "sobjects/PermissionSetAssignment",
    ]
    checks = crm_checks(env)
    assert [c.status for c in checks] == [CheckStatus.OK] * len(checks), [c.line() for c in checks]

    # what was created is what the connector writes to
    acct = sf.seed({"records": {"Account": [{"Name": "Globex"}]}})["ids"]["Account"][0]
    crm = sf_crm(servers[2]["salesforce"])
    crm.write_churn_score(
        ChurnScoreRecord(
            account_id=acct, score=80, level="high", scored_at=datetime(2026, 5, 1, tzinfo=UTC)
        )
    )
    row = sf.get_record(acct)
    assert row is not None and row["Churn_Level__c"] == "high" and row["Churn_Risk__c"] == 80

    sf.ledger.clear()
    code, lines, err = setup_crm(monkeypatch, capsys, env, "--dry-run")
    assert (code, lines, err) == (
        0,
        ["salesforce: plan: nothing to do (dry run: nothing changed)"],
        "",
    )
    code, lines, err = setup_crm(monkeypatch, capsys, env)
    assert code == 0 and err == "" and lines[0] == "salesforce: nothing to create"
    assert sf_writes(sf) == []


def test_a_user_without_an_object_permission_gets_it_through_the_permission_set(
    servers: Any,
    sf: SalesforceEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The integration user's profile lacks Create on Case: doctor names the grant, setup grants
    it in the RevBridge Integration permission set (no step left to a person), then it is ready."""
    sf.configure_org(access={"Case": {"create": False}})
    env = sf_env(servers[2]["salesforce"])
    failed = {c.name: c for c in crm_checks(env) if c.failed}
    assert failed["object:Case:permissions"].fix == (
        "grant Create on Case in the integration user's permission set"
    )
    code, lines, err = setup_crm(monkeypatch, capsys, env, "--dry-run")
    assert code == 0
    assert [line for line in lines if line.startswith("! ")] == []
    assert (
        "+ salesforce: grant Case — Read, Create, Edit on Case; read/edit on 3 fields in "
        "permission set RevBridge_Integration" in lines
    )
    code, lines, err = setup_crm(monkeypatch, capsys, env)
    assert code == 0 and err == "", (lines, err)
    assert [c.line() for c in crm_checks(env) if c.status is not CheckStatus.OK] == []


def test_fields_an_admin_made_too_short_or_unflagged_are_fixed_a_wrong_type_is_left_to_a_person(
    servers: Any,
    sf: SalesforceEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What cannot lose data is fixed through the Tooling API (a longer length, the External ID
    flag, picklist values added); a field of the wrong type holds data: setup names the fix."""
    sf.add_field("Account", {"name": "Churn_Narrative__c", "type": "textarea", "length": 4000})
    sf.add_field("Account", {"name": "Billing_Customer_Id__c", "type": "string"})
    sf.add_field(
        "Account",
        {
            "name": "Churn_Level__c",
            "type": "picklist",
            "picklistValues": ["Low", "High"],
            "restrictedPicklist": True,
        },
    )
    sf.add_field("Account", {"name": "MRR__c", "type": "string", "length": 20})
    env = sf_env(servers[2]["salesforce"])
    code, lines, err = setup_crm(monkeypatch, capsys, env, "--dry-run")
    assert code == 0 and err == ""
    fixes = [line for line in lines if " fix" in line]
    assert fixes == [
        "+ salesforce: fix field Account.Billing_Customer_Id__c — mark External ID, unique",
        "! salesforce: fix Account.MRR__c — by hand: is string, RevBridge needs currency: "
        "recreate Account.MRR__c as currency",
        "+ salesforce: fix field Account.Churn_Level__c — add picklist values low, medium, "
        "high, critical",
        "+ salesforce: fix field Account.Churn_Narrative__c — raise the length 4000 → 32768",
    ]
    assert sf_writes(sf) == []

    code, lines, err = setup_crm(monkeypatch, capsys, env)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("revbridge setup: salesforce is not ready: field:Account.MRR__c: ")
    assert "recreate Account.MRR__c as currency" in err
    patches = [w for w in sf_writes(sf) if w.startswith("PATCH ")]
    assert len(patches) == 3 and all("/tooling/sobjects/CustomField/00N" in p for p in patches)
    account = sf.schema.get("Account")
    assert account is not None
    assert account.field("Churn_Narrative__c").length == 32768  # type: ignore[union-attr]
    assert account.field("Billing_Customer_Id__c").external_id  # type: ignore[union-attr]
    assert account.field("Churn_Level__c").picklist == (  # type: ignore[union-attr]
        "Low",
        "High",
        "low",
        "medium",
        "high",
        "critical",
    )
    assert [c.name for c in crm_checks(env) if c.failed] == ["field:Account.MRR__c"]

    # the admin recreates MRR__c as currency: then the org is ready, and stays as it is
    sf.configure_org(drop_fields=["Account.MRR__c"])
    code, lines, err = setup_crm(monkeypatch, capsys, env)
    assert code == 0 and err == "", (lines, err)
    assert lines[0] == "+ salesforce: create field Account.MRR__c — Currency(18, 2)"
    code, lines, err = setup_crm(monkeypatch, capsys, env, "--dry-run")
    assert lines == ["salesforce: plan: nothing to do (dry run: nothing changed)"]


def test_the_tooling_api_answers_as_salesforce_does(servers: Any, sf: SalesforceEmulator) -> None:
    crm = sf_crm(servers[2]["salesforce"])
    client = crm.client
    body = {
        "FullName": "Account.Billing_Platform__c",
        "Metadata": {"label": "Billing Platform", "type": "Text", "length": 40},
    }
    created = client.toolingexecute("sobjects/CustomField", method="POST", data=body)
    assert created["success"] is True and created["errors"] == []
    assert created["id"].startswith("00N") and len(created["id"]) == 18
    field = {f["name"]: f for f in client.Account.describe()["fields"]}["Billing_Platform__c"]
    assert (field["type"], field["length"], field["custom"]) == ("string", 40, True)
    read = client.toolingexecute(f"sobjects/CustomField/{created['id']}")
    assert read["FullName"] == "Account.Billing_Platform__c"
    with pytest.raises(SalesforceMalformedRequest) as dup:
        client.toolingexecute("sobjects/CustomField", method="POST", data=body)
    assert dup.value.content[0]["errorCode"] == "DUPLICATE_DEVELOPER_NAME"
    for bad in (
        {"FullName": "Account.X__c", "Metadata": {"label": "X", "type": "Text"}},  # no length
        {"FullName": "Nope__c.X__c", "Metadata": {"label": "X", "type": "Date"}},
        {"FullName": "Account.X", "Metadata": {"label": "X", "type": "Date"}},
        {"FullName": "Account.X__c", "Metadata": {"label": "X", "type": "Picklist"}},
    ):
        with pytest.raises(SalesforceMalformedRequest) as refused:
            client.toolingexecute("sobjects/CustomField", method="POST", data=bad)
        assert refused.value.content[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION", bad
    # a field is read back through a Tooling query, and changed with its whole Metadata
    soql = (
        "SELECT Id, FullName, Metadata FROM CustomField WHERE TableEnumOrId = 'Account' "
        "AND DeveloperName = 'Billing_Platform'"
    )
    found = client.toolingexecute("query/", params={"q": soql})
    assert found["size"] == 1 and found["records"][0]["Id"] == created["id"]
    longer = {**body["Metadata"], "length": 80}
    client.toolingexecute(
        f"sobjects/CustomField/{created['id']}", method="PATCH", data={"Metadata": longer}
    )
    field = {f["name"]: f for f in client.Account.describe()["fields"]}["Billing_Platform__c"]
    assert field["length"] == 80
    for change in ({**longer, "length": 10}, {**longer, "type": "Date"}):
        with pytest.raises(SalesforceMalformedRequest) as refused:
            client.toolingexecute(
                f"sobjects/CustomField/{created['id']}", method="PATCH", data={"Metadata": change}
            )
        assert refused.value.content[0]["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    obj = {"FullName": "AI_Agent_Log__c", "Metadata": SETUP_OBJECTS["AI_Agent_Log__c"]}
    made = client.toolingexecute("sobjects/CustomObject", method="POST", data=obj)
    assert made["id"].startswith("01I")
    described = client.AI_Agent_Log__c.describe()
    name = {f["name"]: f for f in described["fields"]}["Name"]
    assert name["autoNumber"] is True and described["custom"] is True
    with pytest.raises(SalesforceMalformedRequest) as dup:
        client.toolingexecute("sobjects/CustomObject", method="POST", data=obj)
    assert dup.value.content[0]["errorCode"] == "DUPLICATE_DEVELOPER_NAME"


# --- HubSpot -------------------------------------------------------------------------------------


def test_a_fresh_hubspot_portal_is_planned_created_ready_and_then_left_alone(
    servers: Any,
    hs: HubSpotEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = hs_env(servers[2])
    assert any(c.failed for c in crm_checks(env))
    sync, exceptions = use_case_checks(Settings.from_env(env))  # doctor's use-case lines
    assert sync.line().startswith(
        "FAIL  hubspot: properties:companies.account-sync — missing billing_plan, next_renewal, "
        "payment_health, billing_contact_email, billing_contact_name, health_summary, "
        "subscription_health, tenure_months, payment_success_rate, open_dunning, usage_trend "
        "(the account sync's golden fields) (fix: run "
        "`revbridge setup crm`"
    )
    assert exceptions.status is CheckStatus.WARN and "rx_kind" in exceptions.detail
    assert exceptions.fix.startswith("run `revbridge setup crm`")
    hs.ledger.clear()

    code, lines, err = setup_crm(monkeypatch, capsys, env, "--dry-run")
    assert code == 0 and err == ""
    plan = [line for line in lines if line.startswith("+ ")]
    assert len(plan) == HS_CREATES == len(lines) - 1, lines
    assert plan[0] == "+ hubspot: create property group companies.revbridge — RevBridge"
    assert "+ hubspot: create property tickets.revbridge_key — string (text, unique values)" in plan
    assert (
        "+ hubspot: create property deals.payment_terms — enumeration (select) "
        "[Net 15, Net 30, Net 45, Net 60]"
    ) in plan
    assert "+ hubspot: create property tickets.rx_first_seen — date (date)" in plan
    assert {r["method"] for r in hs.ledger} == {"GET"}  # only reads
    assert "mrr" not in hs.store.properties["companies"]

    hs.ledger.clear()
    code, lines, err = setup_crm(monkeypatch, capsys, env)
    assert code == 0 and err == "", (lines, err)
    assert lines[-2] == f"hubspot: {HS_CREATES} created, 0 there already"
    posts = [r["path"] for r in hs.ledger if r["method"] == "POST" and "/properties/" in r["path"]]
    assert len(posts) == HS_CREATES and posts[0] == "/crm/v3/properties/companies/groups"
    checks = crm_checks(env)
    assert [c.status for c in checks] == [CheckStatus.OK] * len(checks), [c.line() for c in checks]
    assert [c.status for c in use_case_checks(Settings.from_env(env))] == [CheckStatus.OK] * 2
    assert "+ hubspot: create property companies.next_renewal — date (date)" in plan
    churn = hs.store.properties["companies"]["churn_level"]
    assert [o["value"] for o in churn["options"]] == ["low", "medium", "high", "critical"]
    assert hs.store.properties["companies"]["billing_customer_id"]["hasUniqueValue"] is True

    hs.ledger.clear()
    code, lines, err = setup_crm(monkeypatch, capsys, env)
    assert code == 0 and err == "" and lines[0] == "hubspot: nothing to create"
    assert [r for r in hs.ledger if r["method"] != "GET" and "/properties/" in r["path"]] == []


def test_hubspot_property_groups_come_first_and_answer_as_hubspot_does(
    servers: Any, hs: HubSpotEmulator
) -> None:
    crm = HubSpotCrm(
        HubSpotSettings(access_token=SecretStr(HS_TOKEN), api_url=servers[2]["hubspot"]),
        timeout_s=5,
    )
    from hubspot.crm.properties import GroupsApi

    groups = GroupsApi(crm._properties.api_client)
    names = {g.name for g in groups.get_all("companies").results}
    assert "companyinformation" in names and "revbridge" not in names
    prop = PropertyCreate(
        name="mrr", label="MRR", type="number", field_type="number", group_name="revbridge"
    )
    with pytest.raises(ConnectorError) as refused:
        crm._call(crm._properties.create, "companies", prop, what="property")
    assert refused.value.status == 400
    made = crm._call(
        groups.create,
        "companies",
        PropertyGroupCreate(name="revbridge", label="RevBridge"),
        what="group",
    )
    assert (made.name, made.label, made.archived) == ("revbridge", "RevBridge", False)
    with pytest.raises(ConnectorError) as dup:
        crm._call(
            groups.create,
            "companies",
            PropertyGroupCreate(name="revbridge", label="R"),
            what="group",
        )
    assert dup.value.status == 409
    assert groups.get_by_name("companies", "revbridge").label == "RevBridge"
    assert crm._call(crm._properties.create, "companies", prop, what="property").name == "mrr"


def test_an_unreachable_crm_is_one_line_never_a_trace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = hs_env({"hubspot": "http://127.0.0.1:9"})
    code, lines, err = setup_crm(monkeypatch, capsys, env, "--dry-run")
    assert code == 2 and lines == []
    assert err.startswith("revbridge setup: could not read hubspot's schema: ")
    assert err.count("\n") == 1 and "Traceback" not in err and HS_TOKEN not in err
