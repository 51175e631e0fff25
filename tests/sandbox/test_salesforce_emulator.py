"""The Salesforce emulator, driven through the official ``simple-salesforce`` 1.12 client.

The client is built the way the connector builds it: an OAuth token fetched with httpx, then
``Salesforce(instance_url=..., session_id=...)`` over a session that rewrites the client's
hard-coded ``https://`` to plain HTTP (reference §1.1, option A).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce, format_soql
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from sandbox.framework import App, ServerThread
from sandbox.salesforce import INTEGRATION_USERNAME, SalesforceEmulator

CLIENT_ID, CLIENT_SECRET = "revbridge-local", "local-secret"
DATETIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")


class HttpRewrite(requests.adapters.HTTPAdapter):
    def send(self, request: requests.PreparedRequest, **kw: Any) -> requests.Response:  # type: ignore[override]
        request.url = "http://" + request.url[len("https://") :]  # type: ignore[index]
        return super().send(request, **kw)


class Receiver:
    """A webhook receiver that records what arrives."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        self.app = App("receiver", Starlette(routes=[Route("/hook", self._hook, methods=["POST"])]))

    async def _hook(self, request: Request) -> Response:
        self.received.append(
            {"headers": dict(request.headers), "body": json.loads(await request.body())}
        )
        self.arrived.set()
        return JSONResponse({"ok": True})

    def wait_for(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[SalesforceEmulator, Receiver, ServerThread]]:
    emulator, receiver = SalesforceEmulator(), Receiver()
    with ServerThread({emulator: 0, receiver.app: 0}) as st:
        yield emulator, receiver, st


@pytest.fixture
def em(servers: tuple[SalesforceEmulator, Receiver, ServerThread]) -> SalesforceEmulator:
    emulator, _, st = servers
    httpx.post(f"{st.urls['salesforce']}/_sandbox/reset").raise_for_status()
    return emulator


@pytest.fixture
def base(servers: tuple[SalesforceEmulator, Receiver, ServerThread], em: SalesforceEmulator) -> str:
    return servers[2].urls["salesforce"]


def fetch_token(base: str, **form: str) -> httpx.Response:
    data = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    return httpx.post(f"{base}/services/oauth2/token", data={**data, **form})


def make_client(token: dict[str, Any]) -> Salesforce:
    s = requests.Session()
    s.mount(token["instance_url"] + "/", HttpRewrite())
    return Salesforce(
        instance_url=token["instance_url"],
        session_id=token["access_token"],
        session=s,
        version="62.0",
    )


@pytest.fixture
def sf(base: str) -> Salesforce:
    resp = fetch_token(base)
    resp.raise_for_status()
    return make_client(resp.json())


def error_code(exc: pytest.ExceptionInfo[Any]) -> str:
    return exc.value.content[0]["errorCode"]


# --- OAuth ---------------------------------------------------------------------------------------


def test_client_credentials_token(base: str) -> None:
    port = base.rsplit(":", 1)[1]
    body = fetch_token(base).json()
    assert body["instance_url"] == f"https://127.0.0.1:{port}"
    assert body["token_type"] == "Bearer" and body["access_token"].startswith("00D")
    assert (
        body["id"].startswith("https://login.salesforce.com/id/00D") and body["issued_at"].isdigit()
    )
    assert body["signature"]
    basic = httpx.post(
        f"{base}/services/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert basic.status_code == 200
    bad = fetch_token(base, client_secret="wrong")
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"
    assert fetch_token(base, grant_type="password").json()["error"] == "unsupported_grant_type"


def test_jwt_bearer_token() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    emulator = SalesforceEmulator(jwt_public_key_pem=pem.decode())
    client = TestClient(emulator.app, base_url="http://127.0.0.1:8443")

    def grant(claims: dict[str, Any], signing_key: Any = key) -> httpx.Response:
        base_claims = {
            "iss": CLIENT_ID,
            "sub": INTEGRATION_USERNAME,
            "aud": "https://login.salesforce.com",
        }
        assertion = jwt.encode(
            {**base_claims, "exp": int(time.time()) + 180, **claims}, signing_key, algorithm="RS256"
        )
        data = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
        return client.post("/services/oauth2/token", data=data)

    ok = grant({})
    assert ok.status_code == 200 and ok.json()["instance_url"] == "https://127.0.0.1:8443"
    assert "refresh_token" not in ok.json()
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert grant({}, other_key).json()["error"] == "invalid_grant"
    assert grant({"exp": int(time.time()) - 10}).json()["error"] == "invalid_grant"
    assert grant({"iss": "someone-else"}).json()["error"] == "invalid_client"
    assert grant({"sub": "nobody@example.com"}).json()["error"] == "invalid_grant"


# --- sObjects ------------------------------------------------------------------------------------


def test_account_crud(sf: Salesforce, em: SalesforceEmulator) -> None:
    created = sf.Account.create({"Name": "Acme", "MRR__c": 1200, "NumberOfEmployees": "42"})
    assert created["success"] is True and created["errors"] == []
    account_id = created["id"]
    assert len(account_id) == 18 and account_id.startswith("001")
    row = sf.Account.get(account_id)
    assert row["attributes"] == {
        "type": "Account",
        "url": f"/services/data/v62.0/sobjects/Account/{account_id}",
    }
    assert row["Name"] == "Acme" and row["MRR__c"] == 1200.0 and row["NumberOfEmployees"] == 42
    assert row["Industry"] is None and row["IsDeleted"] is False
    assert DATETIME_RE.fullmatch(row["CreatedDate"]) and row["OwnerId"] == em.integration_user_id
    assert sf.Account.get(account_id[:15])["Id"] == account_id  # 15-char IDs work too
    assert sf.Account.get(account_id, params={"fields": "Name,Industry"}) == {
        "attributes": row["attributes"],
        "Name": "Acme",
        "Industry": None,
    }

    assert (
        sf.Account.update(account_id, {"Industry": "Technology", "Customer_Tier__c": "Enterprise"})
        == 204
    )
    assert sf.Account.get(account_id)["Customer_Tier__c"] == "Enterprise"
    assert em.records("Account")[0]["Industry"] == "Technology"

    assert sf.Account.delete(account_id) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get(account_id)
    assert sf.query_all("SELECT Id FROM Account")["totalSize"] == 0
    assert sf.query_all("SELECT Id, IsDeleted FROM Account", include_deleted=True)["records"][0][
        "IsDeleted"
    ]


def test_validation_errors(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Account.create({"Name": "X", "Nope__c": 1})
    assert error_code(exc) == "INVALID_FIELD" and "Nope__c" in exc.value.content[0]["message"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Opportunity.create({"Name": "Deal"})
    assert error_code(exc) == "REQUIRED_FIELD_MISSING"
    assert exc.value.content[0]["fields"] == ["StageName", "CloseDate"]
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Account.create({"Name": "X", "Customer_Tier__c": "Gold"})
    assert error_code(exc) == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    sf.Account.create({"Name": "A", "Billing_Customer_Id__c": "cus_1"})
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Account.create({"Name": "B", "Billing_Customer_Id__c": "CUS_1"})  # unique ignores case
    assert error_code(exc) == "DUPLICATE_VALUE"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Contact.create({"LastName": "Lee", "AccountId": "003000000000001"})
    assert error_code(exc) == "FIELD_INTEGRITY_EXCEPTION"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Case.create({"Subject": "x", "IsClosed": True})
    assert error_code(exc) == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.Account.get("003000000000001AAA")  # a Contact ID
    assert error_code(exc) == "MALFORMED_ID"
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get("not-an-id")
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Nope__c.create({"Name": "x"})
    assert exc.value.content == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND", "fields": []}
    ]


def test_case_defaults_and_derived_fields(sf: Salesforce) -> None:
    first = sf.Case.get(sf.Case.create({"Subject": "Card declined"})["id"])
    second = sf.Case.get(sf.Case.create({"Subject": "Again", "Priority": "High"})["id"])
    assert (first["Status"], first["IsClosed"], first["Priority"]) == ("New", False, "Medium")
    assert (
        int(second["CaseNumber"]) == int(first["CaseNumber"]) + 1 and len(first["CaseNumber"]) == 8
    )
    sf.Case.update(first["Id"], {"Status": "Closed"})
    closed = sf.Case.get(first["Id"])
    assert closed["IsClosed"] is True and DATETIME_RE.fullmatch(closed["ClosedDate"])
    opp = sf.Opportunity.create(
        {"Name": "D", "StageName": "Closed Won", "CloseDate": "2024-05-01", "Amount": 10}
    )
    row = sf.Opportunity.get(opp["id"])
    assert (row["IsWon"], row["IsClosed"], row["Probability"], row["CloseDate"]) == (
        True,
        True,
        100.0,
        "2024-05-01",
    )
    task = sf.Task.get(sf.Task.create({"Subject": "Call", "WhatId": opp["id"]})["id"])
    assert (task["Status"], task["Priority"], task["IsClosed"]) == ("Not Started", "Normal", False)


def test_upsert_by_external_id(sf: Salesforce, em: SalesforceEmulator) -> None:
    key = "dunning:stripe:in_1Q2w-step-2"
    assert sf.Case.upsert(f"RevBridge_Key__c/{key}", {"Subject": "Payment failed"}) == 201
    resp = sf.Case.upsert(
        f"RevBridge_Key__c/{key}", {"Subject": "Payment failed (2)"}, raw_response=True
    )
    assert resp.status_code == 200 and resp.json()["created"] is False
    assert len(em.records("Case")) == 1
    row = sf.Case.get_by_custom_id("RevBridge_Key__c", key)
    assert row["Subject"] == "Payment failed (2)" and row["Id"] == resp.json()["id"]
    # spaces travel as '+' in get_by_custom_id; '/' as %2F (routed on the raw path)
    sf.Case.upsert("RevBridge_Key__c/with space", {"Subject": "s"})
    assert sf.Case.get_by_custom_id("RevBridge_Key__c", "with space")["Subject"] == "s"
    sf.restful(
        "composite/sobjects/Case/RevBridge_Key__c",
        method="PATCH",
        json={
            "records": [
                {"attributes": {"type": "Case"}, "RevBridge_Key__c": "a/b", "Subject": "slash"}
            ]
        },
    )
    assert sf.Case.get_by_custom_id("RevBridge_Key__c", "a/b")["Subject"] == "slash"
    with pytest.raises(SalesforceResourceNotFound):
        sf.Case.get_by_custom_id("RevBridge_Key__c", "missing")
    with pytest.raises(SalesforceResourceNotFound) as exc:
        sf.Case.upsert("Subject/x", {"Description": "d"})  # not an external ID field
    assert error_code(exc) == "NOT_FOUND"


def test_upsert_more_than_one_match(sf: Salesforce, em: SalesforceEmulator) -> None:
    em.seed(
        {
            "fields": {"Account": [{"name": "Legacy_Id__c", "type": "string", "externalId": True}]},
            "records": {
                "Account": [
                    {"Name": "A", "Legacy_Id__c": "L-1"},
                    {"Name": "B", "Legacy_Id__c": "L-1"},
                ]
            },
        }
    )
    with pytest.raises(SalesforceMoreThanOneRecord) as exc:
        sf.Account.upsert("Legacy_Id__c/L-1", {"Name": "C"})
    assert len(exc.value.content) == 2 and exc.value.content[0].startswith(
        "/services/data/v62.0/sobjects/Account/001"
    )
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf.Account.get_by_custom_id("Legacy_Id__c", "L-1")
    assert sorted(r["Name"] for r in em.records("Account")) == ["A", "B"]


def test_agent_log_upsert_and_relationship(sf: Salesforce, em: SalesforceEmulator) -> None:
    refs = em.seed({"records": {"Account": [{"Ref": "acme", "Name": "Acme"}]}})["refs"]
    resp = sf.AI_Agent_Log__c.upsert(
        "RevBridge_Key__c/wf-1:step-3",
        {"Account__c": refs["acme"], "Action__c": "create_case", "Details__c": "x" * 5000},
        raw_response=True,
    )
    assert resp.status_code == 201
    rows = sf.query("SELECT Name, Account__r.Name, Action__c FROM ai_agent_log__c")["records"]
    assert rows[0]["Name"] == "LOG-0001" and rows[0]["Account__r"]["Name"] == "Acme"
    parent = sf.query("SELECT Name, (SELECT Action__c FROM AI_Agent_Logs__r) FROM Account")[
        "records"
    ][0]
    assert parent["AI_Agent_Logs__r"]["records"][0]["Action__c"] == "create_case"


# --- SOQL ----------------------------------------------------------------------------------------


@pytest.fixture
def crm(em: SalesforceEmulator) -> dict[str, str]:
    return em.seed(
        {
            "records": {
                "Account": [
                    {
                        "Ref": "acme",
                        "Name": "Acme",
                        "MRR__c": 500,
                        "Customer_Tier__c": "Enterprise",
                    },
                    {"Ref": "bolt", "Name": "Bolt", "MRR__c": 90, "Industry": "Retail"},
                    {
                        "Ref": "core",
                        "Name": "core labs",
                        "MRR__c": 2000,
                        "CreatedDate": "2020-01-01T00:00:00Z",
                    },
                ],
                "Contact": [
                    {"Ref": "ann", "LastName": "Ng", "FirstName": "Ann", "AccountId": "@acme"},
                    {"LastName": "O'Hara", "AccountId": "@acme", "Email": "o@example.com"},
                    {"LastName": "Solo"},
                ],
                "Case": [
                    {"Subject": "Card declined", "AccountId": "@acme", "ContactId": "@ann"},
                    {"Subject": "Invoice question", "AccountId": "@bolt", "Status": "Closed"},
                ],
            }
        }
    )["refs"]


def test_soql_filters_order_limit(sf: Salesforce, crm: dict[str, str]) -> None:
    def names(soql: str) -> list[str]:
        return [r["Name"] for r in sf.query(soql)["records"]]

    assert names("select name from account where mrr__c >= 100 order by mrr__c desc") == [
        "core labs",
        "Acme",
    ]
    assert names("SELECT Name FROM Account ORDER BY Name LIMIT 2 OFFSET 1") == ["Bolt", "core labs"]
    assert names(
        "SELECT Name FROM Account WHERE Name LIKE 'a%' OR (Industry = 'Retail' AND NOT MRR__c > 100)"
    ) == [
        "Acme",
        "Bolt",
    ]
    assert names(
        "SELECT Name FROM Account WHERE Industry = null ORDER BY Industry NULLS LAST, Name DESC"
    ) == [
        "core labs",
        "Acme",
    ]
    assert names(
        "SELECT Name FROM Account WHERE Industry != 'Retail' AND Name NOT IN ('Acme')"
    ) == ["core labs"]
    assert names(
        "SELECT Name FROM Account WHERE Customer_Tier__c IN ('Enterprise', 'Strategic')"
    ) == ["Acme"]
    assert names("SELECT Name FROM Account WHERE CreatedDate = LAST_N_DAYS:7 ORDER BY Name") == [
        "Acme",
        "Bolt",
    ]
    assert names("SELECT Name FROM Account WHERE CreatedDate < 2021-01-01T00:00:00Z") == [
        "core labs"
    ]
    assert names("SELECT Name FROM Contact WHERE LastName = 'o\\'hara'") == ["O'Hara"]
    assert names(
        "SELECT Name FROM Account WHERE Id IN (SELECT AccountId FROM Case WHERE IsClosed = true)"
    ) == ["Bolt"]
    assert (
        sf.query(format_soql("SELECT Id FROM Account WHERE Id = {}", crm["acme"][:15]))["totalSize"]
        == 1
    )
    count = sf.query("SELECT COUNT() FROM Contact WHERE AccountId != null")
    assert (count["totalSize"], count["records"], count["done"]) == (2, [], True)


def test_soql_relationships(sf: Salesforce, crm: dict[str, str]) -> None:
    rows = sf.query(
        "SELECT LastName, Account.Name, Account.Owner.Name FROM Contact ORDER BY LastName"
    )["records"]
    assert [r["LastName"] for r in rows] == ["Ng", "O'Hara", "Solo"]
    assert rows[0]["Account"]["attributes"]["type"] == "Account"
    assert (
        rows[0]["Account"]["Name"] == "Acme"
        and rows[0]["Account"]["Owner"]["Name"] == "RevBridge Integration"
    )
    assert rows[2]["Account"] is None
    accounts = sf.query(
        "SELECT Name, (SELECT Subject FROM Cases), (SELECT LastName FROM Contacts ORDER BY LastName DESC) "
        "FROM Account ORDER BY Name"
    )["records"]
    acme, bolt, core = accounts
    assert [c["Subject"] for c in acme["Cases"]["records"]] == ["Card declined"]
    assert (
        acme["Contacts"]["totalSize"] == 2
        and acme["Contacts"]["records"][0]["LastName"] == "O'Hara"
    )
    assert bolt["Contacts"] is None and core["Cases"] is None
    case = sf.query(
        "SELECT Subject, Contact.Name, Account.Name FROM Case WHERE Account.Name = 'ACME'"
    )["records"]
    assert case[0]["Contact"]["Name"] == "Ann Ng"


def test_soql_errors(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query("SELECT Id FROM")
    assert (
        error_code(exc) == "MALFORMED_QUERY"
        and "ERROR at Row:1:Column:15" in exc.value.content[0]["message"]
    )
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query("SELECT Id FROM Acount")
    assert error_code(exc) == "INVALID_TYPE"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query("SELECT Id, Foo FROM Account")
    assert error_code(exc) == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query("SELECT Id FROM Account WHERE MRR__c = '5'")
    assert error_code(exc) == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as exc:
        sf.query("SELECT Id, (SELECT Id FROM Widgets) FROM Account")
    assert error_code(exc) == "INVALID_TYPE"


def test_query_all_paginates(sf: Salesforce, em: SalesforceEmulator, base: str) -> None:
    total = 2550
    for start in range(0, total, 200):
        batch = [
            {"attributes": {"type": "Account"}, "Name": f"Acct {i:05d}"}
            for i in range(start, min(start + 200, total))
        ]
        results = sf.restful(
            "composite/sobjects", method="POST", json={"allOrNone": True, "records": batch}
        )
        assert all(r["success"] for r in results)
    httpx.delete(f"{base}/_sandbox/requests")
    result = sf.query_all("SELECT Id, Name FROM Account ORDER BY Name DESC")
    names = [r["Name"] for r in result["records"]]
    assert result["totalSize"] == total and len(set(names)) == total
    assert names == sorted(names, reverse=True)
    paths = [r["path"] for r in httpx.get(f"{base}/_sandbox/requests").json()["requests"]]
    assert len(paths) == 2 and re.fullmatch(r"/services/data/v62\.0/query/01g\w{15}-2000", paths[1])

    first = sf.query("SELECT Id FROM Account", headers={"Sforce-Query-Options": "batchSize=500"})
    assert (len(first["records"]), first["done"], first["totalSize"]) == (500, False, total)
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert first["records"][-1]["Id"] < second["records"][0]["Id"]


# --- sObject Collections -------------------------------------------------------------------------


def test_collections_create_all_or_none(sf: Salesforce, em: SalesforceEmulator) -> None:
    records = [
        {"attributes": {"type": "Account"}, "Name": "Good 1"},
        {"attributes": {"type": "Account"}, "Industry": "Retail"},  # no Name
        {"attributes": {"type": "Contact"}, "LastName": "Good 2"},
    ]
    mixed = sf.restful("composite/sobjects", method="POST", json={"records": records})
    assert [r["success"] for r in mixed] == [True, False, True]
    assert mixed[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert mixed[1]["errors"][0]["fields"] == ["Name"]
    assert len(em.records("Account")) == 1 and len(em.records("Contact")) == 1

    rolled = sf.restful(
        "composite/sobjects", method="POST", json={"allOrNone": True, "records": records}
    )
    assert [r["success"] for r in rolled] == [False, False, False]
    assert rolled[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert rolled[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert len(em.records("Account")) == 1 and len(em.records("Contact")) == 1


def test_collections_update_upsert_retrieve_delete(sf: Salesforce, em: SalesforceEmulator) -> None:
    ids = [
        r["id"]
        for r in sf.restful(
            "composite/sobjects",
            method="POST",
            json={"records": [{"attributes": {"type": "Account"}, "Name": n} for n in ("A", "B")]},
        )
    ]
    updated = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "records": [
                {"attributes": {"type": "Account"}, "id": i, "Industry": "Energy"} for i in ids
            ]
        },
    )
    assert all(r["success"] for r in updated)
    upserted = sf.restful(
        "composite/sobjects/Account/Billing_Customer_Id__c",
        method="PATCH",
        json={
            "records": [
                {
                    "attributes": {"type": "Account"},
                    "Billing_Customer_Id__c": "cus_9",
                    "Name": "Nine",
                },
                {"attributes": {"type": "Account"}, "Billing_Customer_Id__c": "cus_9", "MRR__c": 9},
            ]
        },
    )
    assert [r["created"] for r in upserted] == [True, False] and upserted[0]["id"] == upserted[1][
        "id"
    ]
    got = sf.restful(
        "composite/sobjects/Account",
        params={"ids": ",".join([*ids, "001000000000000AAA"]), "fields": "Name,Industry"},
    )
    assert [g and g["Industry"] for g in got] == ["Energy", "Energy", None]
    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": ",".join(ids)})
    assert [d["success"] for d in deleted] == [True, True]
    assert [r["Name"] for r in em.records("Account")] == ["Nine"]


# --- sessions, limits, faults --------------------------------------------------------------------


def test_expired_token(sf: Salesforce, em: SalesforceEmulator, base: str) -> None:
    sf.query("SELECT Id FROM Account")
    em.expire_all_tokens()
    with pytest.raises(SalesforceExpiredSession) as exc:
        sf.query("SELECT Id FROM Account")
    assert exc.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID", "fields": []}
    ]
    fresh = make_client(fetch_token(base).json())
    assert fresh.query("SELECT COUNT() FROM Account")["totalSize"] == 0
    assert httpx.post(f"{base}/_sandbox/salesforce/expire_tokens").json()["expired"] >= 1
    with pytest.raises(SalesforceExpiredSession):
        fresh.Account.create({"Name": "x"})


def test_api_usage_and_limit(sf: Salesforce, base: str) -> None:
    sf.query("SELECT Id FROM Account")
    sf.query("SELECT Id FROM Account")
    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (2, 15000)
    assert sf.limits()["DailyApiRequests"] == {"Max": 15000, "Remaining": 14997}
    httpx.post(f"{base}/_sandbox/salesforce/api_usage", json={"used": 15000})
    with pytest.raises(SalesforceRefusedRequest) as exc:
        sf.query("SELECT Id FROM Account")
    assert error_code(exc) == "REQUEST_LIMIT_EXCEEDED"


def test_injected_fault(sf: Salesforce, base: str) -> None:
    httpx.post(f"{base}/_sandbox/faults", json={"path": "/services/data/.*/query/?", "status": 503})
    with pytest.raises(SalesforceGeneralError) as exc:
        sf.query("SELECT Id FROM Account")
    assert exc.value.status == 503 and error_code(exc) == "SERVER_UNAVAILABLE"
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 0  # the fault is spent


# --- describe ------------------------------------------------------------------------------------


def test_describe(sf: Salesforce, em: SalesforceEmulator) -> None:
    em.seed({"fields": {"Account": [{"name": "Health__c", "type": "number", "label": "Health"}]}})
    desc = sf.Account.describe()
    fields = {f["name"]: f for f in desc["fields"]}
    assert desc["name"] == "Account" and desc["keyPrefix"] == "001"
    assert (
        fields["Billing_Customer_Id__c"]["externalId"] is True
        and fields["Billing_Customer_Id__c"]["unique"]
    )
    assert fields["Name"]["nillable"] is False and fields["Id"]["createable"] is False
    assert [p["value"] for p in fields["Customer_Tier__c"]["picklistValues"]] == [
        "SMB",
        "Mid-Market",
        "Enterprise",
        "Strategic",
    ]
    assert fields["Health__c"]["type"] == "double" and fields["Health__c"]["custom"] is True
    case_fields = {f["name"]: f for f in sf.Case.describe()["fields"]}
    assert (
        case_fields["RevBridge_Key__c"]["externalId"]
        and case_fields["RevBridge_Key__c"]["length"] == 64
    )
    assert {"Contacts", "Cases", "Opportunities", "AI_Agent_Logs__r"} <= {
        c["relationshipName"] for c in desc["childRelationships"]
    }
    prefixes = {o["name"]: o["keyPrefix"] for o in sf.describe()["sobjects"]}
    assert (
        prefixes["AI_Agent_Log__c"] == "a00"
        and prefixes["Task"] == "00T"
        and prefixes["User"] == "005"
    )
    assert sf.Case.metadata()["objectDescribe"]["name"] == "Case"
    assert sf.query("SELECT Name FROM Account WHERE Health__c = null")["totalSize"] == 0


# --- webhooks ------------------------------------------------------------------------------------


def test_webhooks_on_case_created_and_closed_won(
    servers: tuple[SalesforceEmulator, Receiver, ServerThread], sf: Salesforce, base: str
) -> None:
    _, receiver, st = servers
    receiver.received.clear()
    target = {"url": f"{st.urls['receiver']}/hook", "headers": {"X-RevBridge-Secret": "s3cret"}}
    httpx.post(f"{base}/_sandbox/webhooks", json=target).raise_for_status()
    try:
        case_id = sf.Case.create({"Subject": "Refund please"})["id"]
        opp_id = sf.Opportunity.create(
            {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2024-06-30"}
        )["id"]
        sf.Opportunity.update(opp_id, {"Amount": 100})  # not a stage change: no event
        sf.Opportunity.update(opp_id, {"StageName": "Closed Won"})
        sf.restful(  # rolled back: no event
            "composite/sobjects",
            method="POST",
            json={
                "allOrNone": True,
                "records": [{"attributes": {"type": "Case"}}, {"attributes": {"type": "Account"}}],
            },
        )
        got = receiver.wait_for(2)
        time.sleep(0.1)
        assert len(receiver.received) == 2
    finally:
        httpx.delete(f"{base}/_sandbox/webhooks")
    case_event, opp_event = sorted(got, key=lambda r: r["body"]["event"])
    assert case_event["headers"]["x-revbridge-secret"] == "s3cret"
    body = case_event["body"]
    assert (body["event"], body["sobject"], body["recordId"]) == ("case_created", "Case", case_id)
    assert body["record"]["Subject"] == "Refund please" and body["orgId"].startswith("00D")
    assert len(body["eventId"]) == 36
    assert (opp_event["body"]["event"], opp_event["body"]["recordId"]) == (
        "opportunity_closed_won",
        opp_id,
    )
    assert opp_event["body"]["record"]["IsWon"] is True
