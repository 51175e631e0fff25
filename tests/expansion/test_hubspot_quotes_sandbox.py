"""The HubSpot emulator's quotes (sandbox/hubspot/quotes.py) through the official client: a draft
quote needs its title and expiration date, starts in DRAFT, ignores writes to its calculated
amount; quotes and line items cannot have unique-value properties (refused, as HubSpot offers
them for contacts, companies, deals, tickets and custom objects only); a quote and line items
are created with their associations in one request under HubSpot's type IDs (64/63, 68, 20),
read back in v3 and v4."""

from __future__ import annotations

import json
from collections.abc import Iterator

import hubspot
import pytest
from hubspot.crm.associations.v4 import BatchInputPublicDefaultAssociationMultiPost
from hubspot.crm.deals import SimplePublicObjectInputForCreate as DealCreate
from hubspot.crm.line_items import (
    BatchInputSimplePublicObjectBatchInputForCreate as LineItemCreates,
)
from hubspot.crm.properties import PropertyCreate
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException
from hubspot.crm.quotes import SimplePublicObjectInputForCreate as QuoteCreate
from hubspot.crm.quotes.exceptions import ApiException as QuoteApiException

from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from tests.sandbox.test_hubspot_emulator import make_client


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    emulator = HubSpotEmulator(limits=False)
    with ServerThread({emulator: 0}) as st:
        yield st.urls["hubspot"]


@pytest.fixture
def client(url: str) -> hubspot.HubSpot:
    return make_client(url)


def test_a_draft_quote_needs_title_and_expiry_and_its_amount_is_calculated(
    client: hubspot.HubSpot,
) -> None:
    with pytest.raises(QuoteApiException) as err:
        client.crm.quotes.basic_api.create(QuoteCreate(properties={"hs_title": "Upgrade"}))
    assert err.value.status == 400
    body = json.loads(err.value.body)
    assert body["category"] == "VALIDATION_ERROR"
    assert "hs_expiration_date" in json.dumps(body)

    quote = client.crm.quotes.basic_api.create(
        QuoteCreate(
            properties={
                "hs_title": "Upgrade",
                "hs_expiration_date": "2027-01-31",
                "hs_quote_amount": "99",
            }
        )
    )
    assert quote is not None  # 201: the client returns None for any other status
    assert quote.properties["hs_status"] == "DRAFT"
    assert "hs_quote_amount" not in quote.properties
    read = client.crm.quotes.basic_api.get_by_id(quote.id, properties=["hs_title", "hs_status"])
    assert read.properties["hs_title"] == "Upgrade"


def test_quotes_and_line_items_have_no_unique_properties_and_associate_on_create(
    client: hubspot.HubSpot,
) -> None:
    for otype in ("quotes", "line_items"):
        with pytest.raises(PropertiesApiException) as err:
            client.crm.properties.core_api.create(otype, key_property(unique=True))
        assert err.value.status == 400 and "Unique value" in json.loads(err.value.body)["message"]
        client.crm.properties.core_api.create(otype, key_property(unique=False))
    with pytest.raises(QuoteApiException) as err:
        client.crm.quotes.basic_api.get_by_id("k-quote-1", id_property="revbridge_key")
    assert err.value.status == 400
    deal = client.crm.deals.basic_api.create(
        DealCreate(properties={"dealname": "Expansion", "dealstage": "qualifiedtobuy"})
    )
    quote = client.crm.quotes.basic_api.create(
        QuoteCreate(
            properties={
                "hs_title": "Upgrade",
                "hs_expiration_date": "2027-01-31",
                "revbridge_key": "k-quote-1",
            },
            associations=[assoc(deal.id, 64)],
        )
    )
    lines = client.crm.line_items.batch_api.create(
        LineItemCreates(
            inputs=[
                {
                    "properties": {"name": "Growth", "price": "300", "revbridge_key": "k-1"},
                    "associations": [assoc(quote.id, 68)],
                },
                {
                    "properties": {"name": "Growth", "price": "300", "revbridge_key": "k-2"},
                    "associations": [assoc(deal.id, 20)],
                },
            ]
        )
    )
    assert lines is not None and len(lines.results) == 2  # 201
    v4 = client.crm.associations.v4.basic_api
    [to_quote] = v4.get_page("deals", deal.id, "quotes").results
    assert str(to_quote.to_object_id) == quote.id
    assert {t.type_id for t in to_quote.association_types} == {63}
    read = client.crm.quotes.basic_api.get_by_id(quote.id, associations=["deals", "line_items"])
    assert [a.id for a in read.associations["deals"].results] == [deal.id]
    assert len(read.associations["line items"].results) == 1
    assert len(v4.get_page("deals", deal.id, "line_items").results) == 1
    # and the default (unlabeled) association in batch, as the connector links deal → company
    done = client.crm.associations.v4.batch_api.create_default(
        "quotes",
        "deals",
        BatchInputPublicDefaultAssociationMultiPost(
            inputs=[{"from": {"id": quote.id}, "to": {"id": deal.id}}]
        ),
    )
    assert done is not None


def key_property(unique: bool) -> PropertyCreate:
    return PropertyCreate(
        name="revbridge_key",
        label="RevBridge key",
        type="string",
        field_type="text",
        group_name="revbridge",
        has_unique_value=unique,
    )


def assoc(object_id: str, type_id: int) -> dict:
    return {
        "to": {"id": object_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    }
