"""The Salesforce emulator's products feature (Product2, Pricebook2, PricebookEntry,
OpportunityLineItem, OpportunityContactRole), the quote-to-cash / churn / support fields, the
queries the connector sends, and the Flow callouts on win and case creation — all through the
official ``simple-salesforce`` client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from simple_salesforce import Salesforce, format_soql
from simple_salesforce.exceptions import SalesforceMalformedRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.framework import App, ServerThread
from sandbox.salesforce import SalesforceEmulator


class HttpRewrite(requests.adapters.HTTPAdapter):
    """simple-salesforce always speaks https; the sandbox is plain HTTP (reference §1.1)."""

    def send(self, request: requests.PreparedRequest, **kw: Any) -> requests.Response:  # type: ignore[override]
        request.url = "http://" + request.url[len("https://") :]  # type: ignore[index]
        return super().send(request, **kw)


class Receiver:
    """Where the org's Flow callouts land."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.app = App("receiver", Starlette(routes=[Route("/hook", self._hook, methods=["POST"])]))

    async def _hook(self, request: Request) -> Response:
        self.received.append(
            {"headers": dict(request.headers), "body": json.loads(await request.body())}
        )
        return JSONResponse({"ok": True})

    def wait_for(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)  # and nothing more arrives
        return self.received


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[SalesforceEmulator, Receiver, ServerThread]]:
    emulator, receiver = SalesforceEmulator(), Receiver()
    with ServerThread({emulator: 0, receiver.app: 0}) as st:
        yield emulator, receiver, st


@pytest.fixture
def base(servers: tuple[SalesforceEmulator, Receiver, ServerThread]) -> str:
    url = servers[2].urls["salesforce"]
    httpx.post(f"{url}/_sandbox/reset").raise_for_status()
    return url


@pytest.fixture
def sf(base: str) -> Salesforce:
    token = httpx.post(
        f"{base}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "revbridge-local",
            "client_secret": "local-secret",
        },
    ).json()
    session = requests.Session()
    session.mount(token["instance_url"] + "/", HttpRewrite())
    return Salesforce(
        instance_url=token["instance_url"],
        session_id=token["access_token"],
        session=session,
        version="62.0",
    )


def error(exc: pytest.ExceptionInfo[SalesforceMalformedRequest]) -> dict[str, Any]:
    assert exc.value.status == 400
    body = exc.value.content
    assert isinstance(body, list) and len(body) == 1  # Salesforce's error array
    return body[0]


def standard_book(sf: Salesforce) -> str:
    rows = sf.query("SELECT Id, Name, IsActive FROM Pricebook2 WHERE IsStandard = true")["records"]
    assert len(rows) == 1 and rows[0]["Name"] == "Standard Price Book" and rows[0]["IsActive"]
    return rows[0]["Id"]


def product(sf: Salesforce, code: str, price: float, name: str | None = None) -> tuple[str, str]:
    """A product with its standard price; (product ID, standard entry ID)."""
    pid = sf.Product2.create({"Name": name or code, "ProductCode": code, "IsActive": True})["id"]
    entry = sf.PricebookEntry.create(
        {"Pricebook2Id": standard_book(sf), "Product2Id": pid, "UnitPrice": price, "IsActive": True}
    )["id"]
    return pid, entry


def opportunity(sf: Salesforce, **extra: Any) -> str:
    fields = {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2024-06-30", **extra}
    return sf.Opportunity.create(fields)["id"]


# --- catalogue ------------------------------------------------------------------------------------


def test_price_book_entries(sf: Salesforce) -> None:
    book = standard_book(sf)
    pid, entry_id = product(sf, "RB-CORE", 500, name="Core")
    entry = sf.PricebookEntry.get(entry_id)
    assert (entry["Name"], entry["ProductCode"], entry["UnitPrice"]) == ("Core", "RB-CORE", 500.0)
    assert entry["Pricebook2Id"] == book and entry["UseStandardPrice"] is False

    with pytest.raises(SalesforceMalformedRequest) as dup:  # once per price book
        sf.PricebookEntry.create({"Pricebook2Id": book, "Product2Id": pid, "UnitPrice": 1})
    assert error(dup)["errorCode"] == "DUPLICATE_VALUE"

    custom = sf.Pricebook2.create({"Name": "Partners", "IsActive": True})["id"]
    bare = sf.Product2.create({"Name": "Unpriced", "ProductCode": "RB-NONE"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as no_std:
        sf.PricebookEntry.create({"Pricebook2Id": custom, "Product2Id": bare, "UnitPrice": 9})
    assert error(no_std) == {
        "errorCode": "STANDARD_PRICE_NOT_DEFINED",
        "message": "No standard price defined for this product",
        "fields": [],
    }
    same = sf.PricebookEntry.create(
        {"Pricebook2Id": custom, "Product2Id": pid, "UnitPrice": 1, "UseStandardPrice": True}
    )["id"]
    assert sf.PricebookEntry.get(same)["UnitPrice"] == 500.0  # the standard price, not 1

    with pytest.raises(SalesforceMalformedRequest) as ro:  # IsStandard belongs to the org
        sf.Pricebook2.update(custom, {"IsStandard": True})
    assert error(ro)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"

    sf.Product2.update(pid, {"ProductCode": "RB-CORE-2"})  # entries show the product's code
    assert sf.PricebookEntry.get(entry_id)["ProductCode"] == "RB-CORE-2"


# --- line items -------------------------------------------------------------------------------------


def test_line_items_price_and_roll_up_into_the_opportunity(sf: Salesforce) -> None:
    _, core = product(sf, "RB-CORE", 500, name="Core")
    seat_id, seat = product(sf, "RB-SEAT", 40, name="Seat")
    opp_id = opportunity(sf, Name="Acme", Amount=1)
    line = sf.OpportunityLineItem.create(
        {"OpportunityId": opp_id, "PricebookEntryId": seat, "Quantity": 10, "UnitPrice": 36,
         "Discount": 10}
    )["id"]  # fmt: skip
    row = sf.OpportunityLineItem.get(line)
    assert (row["ProductCode"], row["Product2Id"], row["Name"]) == ("RB-SEAT", seat_id, "Acme Seat")
    assert (row["ListPrice"], row["UnitPrice"], row["Subtotal"], row["TotalPrice"]) == (
        40.0,
        36.0,
        360.0,
        324.0,
    )
    # by product (the opportunity's price book finds the entry), and by total price
    sf.OpportunityLineItem.create(
        {"OpportunityId": opp_id, "Product2Id": row["Product2Id"], "Quantity": 1, "TotalPrice": 40}
    )
    core_line = sf.OpportunityLineItem.create(
        {"OpportunityId": opp_id, "PricebookEntryId": core, "Quantity": 1, "UnitPrice": 500}
    )["id"]
    opp = sf.Opportunity.get(opp_id)
    assert opp["Amount"] == 324 + 40 + 500 and opp["HasOpportunityLineItem"] is True
    assert opp["Pricebook2Id"] == standard_book(sf)  # set by the first line

    sf.OpportunityLineItem.update(line, {"Quantity": 20})
    assert sf.OpportunityLineItem.get(line)["TotalPrice"] == 648.0
    sf.Opportunity.update(opp_id, {"Amount": 5})  # read-only while it has lines: ignored
    assert sf.Opportunity.get(opp_id)["Amount"] == 648 + 40 + 500
    sf.OpportunityLineItem.delete(core_line)
    assert sf.Opportunity.get(opp_id)["Amount"] == 648 + 40


def test_line_item_errors(sf: Salesforce) -> None:
    _, seat = product(sf, "RB-SEAT", 40)
    opp_id = opportunity(sf)

    def refused(fields: dict[str, Any]) -> dict[str, Any]:
        with pytest.raises(SalesforceMalformedRequest) as exc:
            sf.OpportunityLineItem.create({"OpportunityId": opp_id, **fields})
        return error(exc)

    assert refused({"Quantity": 1, "UnitPrice": 1}) == {
        "errorCode": "FIELD_INTEGRITY_EXCEPTION",
        "message": "field integrity exception: PricebookEntryId, unknown (versions 3.0 and "
        "higher must specify pricebook entry id; others must specify product id)",
        "fields": ["PricebookEntryId", "unknown"],
    }
    both = refused({"PricebookEntryId": seat, "Quantity": 1, "UnitPrice": 1, "TotalPrice": 1})
    assert both["errorCode"] == "FIELD_INTEGRITY_EXCEPTION" and both["fields"] == ["TotalPrice"]
    assert refused({"PricebookEntryId": seat, "UnitPrice": 1})["errorCode"] == (
        "REQUIRED_FIELD_MISSING"
    )
    read_only = refused(
        {"PricebookEntryId": seat, "Quantity": 1, "UnitPrice": 1, "ProductCode": "X"}
    )
    assert read_only["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    with pytest.raises(SalesforceMalformedRequest) as no_opp:
        sf.OpportunityLineItem.create({"PricebookEntryId": seat, "Quantity": 1, "UnitPrice": 1})
    assert error(no_opp)["errorCode"] == "REQUIRED_FIELD_MISSING"

    custom = sf.Pricebook2.create({"Name": "Partners", "IsActive": True})["id"]
    other = sf.PricebookEntry.create(
        {"Pricebook2Id": custom, "Product2Id": sf.PricebookEntry.get(seat)["Product2Id"],
         "UnitPrice": 30, "IsActive": True}
    )["id"]  # fmt: skip
    sf.OpportunityLineItem.create(
        {"OpportunityId": opp_id, "PricebookEntryId": seat, "Quantity": 1, "UnitPrice": 40}
    )
    wrong_book = refused({"PricebookEntryId": other, "Quantity": 1, "UnitPrice": 30})
    assert wrong_book["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"
    assert "different pricebook" in wrong_book["message"]

    line = sf.query(
        format_soql("SELECT Id FROM OpportunityLineItem WHERE OpportunityId = {}", opp_id)
    )
    with pytest.raises(SalesforceMalformedRequest) as both_update:
        sf.OpportunityLineItem.update(line["records"][0]["Id"], {"UnitPrice": 1, "TotalPrice": 1})
    assert error(both_update)["errorCode"] == "INVALID_FIELD"


def test_all_or_none_rolls_back_the_roll_up_too(sf: Salesforce) -> None:
    _, seat = product(sf, "RB-SEAT", 40)
    opp_id = opportunity(sf, Amount=7)
    results = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": True,
            "records": [
                {"attributes": {"type": "OpportunityLineItem"}, "OpportunityId": opp_id,
                 "PricebookEntryId": seat, "Quantity": 2, "UnitPrice": 40},
                {"attributes": {"type": "OpportunityLineItem"}, "OpportunityId": opp_id,
                 "PricebookEntryId": seat, "Quantity": 0, "UnitPrice": 40},
            ],
        },
    )  # fmt: skip
    assert [r["success"] for r in results] == [False, False]
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "FIELD_INTEGRITY_EXCEPTION"
    opp = sf.Opportunity.get(opp_id)
    assert (opp["Amount"], opp["HasOpportunityLineItem"], opp["Pricebook2Id"]) == (7.0, False, None)
    assert sf.query("SELECT COUNT() FROM OpportunityLineItem")["totalSize"] == 0


# --- contact roles and the connector's query --------------------------------------------------------


def test_contact_roles_and_the_opportunity_query(sf: Salesforce) -> None:
    _, seat = product(sf, "RB-SEAT", 40, name="Seat")
    account = sf.Account.create(
        {"Name": "Acme", "Billing_Customer_Id__c": "cus_1", "Billing_Platform__c": "stripe"}
    )["id"]
    opp_id = opportunity(
        sf, AccountId=account, Term_Months__c=24, Payment_Terms__c="Net 30",
        Start_Date__c="2024-07-01",
    )  # fmt: skip
    ann = sf.Contact.create({"LastName": "Ann", "Email": "ann@acme.example", "AccountId": account})
    bob = sf.Contact.create({"LastName": "Bob", "AccountId": account})
    first = sf.OpportunityContactRole.create(
        {"OpportunityId": opp_id, "ContactId": ann["id"], "Role": "Economic Buyer",
         "IsPrimary": True}
    )["id"]  # fmt: skip
    sf.OpportunityContactRole.create(
        {"OpportunityId": opp_id, "ContactId": bob["id"], "IsPrimary": True}
    )
    assert sf.OpportunityContactRole.get(first)["IsPrimary"] is False  # one primary per deal
    sf.OpportunityLineItem.create(
        {"OpportunityId": opp_id, "PricebookEntryId": seat, "Quantity": 3, "UnitPrice": 40}
    )

    soql = format_soql(
        "SELECT Id, Term_Months__c, Payment_Terms__c, Start_Date__c, Account.Name, "
        "Account.Billing_Customer_Id__c, "
        "(SELECT ProductCode, Product2.ProductCode, Product2.Name, Quantity, ListPrice, "
        "Discount FROM OpportunityLineItems ORDER BY SortOrder, CreatedDate), "
        "(SELECT ContactId, Contact.Email, IsPrimary FROM OpportunityContactRoles "
        "ORDER BY IsPrimary DESC) FROM Opportunity WHERE Id = {}",
        opp_id,
    )
    (row,) = sf.query(soql)["records"]
    assert (row["Term_Months__c"], row["Payment_Terms__c"], row["Start_Date__c"]) == (
        24.0,
        "Net 30",
        "2024-07-01",
    )
    assert row["Account"]["Name"] == "Acme" and row["Account"]["Billing_Customer_Id__c"] == "cus_1"
    lines = row["OpportunityLineItems"]
    assert (lines["totalSize"], lines["done"]) == (1, True)
    line = lines["records"][0]
    assert line["attributes"]["type"] == "OpportunityLineItem"
    assert line["ProductCode"] == line["Product2"]["ProductCode"] == "RB-SEAT"
    assert (line["Product2"]["Name"], line["Quantity"], line["ListPrice"]) == ("Seat", 3.0, 40.0)
    roles = row["OpportunityContactRoles"]["records"]
    assert [(r["ContactId"], r["IsPrimary"]) for r in roles] == [
        (bob["id"], True),
        (ann["id"], False),
    ]
    assert roles[1]["Contact"]["Email"] == "ann@acme.example"

    empty = sf.query(
        format_soql("SELECT (SELECT Id FROM OpportunityLineItems) FROM Opportunity WHERE Id = {}",
                    opportunity(sf))
    )["records"][0]  # fmt: skip
    assert empty["OpportunityLineItems"] is None  # an empty subquery is null, as in Salesforce


def test_new_fields_validate(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as terms:
        opportunity(sf, Payment_Terms__c="Net 90")
    assert error(terms)["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    account = sf.Account.create({"Name": "Scored"})["id"]
    sf.Account.update(
        account,
        {"Churn_Risk__c": 55, "Churn_Level__c": "medium", "Churn_Reasons__c": "a\nb",
         "Churn_Scored_At__c": "2024-05-02T09:30:00Z", "Billing_Status__c": "active"},
    )  # fmt: skip
    got = sf.Account.get(account)
    assert (got["Churn_Level__c"], got["Churn_Scored_At__c"]) == (
        "medium",
        "2024-05-02T09:30:00.000+0000",
    )
    case = sf.Case.create({"Subject": "Q"})["id"]
    sf.Case.update(case, {"Billing_Context__c": "x" * 32_768})
    with pytest.raises(SalesforceMalformedRequest) as long:
        sf.Case.update(case, {"Billing_Context__c": "x" * 32_769})
    assert error(long)["errorCode"] == "STRING_TOO_LONG"
    describe = {f["name"]: f for f in sf.Case.describe()["fields"]}
    assert (describe["Billing_Context__c"]["type"], describe["Billing_Context__c"]["length"]) == (
        "textarea",
        32_768,
    )
    rels = {r["relationshipName"] for r in sf.Opportunity.describe()["childRelationships"]}
    assert {"OpportunityLineItems", "OpportunityContactRoles"} <= rels


def test_won_since_query(
    sf: Salesforce, servers: tuple[SalesforceEmulator, Receiver, ServerThread]
) -> None:
    em = servers[0]
    refs = em.seed(
        {
            "records": {
                "Opportunity": [
                    {"Ref": r, "Name": r, "StageName": stage, "CloseDate": "2024-05-01",
                     "LastModifiedDate": at}
                    for r, stage, at in [
                        ("b", "Closed Won", "2024-05-01T12:00:05Z"),
                        ("a", "Closed Won", "2024-05-01T12:00:00Z"),
                        ("old", "Closed Won", "2024-05-01T11:59:59Z"),
                        ("open", "Prospecting", "2024-05-01T12:30:00Z"),
                        ("c", "Closed Won", "2024-05-01T13:00:00Z"),
                    ]
                ]
            }
        }
    )["refs"]  # fmt: skip
    soql = (
        "SELECT Id FROM Opportunity WHERE IsWon = true AND LastModifiedDate >= "
        "2024-05-01T12:00:00+00:00 ORDER BY LastModifiedDate, Id LIMIT 2"
    )
    assert [r["Id"] for r in sf.query(soql)["records"]] == [refs["a"], refs["b"]]


# --- Flow callouts ----------------------------------------------------------------------------------


def test_callouts_on_win_and_case_creation(
    servers: tuple[SalesforceEmulator, Receiver, ServerThread], sf: Salesforce, base: str
) -> None:
    _, receiver, st = servers
    receiver.received.clear()
    target = {"url": f"{st.urls['receiver']}/hook", "headers": {"X-RevBridge-Secret": "s3cret"}}
    httpx.post(f"{base}/_sandbox/webhooks", json=target).raise_for_status()
    try:
        _, seat = product(sf, "RB-SEAT", 40)
        opp_id = opportunity(sf)
        sf.OpportunityLineItem.create(
            {"OpportunityId": opp_id, "PricebookEntryId": seat, "Quantity": 1, "UnitPrice": 40}
        )
        sf.Opportunity.update(opp_id, {"StageName": "Closed Won"})  # the rep wins the deal
        # what quote-to-cash writes back afterwards is no second "won"
        sf.restful(
            "composite/sobjects",
            method="PATCH",
            json={
                "allOrNone": True,
                "records": [
                    {"attributes": {"type": "Opportunity"}, "id": opp_id,
                     "Billing_Status__c": "active", "MRR__c": 40}
                ],
            },
        )  # fmt: skip
        sf.OpportunityLineItem.create(
            {"OpportunityId": opp_id, "PricebookEntryId": seat, "Quantity": 1, "UnitPrice": 40}
        )
        case_id = sf.Case.create({"Subject": "Where is my invoice?"})["id"]
        got = receiver.wait_for(2)
    finally:
        httpx.delete(f"{base}/_sandbox/webhooks")
    assert len(got) == 2
    by_event = {r["body"]["event"]: r for r in got}
    won = by_event["opportunity_closed_won"]
    assert won["headers"]["x-revbridge-secret"] == "s3cret"
    assert (won["body"]["sobject"], won["body"]["recordId"]) == ("Opportunity", opp_id)
    assert won["body"]["record"]["IsWon"] is True and won["body"]["record"]["Amount"] == 40.0
    created = by_event["case_created"]["body"]
    assert (created["sobject"], created["recordId"]) == ("Case", case_id)
    assert len({won["body"]["eventId"], created["eventId"]}) == 2
