"""Usage-based expansion's HubSpot records through the official client against the sandbox:
``revbridge setup crm``'s expansion properties, then the deal (expansion pipeline, the company's
owner) upserted on its unique ``revbridge_key``, its line item, its DRAFT quote and the quote's
line item priced from the catalogue, each created with its association (quotes and line items
have no unique properties: a retry finds them through the deal's associations). A quote create
and a line items create, each committed-then-timed-out and retried, leave ONE deal, ONE quote
and ONE line item each. Then the signal's properties on the deal, the link quote-to-cash reads,
the close (closed lost with the reason, quote rejected) and no reopening."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from hubspot.crm.companies import SimplePublicObjectInputForCreate as CompanyCreate
from hubspot.crm.products import SimplePublicObjectInputForCreate as ProductCreate

from activities.expansion import (
    CloseExpansionInput,
    ExpansionActivities,
    UpsertSignalInput,
)
from cli.crm_use_cases import expansion_properties
from connectors.chargebee import ChargebeeBilling
from connectors.expansion.hubspot import HubSpotExpansion
from connectors.hubspot import HubSpotCrm
from connectors.hubspot_setup import setup_apply, setup_plan
from connectors.registry import build_billing, build_crm
from sandbox.hubspot.emulator import SEARCH_LAG_S
from tests.expansion.test_expansion_sandbox import growth_signal, growth_upsert
from tests.pairs import pair_settings


def hubspot_ready(crm: HubSpotCrm) -> list[str]:
    """What `revbridge setup crm` does for expansion on a portal (a second run finds it done)."""
    return setup_apply(crm, setup_plan(crm, expansion_properties()))


def hubspot_company(crm: HubSpotCrm, customer: str, billing: str, owner: str = "77001") -> str:
    company = crm._client.crm.companies.basic_api.create(
        CompanyCreate(
            properties={
                "name": f"Initech {customer}",
                "billing_customer_id": customer,
                "billing_platform": billing,
                "hubspot_owner_id": owner,
            }
        )
    )
    return str(company.id)


def hubspot_product(crm: HubSpotCrm, sku: str, price: str) -> str:
    made = crm._client.crm.products.basic_api.create(
        ProductCreate(
            properties={
                "name": "Growth",
                "hs_sku": sku,
                "price": price,
                "recurringbillingfrequency": "monthly",
            }
        )
    )
    time.sleep(
        SEARCH_LAG_S + 0.5
    )  # HubSpot's search index lags writes (the product is found by SKU)
    return str(made.id)


@pytest.fixture
def hubspot(sandbox_urls: dict[str, str]) -> HubSpotCrm:
    crm = build_crm(pair_settings(sandbox_urls, "chargebee", "hubspot", "unused"))
    assert isinstance(crm, HubSpotCrm)
    hubspot_ready(crm)
    return crm


@pytest.fixture
def chargebee(sandbox_urls: dict[str, str]) -> ChargebeeBilling:
    billing = build_billing(pair_settings(sandbox_urls, "chargebee", "hubspot", "unused"))
    assert isinstance(billing, ChargebeeBilling)
    return billing


@pytest.fixture
def policy_dir(tmp_path: Path, uid: str) -> Path:
    src = Path(__file__).resolve().parents[2] / "policies" / "expansion.yaml"
    (tmp_path / "expansion.yaml").write_text(src.read_text())
    (tmp_path / "products.yaml").write_text(
        f"products:\n  RB-GROWTH-{uid}:\n    chargebee: growth-{uid}-USD-monthly\n"
    )
    return tmp_path


def test_setup_creates_the_expansion_properties_once(hubspot: HubSpotCrm) -> None:
    """The fixture ran setup: nothing is left to do, and a second run creates nothing."""
    assert setup_plan(hubspot, expansion_properties()) == []
    assert hubspot_ready(hubspot) == []
    have = {p.name for p in hubspot._properties.get_all("deals").results}
    assert {"revbridge_key", "expansion_status", "expansion_recommended_price"} <= have


def test_deal_quote_and_line_once_after_a_committed_then_timed_out_upsert(
    chargebee: ChargebeeBilling,
    hubspot: HubSpotCrm,
    sandbox_urls: dict[str, str],
    policy_dir: Path,
    uid: str,
) -> None:
    url = sandbox_urls["hubspot"]
    product = hubspot_product(hubspot, f"RB-GROWTH-{uid}", "300.00")
    company = hubspot_company(hubspot, f"cus-{uid}", "chargebee")
    account = hubspot.find_account("chargebee", f"cus-{uid}")
    assert account is not None and account.owner_id == "77001"
    acts = ExpansionActivities(chargebee, hubspot, policy_dir)
    arg = growth_upsert(uid, company, account.owner_id)
    # the quote's create, then (on the retry) the line items' batch create: each committed,
    # each answer lost to a timeout
    for path in ("/crm/v3/objects/quotes", "/crm/v3/objects/line_items/batch/create"):
        httpx.post(
            url + "/_sandbox/faults",
            json={"kind": "commit_then_timeout", "method": "POST", "path": path, "delay_s": 4},
        ).raise_for_status()
    for _ in range(2):
        with pytest.raises(Exception):  # noqa: B017 - the call's timeout, classified retryable
            acts.expansion_upsert_records(arg)
    made = acts.expansion_upsert_records(arg)  # Temporal's retry
    again = acts.expansion_upsert_records(arg)  # a rising forecast's update
    assert (again.opportunity_id, again.quote_id) == (made.opportunity_id, made.quote_id)
    assert made.quote_id

    api = hubspot._client.crm
    deals = api.associations.v4.basic_api.get_page("companies", company, "deals").results
    assert [str(d.to_object_id) for d in deals] == [made.opportunity_id]
    deal = api.deals.basic_api.get_by_id(
        made.opportunity_id,
        properties=["dealstage", "dealtype", "hubspot_owner_id", "amount", "pipeline"],
    ).properties
    assert deal["dealstage"] == "qualifiedtobuy" and deal["dealtype"] == "existingbusiness"
    assert deal["hubspot_owner_id"] == "77001" and deal["pipeline"] == "default"
    assert float(deal["amount"]) == 2400.0  # the upgrade's MRR × 12
    quotes = api.associations.v4.basic_api.get_page("deals", made.opportunity_id, "quotes")
    assert [str(q.to_object_id) for q in quotes.results] == [made.quote_id]
    quote = api.quotes.basic_api.get_by_id(made.quote_id, properties=["hs_status", "hs_title"])
    assert quote.properties["hs_status"] == "DRAFT"  # drafted, never sent
    lines = api.associations.v4.basic_api.get_page("quotes", made.quote_id, "line_items")
    assert len(lines.results) == 1
    # the deal has its own line item (a line item belongs to one parent)
    deal_lines = api.associations.v4.basic_api.get_page(
        "deals", made.opportunity_id, "line_items"
    ).results
    assert len(deal_lines) == 1 and deal_lines[0].to_object_id != lines.results[0].to_object_id
    line = api.line_items.basic_api.get_by_id(
        str(lines.results[0].to_object_id), properties=["price", "hs_product_id", "amount"]
    ).properties
    assert float(line["price"]) == 300.0 and line["hs_product_id"] == product
    upserts = [  # this test's quote creates (the portal is shared: others' name their uid)
        r
        for r in httpx.get(url + "/_sandbox/requests").json()["requests"]
        if r["path"] == "/crm/v3/objects/quotes" and r["method"] == "POST" and uid in r["body"]
    ]
    assert len(upserts) == 1 and upserts[0].get("fault") == "commit_then_timeout"

    record = growth_signal(uid, company, made)
    first = acts.expansion_upsert_signal(UpsertSignalInput(record=record))
    second = acts.expansion_upsert_signal(UpsertSignalInput(record=record))
    assert first.id == second.id == made.opportunity_id
    signal = api.deals.basic_api.get_by_id(
        made.opportunity_id,
        properties=["expansion_status", "expansion_confidence", "expansion_days_to_limit"],
    ).properties
    assert signal["expansion_status"] == "Open" and float(signal["expansion_confidence"]) == 97.0
    assert signal["expansion_days_to_limit"] == "20"
    assert (
        acts.expansion_upsert_signal(
            UpsertSignalInput(record=record.model_copy(update={"opportunity_id": None}))
        ).id
        == ""
    )  # assist mode: no deal, no signal record on HubSpot
    link = HubSpotExpansion(hubspot).expansion_of(made.opportunity_id)
    assert link is not None and link.subscription_id == f"sub-{uid}"
    assert link.to_price_id == f"growth-{uid}-USD-monthly" and link.from_price_id == "starter"
    assert link.workflow_id == f"expansion:chargebee:cus-{uid}"

    closed = acts.expansion_close(
        CloseExpansionInput(
            opportunity_id=made.opportunity_id, quote_id=made.quote_id, reason="expired"
        )
    )
    assert closed.closed and not closed.won
    deal = api.deals.basic_api.get_by_id(
        made.opportunity_id, properties=["dealstage", "closed_lost_reason"]
    ).properties
    assert deal["dealstage"] == "closedlost" and deal["closed_lost_reason"] == "RevBridge: expired"
    quote = api.quotes.basic_api.get_by_id(made.quote_id, properties=["hs_status"])
    assert quote.properties["hs_status"] == "REJECTED"
    # a closed deal is never reopened by a later update
    assert acts.expansion_upsert_records(arg).opportunity_closed is True
    state = HubSpotExpansion(hubspot).opportunity_state(made.opportunity_id)
    assert state.closed and not state.won and state.stage == "closedlost"
