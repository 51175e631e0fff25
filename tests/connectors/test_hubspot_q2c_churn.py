"""HubSpot connector, quote-to-cash / churn / support methods, through the official client against
the HubSpot sandbox. Scenarios are set up the way the outside world would (``HubSpotDriver``: the
product library, a company, a deal with line items and a contact, a rep winning it, a ticket)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import hubspot
import pytest
from hubspot.crm.deals import SimplePublicObjectInput as DealUpdate
from pydantic import SecretStr

from connectors.base import NotFound
from connectors.hubspot import HubSpotCrm, note_text
from domain.models import CustomerTier
from domain.records import BillingLink, ChurnScoreRecord
from domain.settings import HubSpotSettings
from harness.drivers import HubSpotDriver
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.hubspot.emulator import SEARCH_LAG_S

TOKEN = "pat-test-hubspot-q2c"
SEAT_LIST = 4_000  # sandbox.scenarios.CATALOG RB-SEAT, cents


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[HubSpotEmulator, str]]:
    em = HubSpotEmulator(access_token=TOKEN)
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["hubspot"]


@pytest.fixture
def hs(servers: tuple[HubSpotEmulator, str]) -> HubSpotEmulator:
    em = servers[0]
    em.reset_state()
    with em.lock:
        em.faults.clear()
    return em


@pytest.fixture
def url(servers: tuple[HubSpotEmulator, str], hs: HubSpotEmulator) -> str:
    return servers[1]


@pytest.fixture
def crm(url: str) -> HubSpotCrm:
    return HubSpotCrm(HubSpotSettings(access_token=SecretStr(TOKEN), api_url=url), timeout_s=5)


@pytest.fixture
def driver(url: str) -> HubSpotDriver:
    d = HubSpotDriver(url, TOKEN)
    d.seed_catalog()
    return d


@pytest.fixture
def raw(url: str) -> hubspot.HubSpot:
    return hubspot.HubSpot(access_token=TOKEN, host=url, base_url=url, retry=False)


def won_deal(driver: HubSpotDriver, account_id: str, name: str = "Deal") -> str:
    deal = driver.create_opportunity(account_id, name, [("RB-CORE", 1, 50_000, 0)])
    driver.win(deal)
    return deal


# --- quote-to-cash ---------------------------------------------------------------------------------


def test_get_opportunity_reads_lines_terms_contacts_and_account(
    crm: HubSpotCrm, driver: HubSpotDriver, raw: hubspot.HubSpot
) -> None:
    account = driver.create_account("Acme Corp", "Enterprise", "cus_acme", "chargebee")
    deal = driver.create_opportunity(
        account,
        "Acme - platform",
        [
            ("RB-CORE", 1, 50_000, 0),
            ("RB-SEAT", 25, 3_600, 10.0),  # sold below list, and 10 % off on top
            ("RB-CUSTOM", 2, 1_250, 0),  # not in the product library
        ],
        term_months=24,
        payment_terms="Net 45",
        contact_email="buyer@acme.test",
    )
    raw.crm.deals.basic_api.update(deal, DealUpdate(properties={"start_date": "2025-03-01"}))

    opp = crm.get_opportunity(deal)

    assert (opp.id, opp.name, opp.stage, opp.won) == (
        deal,
        "Acme - platform",
        "contractsent",
        False,
    )
    assert opp.term_months == 24 and opp.payment_terms == "Net 45"
    assert opp.start_date == date(2025, 3, 1) and opp.close_date == datetime.now(UTC).date()
    assert opp.currency == "USD" and opp.billing_period == "month"
    assert opp.amount == 50_000 + 81_000 + 2_500  # 25 × 36.00 × 0.9 = 810.00
    assert opp.billing_subscription_id is None
    assert opp.account is not None
    assert (opp.account.id, opp.account.name, opp.account.tier) == (
        account,
        "Acme Corp",
        CustomerTier.ENTERPRISE,
    )
    assert (opp.account.billing_customer_id, opp.account.billing_platform) == (
        "cus_acme",
        "chargebee",
    )
    assert [(c.email, c.name) for c in opp.contacts] == [("buyer@acme.test", "Buyer Buyer")]
    lines = {line.product_code: line for line in opp.lines}
    assert set(lines) == {"RB-CORE", "RB-SEAT", "RB-CUSTOM"}
    seat = lines["RB-SEAT"]
    assert (seat.quantity, seat.unit_price, seat.list_price, seat.discount_percent) == (
        25,
        3_600,
        SEAT_LIST,
        10.0,
    )
    assert seat.name == "Seat"  # copied from the product
    core = lines["RB-CORE"]
    assert (core.quantity, core.unit_price, core.list_price, core.discount_percent) == (
        1,
        50_000,
        50_000,
        0,
    )
    custom = lines["RB-CUSTOM"]
    assert (custom.quantity, custom.unit_price, custom.list_price) == (2, 1_250, None)

    driver.win(deal)
    won = crm.get_opportunity(deal)
    assert won.won and won.stage == "closedwon"


def test_get_opportunity_not_found(crm: HubSpotCrm, hs: HubSpotEmulator) -> None:
    with pytest.raises(NotFound):
        crm.get_opportunity("987654")


def test_get_opportunity_without_company_or_lines(crm: HubSpotCrm, raw: hubspot.HubSpot) -> None:
    from hubspot.crm.deals import SimplePublicObjectInputForCreate as DealCreate

    deal = raw.crm.deals.basic_api.create(DealCreate(properties={"dealname": "Bare"}))
    opp = crm.get_opportunity(deal.id)
    assert opp.account is None and opp.lines == [] and opp.contacts == []
    assert opp.term_months == 12 and opp.payment_terms is None and opp.amount == 0


def test_won_opportunities_since_only_won_oldest_first_with_limit(
    crm: HubSpotCrm, driver: HubSpotDriver, raw: hubspot.HubSpot
) -> None:
    account = driver.create_account("Initech")
    before = won_deal(driver, account, "before")
    time.sleep(0.02)
    since = datetime.now(UTC)
    time.sleep(0.02)
    first = won_deal(driver, account, "first")
    time.sleep(0.01)
    second = won_deal(driver, account, "second")
    driver.create_opportunity(account, "still open", [("RB-SEAT", 1, 4_000, 0)])
    time.sleep(SEARCH_LAG_S + 0.1)  # the catch-up searches: writes show once indexed

    assert crm.won_opportunities(since) == [first, second]
    assert crm.won_opportunities(since, limit=1) == [first]
    assert crm.won_opportunities(since - timedelta(seconds=60)) == [before, first, second]

    time.sleep(0.01)
    raw.crm.deals.basic_api.update(before, DealUpdate(properties={"description": "renewal"}))
    time.sleep(SEARCH_LAG_S + 0.1)
    assert crm.won_opportunities(since) == [first, second, before]  # now the latest modified
    assert crm.won_opportunities(datetime.now(UTC) + timedelta(seconds=5)) == []


def test_write_billing_link_links_then_unlinks_both_records(
    crm: HubSpotCrm, driver: HubSpotDriver
) -> None:
    account = driver.create_account("Globex")
    deal = won_deal(driver, account)
    link = BillingLink(
        account_id=account,
        opportunity_id=deal,
        billing="stripe",
        customer_id="cus_G1",
        subscription_id="sub_G1",
        mrr=123_450,
        status="active",
    )
    crm.write_billing_link(link)
    crm.write_billing_link(link)  # a retried activity: the same field set, harmless

    company, opp = driver.account(account), driver.opportunity(deal)
    assert (company["billing_customer_id"], company["billing_platform"]) == ("cus_G1", "stripe")
    assert (company["billing_subscription_id"], company["mrr"], company["billing_status"]) == (
        "sub_G1",
        "1234.50",
        "active",
    )
    assert (opp["billing_subscription_id"], opp["mrr"], opp["billing_status"]) == (
        "sub_G1",
        "1234.50",
        "active",
    )
    assert crm.get_opportunity(deal).billing_subscription_id == "sub_G1"
    found = crm.find_account("stripe", "cus_G1")
    assert found is not None and found.id == account and found.billing_customer_id == "cus_G1"

    unlink = link.model_copy(
        update={"customer_id": None, "subscription_id": None, "status": "rolled back: no price"}
    )
    crm.write_billing_link(unlink)
    crm.write_billing_link(unlink)

    company, opp = driver.account(account), driver.opportunity(deal)
    for field in ("billing_customer_id", "billing_platform", "billing_subscription_id", "mrr"):
        assert company[field] is None, field
    assert opp["billing_subscription_id"] is None and opp["mrr"] is None
    assert company["billing_status"] == opp["billing_status"] == "rolled back: no price"
    assert crm.find_account("stripe", "cus_G1") is None
    assert crm.get_opportunity(deal).billing_subscription_id is None


# --- churn and support context ---------------------------------------------------------------------


def test_get_account_with_and_without_billing_link(crm: HubSpotCrm, driver: HubSpotDriver) -> None:
    linked = driver.create_account("Hooli", "Strategic", "cus_H", "chargebee")
    plain = driver.create_account("Pied Piper")
    a = crm.get_account(linked)
    assert (a.id, a.name, a.tier, a.billing_customer_id, a.billing_platform) == (
        linked,
        "Hooli",
        CustomerTier.STRATEGIC,
        "cus_H",
        "chargebee",
    )
    b = crm.get_account(plain)
    assert b.tier == CustomerTier.SMB and b.billing_customer_id is None
    with pytest.raises(NotFound):
        crm.get_account("424242")


def test_write_churn_score_sets_the_company_fields(crm: HubSpotCrm, driver: HubSpotDriver) -> None:
    account = driver.create_account("Umbrella")
    at = datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
    record = ChurnScoreRecord(
        account_id=account,
        score=72,
        level="high",
        reasons=["2 failed payments in 30 days", "usage down 40%"],
        narrative="Payments failing & usage <dropping>.",
        scored_at=at,
    )
    crm.write_churn_score(record)
    crm.write_churn_score(record)
    company = driver.account(account)
    assert company["churn_risk"] == "72" and company["churn_level"] == "high"
    assert company["churn_reasons"].split("\n") == record.reasons
    assert company["churn_narrative"] == record.narrative
    assert company["churn_scored_at"] == "2025-05-06T07:08:09.000Z"

    crm.write_churn_score(record.model_copy(update={"score": 10, "level": "low", "reasons": []}))
    company = driver.account(account)
    assert (company["churn_risk"], company["churn_level"], company["churn_reasons"]) == (
        "10",
        "low",
        None,
    )


def test_get_case_with_and_without_an_account(crm: HubSpotCrm, driver: HubSpotDriver) -> None:
    account = driver.create_account("Stark")
    started = datetime.now(UTC) - timedelta(seconds=1)
    on_account = driver.open_case(account, "Invoice question", "Why was I charged twice?")
    orphan = driver.open_case(None, "Login broken")

    case = crm.get_case(on_account)
    assert (case.id, case.number, case.account_id, case.subject, case.status) == (
        on_account,
        on_account,
        account,
        "Invoice question",
        "New",
    )
    assert case.opened_at is not None and started <= case.opened_at <= datetime.now(UTC)
    bare = crm.get_case(orphan)
    assert bare.account_id is None and bare.subject == "Login broken"
    with pytest.raises(NotFound):
        crm.get_case("31337")


def test_annotate_case_is_idempotent_by_key(
    crm: HubSpotCrm, driver: HubSpotDriver, raw: hubspot.HubSpot
) -> None:
    account = driver.create_account("Wayne")
    ticket = driver.open_case(account, "Card declined")
    text = "Plan: Core ×1\nLast invoice INV-9: paid <ok> & done"

    first = crm.annotate_case(ticket, text, "case:hubspot:1:billing-context")
    again = crm.annotate_case(ticket, text, "case:hubspot:1:billing-context")
    assert again == first

    notes = crm.associated("tickets", [ticket], "notes")[ticket]
    assert notes == [first]  # one note, however often the activity ran
    assert crm.associated("notes", [first], "companies") == {first: [account]}
    note = raw.crm.objects.notes.basic_api.get_by_id(first, properties=["hs_note_body"])
    assert note_text(note.properties["hs_note_body"]) == text  # escaped, newline kept

    other = crm.annotate_case(ticket, "refreshed", "case:hubspot:1:billing-context-2")
    assert other != first
    assert sorted(crm.associated("tickets", [ticket], "notes")[ticket]) == sorted([first, other])

    orphan = driver.open_case(None, "No company")
    lone = crm.annotate_case(orphan, "context", "case:hubspot:2:billing-context")
    assert crm.associated("notes", [lone], "tickets") == {lone: [orphan]}
    assert crm.associated("notes", [lone], "companies") == {}
    with pytest.raises(NotFound):
        crm.annotate_case("55555", "x", "case:hubspot:3:billing-context")


def test_open_cases_carry_opened_at(crm: HubSpotCrm, driver: HubSpotDriver) -> None:
    account = driver.create_account("Cyberdyne")
    older = driver.open_case(account, "First")
    time.sleep(0.01)
    newer = driver.open_case(account, "Second")
    cases = crm.open_cases(account)
    assert [c.id for c in cases] == [newer, older]
    assert all(c.opened_at is not None for c in cases)
    assert cases[0].opened_at >= cases[1].opened_at  # type: ignore[operator]
    assert crm.get_case(older).opened_at == cases[1].opened_at
