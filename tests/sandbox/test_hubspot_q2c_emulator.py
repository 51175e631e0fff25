"""The HubSpot emulator's quote-to-cash / churn / support surface, through the official client:
products and line items (inherited product fields, calculated amount), deal ↔ line item
associations (v3 ``"line items"`` key, v4 types 19/20), the RevBridge custom properties, the deal
search the catch-up uses, error shapes, and the webhooks a won deal and a new ticket send."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import hubspot
import pytest
from hubspot.crm.companies import SimplePublicObjectInput as CompanyUpdate
from hubspot.crm.companies.exceptions import ApiException as CompanyApiException
from hubspot.crm.deals import SimplePublicObjectInput as DealUpdate
from hubspot.crm.deals import SimplePublicObjectInputForCreate as DealCreate
from hubspot.crm.deals.exceptions import ApiException as DealApiException
from hubspot.crm.line_items import SimplePublicObjectInput as LineItemUpdate
from hubspot.crm.line_items import SimplePublicObjectInputForCreate as LineItemCreate
from hubspot.crm.line_items.exceptions import ApiException as LineItemApiException
from hubspot.crm.objects import PublicObjectSearchRequest
from hubspot.crm.products import SimplePublicObjectInputForCreate as ProductCreate

from domain.models import CaseOpened, DealWon
from harness.drivers import HubSpotDriver
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.hubspot.emulator import SEARCH_LAG_S
from tests.sandbox.test_hubspot_emulator import SECRET, TOKEN, Receiver, make_client, verify_v3
from webhooks.hubspot import normalize


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[HubSpotEmulator, Receiver, ServerThread]]:
    emulator, receiver = HubSpotEmulator(), Receiver()
    with ServerThread({emulator: 0, receiver.app: 0}) as st:
        yield emulator, receiver, st


@pytest.fixture
def hs(servers) -> HubSpotEmulator:  # noqa: ANN001
    emulator, receiver, _ = servers
    emulator.reset_state()
    emulator.faults.clear()
    emulator.webhook_targets.clear()
    receiver.clear()
    return emulator


@pytest.fixture
def url(servers, hs: HubSpotEmulator) -> str:  # noqa: ANN001
    return servers[2].urls["hubspot"]


@pytest.fixture
def client(url: str) -> hubspot.HubSpot:
    return make_client(url)


def _error(exc: Exception) -> dict[str, Any]:
    return json.loads(exc.body)  # type: ignore[attr-defined]


def _assoc(to_id: str, type_id: int) -> dict[str, Any]:
    return {
        "to": {"id": to_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    }


# --- products and line items -----------------------------------------------------------------------


def test_line_item_from_a_product_inherits_its_fields_and_calculates_amount(
    client: hubspot.HubSpot,
) -> None:
    product = client.crm.products.basic_api.create(
        ProductCreate(
            properties={
                "name": "Seat",
                "hs_sku": "RB-SEAT",
                "price": "40.00",
                "recurringbillingfrequency": "monthly",
            }
        )
    )
    assert product is not None and product.properties["hs_sku"] == "RB-SEAT"
    deal = client.crm.deals.basic_api.create(DealCreate(properties={"dealname": "Seats"}))
    line = client.crm.line_items.basic_api.create(
        LineItemCreate(
            properties={
                "hs_product_id": product.id,
                "quantity": "25",
                "price": "36.00",
                "hs_discount_percentage": "10",
                "amount": "1",  # calculated: a write is ignored, as HubSpot ignores it
            },
            associations=[_assoc(deal.id, 20)],
        )
    )
    assert line is not None
    props = line.properties
    assert (props["name"], props["hs_sku"], props["recurringbillingfrequency"]) == (
        "Seat",
        "RB-SEAT",
        "monthly",
    )
    assert props["price"] == "36.00" and props["amount"] == "810.00"  # 25 × 36 × 0.9

    updated = client.crm.line_items.basic_api.update(
        line.id, LineItemUpdate(properties={"hs_discount_percentage": "", "discount": "6"})
    )
    assert updated.properties["amount"] == "750.00"  # 25 × (36 − 6)

    # v3 read: the association key is "line items" (with a space), as HubSpot sends it
    read = client.crm.deals.basic_api.get_by_id(deal.id, associations=["line_items"])
    assert [(a.id, a.type) for a in read.associations["line items"].results] == [
        (line.id, "deal_to_line_item")
    ]
    v4 = client.crm.associations.v4.basic_api
    assert [
        (r.to_object_id, r.association_types[0].type_id)
        for r in v4.get_page("deals", deal.id, "line_items").results
    ] == [(line.id, 19)]
    assert [
        (r.to_object_id, r.association_types[0].type_id)
        for r in v4.get_page("line_items", line.id, "deals").results
    ] == [(deal.id, 20)]

    page = client.crm.line_items.batch_api.read(
        {"inputs": [{"id": line.id}, {"id": "999999"}], "properties": ["hs_sku", "quantity"]}
    )
    assert [r.properties["hs_sku"] for r in page.results] == ["RB-SEAT"]
    assert page.errors[0].category == "OBJECT_NOT_FOUND"  # a 207


def test_line_item_errors_are_hubspot_shaped(client: hubspot.HubSpot) -> None:
    deal = client.crm.deals.basic_api.create(DealCreate(properties={"dealname": "X"}))
    with pytest.raises(LineItemApiException) as exc:
        client.crm.line_items.basic_api.create(
            LineItemCreate(properties={"hs_product_id": "424242", "quantity": "1"})
        )
    assert exc.value.status == 400
    body = _error(exc.value)
    assert body["category"] == "VALIDATION_ERROR" and "424242" in body["message"]
    assert body["status"] == "error" and len(body["correlationId"]) == 36

    with pytest.raises(LineItemApiException) as exc:  # 19 is deal → line item, not the reverse
        client.crm.line_items.basic_api.create(
            LineItemCreate(properties={"name": "x"}, associations=[_assoc(deal.id, 19)])
        )
    assert exc.value.status == 400
    assert _error(exc.value)["subCategory"] == "INVALID_ASSOCIATION_TYPE"


# --- RevBridge custom properties -------------------------------------------------------------------


def test_deal_and_company_custom_properties(client: hubspot.HubSpot) -> None:
    deal = client.crm.deals.basic_api.create(
        DealCreate(
            properties={
                "dealname": "Terms",
                "term_months": 24,
                "payment_terms": "Net 30",
                "start_date": "2025-03-01",
                "billing_subscription_id": "sub_1",
                "billing_status": "active",
                "mrr": "1234.5",
            }
        )
    )
    got = client.crm.deals.basic_api.get_by_id(
        deal.id, properties=["term_months", "payment_terms", "start_date", "mrr"]
    ).properties
    assert (got["term_months"], got["payment_terms"], got["start_date"], got["mrr"]) == (
        "24",
        "Net 30",
        "2025-03-01",
        "1234.5",
    )
    with pytest.raises(DealApiException) as exc:
        client.crm.deals.basic_api.update(
            deal.id, DealUpdate(properties={"payment_terms": "Net 90"})
        )
    body = _error(exc.value)
    assert exc.value.status == 400 and body["errors"][0]["code"] == "INVALID_OPTION"
    with pytest.raises(DealApiException) as exc:  # a date property holds midnight UTC only
        client.crm.deals.basic_api.update(
            deal.id, DealUpdate(properties={"start_date": "2025-03-01T10:00:00Z"})
        )
    assert _error(exc.value)["errors"][0]["code"] == "INVALID_DATE"

    options = client.crm.properties.core_api.get_by_name("deals", "payment_terms").options
    assert [o.value for o in options] == ["Net 15", "Net 30", "Net 45", "Net 60"]

    company = client.crm.companies.basic_api.create({"properties": {"name": "Acme"}})
    client.crm.companies.basic_api.update(
        company.id,
        CompanyUpdate(
            properties={
                "churn_risk": "81",
                "churn_level": "critical",
                "churn_reasons": "a\nb",
                "churn_narrative": "text",
                "churn_scored_at": "1746515289000",
                "billing_status": "active",
            }
        ),
    )
    props = client.crm.companies.basic_api.get_by_id(
        company.id, properties=["churn_level", "churn_reasons", "churn_scored_at", "billing_status"]
    ).properties
    assert props["churn_level"] == "critical" and props["churn_reasons"] == "a\nb"
    assert props["churn_scored_at"] == "2025-05-06T07:08:09.000Z"
    with pytest.raises(CompanyApiException) as bad:
        client.crm.companies.basic_api.update(
            company.id, CompanyUpdate(properties={"churn_level": "extreme"})
        )
    assert bad.value.status == 400 and _error(bad.value)["errors"][0]["code"] == "INVALID_OPTION"


# --- the catch-up search ---------------------------------------------------------------------------


def test_search_won_deals_modified_since_sorted_ascending(client: hubspot.HubSpot) -> None:
    api = client.crm.deals.basic_api
    ids = []
    for name, stage in (("a", "closedwon"), ("b", "contractsent"), ("c", "closedwon")):
        ids.append(api.create(DealCreate(properties={"dealname": name, "dealstage": stage})).id)
        time.sleep(0.01)
    since = int(time.time() * 1000)
    time.sleep(0.01)
    api.update(ids[2], DealUpdate(properties={"amount": "1"}))
    time.sleep(0.01)
    api.update(ids[0], DealUpdate(properties={"amount": "2"}))
    api.update(ids[1], DealUpdate(properties={"amount": "3"}))  # modified, but not won
    time.sleep(SEARCH_LAG_S + 0.1)  # search shows writes once its index has caught up

    def search(limit: int, after: str | None = None) -> Any:
        return client.crm.objects.search_api.do_search(
            "deals",
            PublicObjectSearchRequest(
                filter_groups=[
                    {
                        "filters": [
                            {"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"},
                            {
                                "propertyName": "hs_lastmodifieddate",
                                "operator": "GTE",
                                "value": str(since),
                            },
                        ]
                    }
                ],
                sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
                properties=["dealstage"],
                limit=limit,
                after=after,
            ),
        )

    page = search(10)
    assert page.total == 2 and [d.id for d in page.results] == [ids[2], ids[0]]
    first = search(1)
    assert [d.id for d in first.results] == [ids[2]] and first.paging.next.after == "1"
    assert [d.id for d in search(1, first.paging.next.after).results] == [ids[0]]


# --- webhooks: a won deal, a new ticket ------------------------------------------------------------


def test_win_and_open_case_send_signed_webhooks_that_normalize(
    servers,  # noqa: ANN001
    hs: HubSpotEmulator,
    url: str,
    client: hubspot.HubSpot,
) -> None:
    _, receiver, st = servers
    target = st.urls["receiver"] + "/hooks/hubspot"
    httpx.post(f"{url}/_sandbox/webhooks", json={"url": target}).raise_for_status()
    driver = HubSpotDriver(url, TOKEN)
    driver.seed_catalog()
    driver.seed_catalog()  # idempotent: one product per SKU
    skus = client.crm.products.basic_api.get_page(limit=100, properties=["hs_sku"]).results
    assert sorted(p.properties["hs_sku"] for p in skus) == [
        "RB-CORE",
        "RB-LEGACY",
        "RB-SEAT",
        "RB-SUPPORT",
    ]
    account = driver.create_account("Acme")
    deal = driver.create_opportunity(account, "Acme", [("RB-CORE", 1, 50_000, 0)])
    hs.flush_webhooks()
    kinds = {e["subscriptionType"] for e in hs.webhook_events}
    assert {"deal.creation", "line_item.creation", "product.creation"} <= kinds
    assert all(e["changeSource"] == "API" for e in hs.webhook_events)  # the driver's own writes
    receiver.clear()

    driver.win(deal)  # returns once the delivery is done
    assert receiver.received, "no webhook for the won deal"
    hit = receiver.received[-1]
    events = json.loads(hit["body"])
    assert [
        (e["subscriptionType"], e["propertyName"], e["propertyValue"], e["changeSource"])
        for e in events
    ] == [("deal.propertyChange", "dealstage", "closedwon", "CRM_UI")]
    headers = hit["headers"]
    assert verify_v3(
        SECRET,
        "POST",
        target,
        hit["body"],
        headers["x-hubspot-request-timestamp"],
        headers["x-hubspot-signature-v3"],
    )
    won = normalize(events[0], str(hs.app_id))
    assert isinstance(won, DealWon) and won.opportunity_id == deal

    receiver.clear()
    ticket = driver.open_case(account, "Where is my invoice?", "details")
    events = [e for hit in receiver.received for e in json.loads(hit["body"])]
    assert events[0]["subscriptionType"] == "ticket.creation"
    assert events[0]["objectId"] == int(ticket) and events[0]["changeSource"] == "CRM_UI"
    opened = normalize(events[0], str(hs.app_id))
    assert isinstance(opened, CaseOpened) and opened.case_id == ticket
    assert {e["subscriptionType"] for e in events[1:]} == {
        "ticket.associationChange",
        "company.associationChange",
    }
    read = client.crm.tickets.basic_api.get_by_id(ticket, associations=["companies"])
    assert {a.type for a in read.associations["companies"].results} == {
        "ticket_to_company",
        "ticket_to_company_unlabeled",
    }
    assert driver.account(account)["name"] == "Acme"
    assert driver.opportunity(deal)["dealstage"] == "closedwon"


def test_driver_tasks_on_the_company_and_its_deals(
    hs: HubSpotEmulator, url: str, client: hubspot.HubSpot
) -> None:
    driver = HubSpotDriver(url, TOKEN)
    account = driver.create_account("Acme")
    deal = driver.create_opportunity(account, "Acme", [("RB-CUSTOM", 1, 100, 0)])
    tasks = client.crm.objects.tasks.basic_api
    on_company = tasks.create(
        {
            "properties": {
                "hs_timestamp": "2025-01-01T00:00:00Z",
                "hs_task_subject": "Provision",
                "hs_task_body": "line 1<br>a &amp; b",
            },
            "associations": [_assoc(account, 192)],
        }
    )
    on_deal = tasks.create(
        {
            "properties": {"hs_timestamp": "2025-01-01T00:00:00Z", "hs_task_subject": "Kickoff"},
            "associations": [_assoc(deal, 216)],
        }
    )
    assert driver.tasks(account) == [
        {
            "id": on_company.id,
            "subject": "Provision",
            "description": "line 1\na & b",
            "owner_id": None,
        },
        {"id": on_deal.id, "subject": "Kickoff", "description": "", "owner_id": None},
    ]
    assert driver.tasks(driver.create_account("Empty")) == []
