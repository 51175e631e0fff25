"""Field-level security, the real way: on a real org a field or object created through the
Tooling API grants nobody access, so the integration user cannot see what setup created until a
permission set grants it. The sandbox's strict profile (``fresh_org(em, strict=True)``) behaves
so; `revbridge setup crm` grants access through the RevBridge Integration permission set
(PermissionSet + ObjectPermissions + FieldPermissions + PermissionSetAssignment over REST),
lists it in the dry run, and plans nothing on a second run. The sandbox's permission objects
answer as Salesforce does, through simple-salesforce.

Each test runs its own emulator on a free port (module-scoped, reset per test)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceResourceNotFound

from connectors.salesforce import SalesforceCrm
from connectors.salesforce_setup import PERMISSION_SET
from domain.preflight import CheckStatus
from domain.records import ChurnScoreRecord
from sandbox.salesforce import SalesforceEmulator
from sandbox.salesforce.tooling import fresh_org
from tests.setup_crm.org import crm_checks, setup_crm, sf_crm, sf_env

MRR = {"type": "Currency", "label": "MRR", "precision": 18, "scale": 2}


def refused(call: Any) -> dict[str, Any]:
    with pytest.raises(SalesforceMalformedRequest) as info:
        call()
    return info.value.content[0]  # type: ignore[no-any-return]


def user_id(client: SalesforceCrm) -> str:
    client.client  # noqa: B018 - log in: the identity URL names the session's user
    return client._identity.rpartition("/")[2]


def test_the_permission_objects_answer_as_salesforce_does(
    server: tuple[SalesforceEmulator, str], sf: SalesforceEmulator
) -> None:
    client = sf_crm(server[1])
    api: Salesforce = client.client
    pset = api.PermissionSet.create({"Name": "Ops_Set", "Label": "Ops"})["id"]
    assert pset.startswith("0PS")
    dup = refused(lambda: api.PermissionSet.create({"Name": "ops_set", "Label": "Again"}))
    assert dup["errorCode"] == "DUPLICATE_DEVELOPER_NAME"
    bad = refused(lambda: api.PermissionSet.create({"Name": "Ops Set 2", "Label": "x"}))
    assert bad["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"

    create_only = {"ParentId": pset, "SobjectType": "Case", "PermissionsCreate": True}
    needs_read = refused(lambda: api.ObjectPermissions.create(create_only))
    assert needs_read == {
        "errorCode": "FIELD_INTEGRITY_EXCEPTION",
        "message": "Permission Create Case depends on permission(s): Read Case",
        "fields": [],
    }
    task = {"ParentId": pset, "SobjectType": "Task", "PermissionsRead": True}
    assert refused(lambda: api.ObjectPermissions.create(task))["errorCode"] == (
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    )
    case = {"ParentId": pset, "SobjectType": "Case", "PermissionsRead": True}
    assert api.ObjectPermissions.create(case)["id"].startswith("110")
    assert refused(lambda: api.ObjectPermissions.create(case))["errorCode"] == "DUPLICATE_VALUE"

    name = {"ParentId": pset, "SobjectType": "Account", "Field": "Account.Name"}
    assert refused(lambda: api.FieldPermissions.create({**name, "PermissionsRead": True})) == {
        "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "message": "Field Name: bad value for restricted picklist field: Account.Name",
        "fields": ["Field"],
    }
    log_field = {
        "ParentId": pset,
        "SobjectType": "AI_Agent_Log__c",
        "Field": "AI_Agent_Log__c.Outcome__c",
        "PermissionsRead": True,
    }
    no_object = refused(lambda: api.FieldPermissions.create(log_field))
    assert no_object["message"] == (
        "Permission Read AI_Agent_Log__c.Outcome__c depends on permission(s): Read AI_Agent_Log__c"
    )
    mrr = {"ParentId": pset, "SobjectType": "Account", "Field": "Account.MRR__c"}
    edit_only = refused(lambda: api.FieldPermissions.create({**mrr, "PermissionsEdit": True}))
    assert edit_only["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert api.FieldPermissions.create({**mrr, "PermissionsRead": True})["id"].startswith("01k")

    me = user_id(client)
    assignment = {"AssigneeId": me, "PermissionSetId": pset}
    assert api.PermissionSetAssignment.create(assignment)["id"].startswith("0Pa")
    assert refused(lambda: api.PermissionSetAssignment.create(assignment))["errorCode"] == (
        "DUPLICATE_VALUE"
    )
    (row,) = api.query(
        "SELECT Name, (SELECT SobjectType, PermissionsRead FROM ObjectPerms), "
        "(SELECT Field, PermissionsRead, PermissionsEdit FROM FieldPerms), "
        "(SELECT AssigneeId FROM Assignments) FROM PermissionSet WHERE Name = 'Ops_Set'"
    )["records"]
    assert [r["SobjectType"] for r in row["ObjectPerms"]["records"]] == ["Case"]
    assert [(r["Field"], r["PermissionsEdit"]) for r in row["FieldPerms"]["records"]] == [
        ("Account.MRR__c", False)
    ]
    assert [r["AssigneeId"] for r in row["Assignments"]["records"]] == [me]
    # the default profile: grants add to what the profile allows, and hide nothing
    assert "MRR__c" in {f["name"] for f in api.Account.describe()["fields"]}


def test_strict_a_created_field_and_object_are_invisible_until_a_permission_set_grants_them(
    server: tuple[SalesforceEmulator, str], sf: SalesforceEmulator
) -> None:
    strict = httpx.post(
        server[1] + "/_sandbox/salesforce/org", json={"fresh": True, "strict": True}
    )
    assert strict.status_code == 200  # what fresh_org(em, strict=True) does, over HTTP
    client = sf_crm(server[1])
    api: Salesforce = client.client
    api.toolingexecute(
        "sobjects/CustomField", method="POST", data={"FullName": "Account.MRR__c", "Metadata": MRR}
    )
    account = api.Account.create({"Name": "Globex"})["id"]
    assert "MRR__c" not in {f["name"] for f in api.Account.describe()["fields"]}
    assert refused(lambda: api.query("SELECT MRR__c FROM Account"))["errorCode"] == "INVALID_FIELD"
    write = refused(lambda: api.Account.update(account, {"MRR__c": 10}))
    assert write["errorCode"] == "INVALID_FIELD"
    # the Tooling API (the admin's view) sees it: a second create is a duplicate
    again = refused(
        lambda: api.toolingexecute(
            "sobjects/CustomField",
            method="POST",
            data={"FullName": "Account.MRR__c", "Metadata": MRR},
        )
    )
    assert again["errorCode"] == "DUPLICATE_DEVELOPER_NAME"

    pset = api.PermissionSet.create({"Name": "Grants", "Label": "Grants"})["id"]
    perm = api.FieldPermissions.create(
        {
            "ParentId": pset,
            "SobjectType": "Account",
            "Field": "Account.MRR__c",
            "PermissionsRead": True,
        }
    )["id"]
    assert refused(lambda: api.query("SELECT MRR__c FROM Account"))["errorCode"] == "INVALID_FIELD"
    api.PermissionSetAssignment.create({"AssigneeId": user_id(client), "PermissionSetId": pset})
    fields = {f["name"]: f for f in api.Account.describe()["fields"]}
    assert fields["MRR__c"]["updateable"] is False  # read, not edit
    read_only = refused(lambda: api.Account.update(account, {"MRR__c": 10}))
    assert read_only["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    api.FieldPermissions.update(perm, {"PermissionsEdit": True})
    api.Account.update(account, {"MRR__c": 10})
    assert api.query("SELECT MRR__c FROM Account")["records"][0]["MRR__c"] == 10

    api.toolingexecute(
        "sobjects/CustomObject",
        method="POST",
        data={
            "FullName": "Note__c",
            "Metadata": {"label": "Note", "pluralLabel": "Notes", "nameField": {"type": "Text"}},
        },
    )
    with pytest.raises(SalesforceResourceNotFound):
        api.Note__c.describe()
    api.ObjectPermissions.create(
        {
            "ParentId": pset,
            "SobjectType": "Note__c",
            "PermissionsRead": True,
            "PermissionsCreate": True,
        }
    )
    described = api.Note__c.describe()
    assert described["createable"] is True and described["updateable"] is False
    assert api.Note__c.create({"Name": "n"})["success"] is True


def test_setup_grants_access_on_a_strict_fresh_org_then_plans_nothing(
    server: tuple[SalesforceEmulator, str],
    sf: SalesforceEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fresh_org(sf, strict=True)
    url = server[1]
    code, lines, err = setup_crm(monkeypatch, capsys, sf_env(url), "--dry-run")
    assert code == 0 and err == ""
    assert (
        "+ salesforce: grant Account — Read, Edit on Account; read/edit on 21 fields, read on 1 "
        f"field in permission set {PERMISSION_SET}" in lines
    )
    assert "+ salesforce: grant Task — read/edit on 1 field in permission set" in "\n".join(lines)
    assert sf.records("PermissionSet") == []  # the dry run granted nothing

    code, lines, err = setup_crm(monkeypatch, capsys, sf_env(url))
    assert code == 0 and err == "", (lines, err)
    assert lines[-1].startswith("salesforce: ready (")
    assert [c.line() for c in crm_checks(sf_env(url)) if c.status is not CheckStatus.OK] == []
    (pset,) = sf.records("PermissionSet")
    assert (pset["Name"], pset["PermissionsEditTask"]) == (PERMISSION_SET, True)
    assert len(sf.records("PermissionSetAssignment")) == 1
    # what the connector writes, the integration user may now write
    client = sf_crm(url)
    account = client.client.Account.create({"Name": "Globex"})["id"]
    client.write_churn_score(
        ChurnScoreRecord(
            account_id=account, score=70, level="high", scored_at=datetime(2026, 12, 1, tzinfo=UTC)
        )
    )
    assert sf.get_record(account)["Churn_Level__c"] == "high"  # type: ignore[index]

    code, lines, err = setup_crm(monkeypatch, capsys, sf_env(url), "--dry-run")
    assert lines == ["salesforce: plan: nothing to do (dry run: nothing changed)"]

    # an admin removes the assignment: doctor fails on the fields, setup only re-assigns
    (assignment,) = sf.records("PermissionSetAssignment")
    client.client.PermissionSetAssignment.delete(assignment["Id"])
    failed = [c for c in crm_checks(sf_env(url)) if c.failed]
    assert "field:Account.MRR__c" in {c.name for c in failed}
    assert "`revbridge setup crm` does both" in failed[0].fix
    code, lines, err = setup_crm(monkeypatch, capsys, sf_env(url), "--dry-run")
    plan = [line for line in lines if line.startswith(("+", "!"))]
    # it cannot see what it lost access to, so it plans to create it (a duplicate then: done)
    assert [line for line in plan if " create " not in line] == [
        f"+ salesforce: assign {PERMISSION_SET} — to the integration user {user_id(client)}"
    ]
    code, lines, err = setup_crm(monkeypatch, capsys, sf_env(url))
    assert code == 0 and err == "", (lines, err)
    assert lines[-2] == f"salesforce: 1 created, {len(plan) - 1} there already"
    assert [c.line() for c in crm_checks(sf_env(url)) if c.status is not CheckStatus.OK] == []
