"""The HubSpot emulator's quotes (sandbox/hubspot/quotes.py) through the official client: a draft
quote needs its title and expiration date, starts in DRAFT, ignores writes to its calculated
amount, upserts by a unique property (``idProperty``, ``new`` true then false), and associates
with its deal and line items under HubSpot's type IDs (64/63, 67/68), read back in v3 and v4."""

from __future__ import annotations

import json
from collections.abc import Iterator

import hubspot
import pytest
from hubspot.crm.associations.v4 import BatchInputPublicDefaultAssociationMultiPost
from hubspot.crm.deals import SimplePublicObjectInputForCreate as DealCreate
from hubspot.crm.line_items import SimplePublicObjectInputForCreate as LineItemCreate
from hubspot.crm.properties import PropertyCreate
from hubspot.crm.quotes import BatchInputSimplePublicObjectBatchInputUpsert
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


def test_quotes_upsert_by_a_unique_property_and_associate_with_deal_and_lines(
    client: hubspot.HubSpot,
) -> None:
    for otype in ("quotes", "line_items"):
        client.crm.properties.core_api.create(
            otype,
            PropertyCreate(
                name="revbridge_key",
                label="RevBridge key",
                type="string",
                field_type="text",
                group_name="revbridge",
                has_unique_value=True,
            ),
        )
    deal = client.crm.deals.basic_api.create(
        DealCreate(properties={"dealname": "Expansion", "dealstage": "qualifiedtobuy"})
    )
    line = client.crm.line_items.basic_api.create(
        LineItemCreate(properties={"name": "Growth", "price": "300", "quantity": "1"})
    )
    body = BatchInputSimplePublicObjectBatchInputUpsert(
        inputs=[
            {
                "id": "k-quote-1",
                "idProperty": "revbridge_key",
                "properties": {"hs_title": "Upgrade", "hs_expiration_date": "2027-01-31"},
            }
        ]
    )
    first = client.crm.quotes.batch_api.upsert(body)
    again = client.crm.quotes.batch_api.upsert(body)
    assert first is not None and again is not None
    assert [r.new for r in first.results] == [True] and [r.new for r in again.results] == [False]
    quote_id = first.results[0].id
    assert again.results[0].id == quote_id

    v4 = client.crm.associations.v4.batch_api
    for to_type, to_id in (("deals", deal.id), ("line_items", line.id)):
        done = v4.create_default(
            "quotes",
            to_type,
            BatchInputPublicDefaultAssociationMultiPost(
                inputs=[{"from": {"id": quote_id}, "to": {"id": to_id}}]
            ),
        )
        assert done is not None
    types = {
        t.type_id
        for r in client.crm.associations.v4.basic_api.get_page("deals", deal.id, "quotes").results
        for t in r.association_types
    }
    assert types == {63}
    read = client.crm.quotes.basic_api.get_by_id(
        quote_id, associations=["deals", "line_items"], id_property=None
    )
    assert [a.id for a in read.associations["deals"].results] == [deal.id]
    assert [a.id for a in read.associations["line items"].results] == [line.id]
    by_key = client.crm.quotes.basic_api.get_by_id("k-quote-1", id_property="revbridge_key")
    assert by_key.id == quote_id
