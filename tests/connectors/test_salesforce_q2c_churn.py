"""The Salesforce connector's quote-to-cash, churn and support-context methods, through
simple-salesforce against the emulator (which plays the org: products, price books, line items,
contact roles, roll-ups). Setup goes through the scenario driver or the emulator's seed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.salesforce import SalesforceCrm
from domain.records import BillingLink, ChurnScoreRecord
from domain.settings import SalesforceSettings
from harness.drivers import SalesforceDriver
from sandbox.framework import ServerThread
from sandbox.salesforce import SalesforceEmulator
from sandbox.salesforce.schema import make_id

SINCE = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SalesforceEmulator, str]]:
    em = SalesforceEmulator(client_id="app", client_secret="s3cret")
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["salesforce"]


@pytest.fixture
def em(server: tuple[SalesforceEmulator, str]) -> SalesforceEmulator:
    """A fresh org for every test (issued tokens stay valid across a reset)."""
    httpx.post(server[1] + "/_sandbox/reset").raise_for_status()
    return server[0]


@pytest.fixture(scope="module")
def crm(server: tuple[SalesforceEmulator, str]) -> SalesforceCrm:
    url = server[1]
    return SalesforceCrm(
        SalesforceSettings(
            token_url=url + "/services/oauth2/token",
            client_id="app",
            client_secret=SecretStr("s3cret"),
        ),
        timeout_s=5,
    )


@pytest.fixture
def driver(
    server: tuple[SalesforceEmulator, str], em: SalesforceEmulator, crm: SalesforceCrm
) -> SalesforceDriver:
    return SalesforceDriver(server[1], crm)


def seed(em: SalesforceEmulator, records: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    return em.seed({"records": records})["refs"]


def missing_id(prefix: str) -> str:
    """A well-formed ID of the right object that no record has."""
    return make_id(prefix, 987_654)


# --- quote-to-cash ---------------------------------------------------------------------------------


def test_get_opportunity_reads_lines_terms_contacts_and_the_account_link(
    driver: SalesforceDriver, crm: SalesforceCrm
) -> None:
    driver.seed_catalog()
    driver.seed_catalog()  # idempotent: nothing new the second time
    assert len(crm.query("SELECT Id FROM Product2")) == 4
    assert len(crm.query("SELECT Id FROM PricebookEntry")) == 4
    account_id = driver.create_account("Acme", "Enterprise", "cus_acme", "chargebee")
    opp_id = driver.create_opportunity(
        account_id,
        "Acme - platform",
        [("RB-CORE", 1, 50_000, 0), ("RB-SEAT", 25, 3_600, 10.0), ("RB-SUPPORT", 2, 20_000, 0)],
        term_months=24,
        payment_terms="Net 45",
        contact_email="jane.doe@acme.example",
    )
    crm.client.Opportunity.update(opp_id, {"Start_Date__c": "2024-07-01"})

    opp = crm.get_opportunity(opp_id)

    assert (opp.id, opp.name, opp.won) == (opp_id, "Acme - platform", False)
    assert opp.stage == "Negotiation/Review"
    assert (opp.term_months, opp.payment_terms) == (24, "Net 45")
    assert opp.start_date == date(2024, 7, 1) and opp.close_date == date.today()
    assert opp.currency == "USD" and opp.billing_subscription_id is None
    by_code = {line.product_code: line for line in opp.lines}
    assert sorted(by_code) == ["RB-CORE", "RB-SEAT", "RB-SUPPORT"]
    seat = by_code["RB-SEAT"]
    assert (seat.quantity, seat.unit_price, seat.list_price, seat.discount_percent) == (
        25,
        3_600,
        4_000,  # the catalogue price, from the standard price book
        10.0,
    )
    assert seat.name == "Seat" and seat.id.startswith("00k")
    assert (by_code["RB-SUPPORT"].quantity, by_code["RB-SUPPORT"].unit_price) == (2, 20_000)
    # the org rolls the lines up into Amount: 500 + 25 × 36 × 0.9 + 2 × 200
    assert opp.amount == 50_000 + 81_000 + 40_000
    assert [(c.name, c.email) for c in opp.contacts] == [("Jane Doe", "jane.doe@acme.example")]
    assert opp.account is not None
    assert (opp.account.id, opp.account.name, opp.account.tier.value) == (
        account_id,
        "Acme",
        "Enterprise",
    )
    assert (opp.account.billing_customer_id, opp.account.billing_platform) == (
        "cus_acme",
        "chargebee",
    )


def test_get_opportunity_defaults_and_contact_fallback(
    em: SalesforceEmulator, crm: SalesforceCrm
) -> None:
    refs = seed(
        em,
        {
            "Account": [{"Ref": "a", "Name": "Solo"}],
            "Contact": [
                {"LastName": "First", "Email": "first@solo.example", "AccountId": "@a"},
                {"LastName": "Second", "AccountId": "@a"},
            ],
            "Opportunity": [
                {
                    "Ref": "o",
                    "Name": "Solo deal",
                    "StageName": "Closed Won",
                    "CloseDate": "2024-06-30",
                    "AccountId": "@a",
                    "Amount": 1200,
                }
            ],
        },
    )
    opp = crm.get_opportunity(refs["o"])
    assert opp.won and opp.lines == [] and opp.amount == 120_000
    assert opp.start_date == opp.close_date == date(2024, 6, 30)  # no Start_Date__c: the close date
    assert opp.term_months == 12 and opp.payment_terms is None
    # no contact roles: the account's contacts, oldest first
    assert [c.name for c in opp.contacts] == ["First", "Second"]
    assert opp.account is not None and opp.account.billing_customer_id is None


def test_get_opportunity_not_found(em: SalesforceEmulator, crm: SalesforceCrm) -> None:
    for bad_id in (missing_id("006"), "not-an-id", missing_id("001")):
        with pytest.raises(NotFound) as err:
            crm.get_opportunity(bad_id)
        assert err.value.kind is ErrorKind.PERMANENT and err.value.code == "not_found"


def test_won_opportunities_since_oldest_first_with_limit(
    em: SalesforceEmulator, crm: SalesforceCrm
) -> None:
    def opp(ref: str, stage: str, modified: datetime) -> dict[str, Any]:
        return {
            "Ref": ref,
            "Name": ref,
            "StageName": stage,
            "CloseDate": "2024-05-01",
            "CreatedDate": "2024-04-01T00:00:00Z",
            "LastModifiedDate": modified.isoformat(),
        }

    refs = seed(
        em,
        {
            "Opportunity": [
                opp("late", "Closed Won", SINCE + timedelta(minutes=30)),
                opp("before", "Closed Won", SINCE - timedelta(seconds=1)),
                opp("open", "Negotiation/Review", SINCE + timedelta(minutes=10)),
                opp("at", "Closed Won", SINCE),
                opp("lost", "Closed Lost", SINCE + timedelta(minutes=20)),
                opp("soon", "Closed Won", SINCE + timedelta(seconds=5)),
            ]
        },
    )
    expected = [refs["at"], refs["soon"], refs["late"]]
    assert crm.won_opportunities(SINCE) == expected
    assert crm.won_opportunities(SINCE, limit=2) == expected[:2]
    # the same instant written another way: naive (taken as UTC) and with an offset
    assert crm.won_opportunities(SINCE.replace(tzinfo=None)) == expected
    plus_two = timezone(timedelta(hours=2))
    assert crm.won_opportunities(SINCE.astimezone(plus_two)) == expected
    assert crm.won_opportunities(SINCE + timedelta(hours=1)) == []


def _link_fixture(em: SalesforceEmulator) -> dict[str, str]:
    return seed(
        em,
        {
            "Account": [{"Ref": "a", "Name": "Linked Co", "Customer_Tier__c": "Mid-Market"}],
            "Opportunity": [
                {
                    "Ref": "o",
                    "Name": "Linked deal",
                    "StageName": "Closed Won",
                    "CloseDate": "2024-05-01",
                    "AccountId": "@a",
                }
            ],
        },
    )


def test_write_billing_link_then_unlink(
    em: SalesforceEmulator, crm: SalesforceCrm, driver: SalesforceDriver
) -> None:
    refs = _link_fixture(em)
    link = BillingLink(
        account_id=refs["a"],
        opportunity_id=refs["o"],
        billing="stripe",
        customer_id="cus_123",
        subscription_id="sub_456",
        mrr=151_000,
        status="active",
    )
    crm.write_billing_link(link)
    crm.write_billing_link(link)  # a retry: the same field values, no error

    account, opp = driver.account(refs["a"]), driver.opportunity(refs["o"])
    assert {k: account[k] for k in _ACCOUNT_LINK} == {
        "Billing_Customer_Id__c": "cus_123",
        "Billing_Platform__c": "stripe",
        "Billing_Subscription_Id__c": "sub_456",
        "MRR__c": 1510.0,
        "Billing_Status__c": "active",
    }
    assert {k: opp[k] for k in _OPP_LINK} == {
        "Billing_Subscription_Id__c": "sub_456",
        "MRR__c": 1510.0,
        "Billing_Status__c": "active",
    }
    found = crm.find_account("stripe", "cus_123")
    assert found is not None and found.id == refs["a"]
    assert (found.billing_customer_id, found.billing_platform) == ("cus_123", "stripe")
    assert crm.get_opportunity(refs["o"]).billing_subscription_id == "sub_456"

    crm.write_billing_link(
        link.model_copy(
            update={"customer_id": None, "subscription_id": None, "status": "rolled back: x"}
        )
    )
    account, opp = driver.account(refs["a"]), driver.opportunity(refs["o"])
    assert {k: account[k] for k in _ACCOUNT_LINK} == {
        "Billing_Customer_Id__c": None,
        "Billing_Platform__c": None,
        "Billing_Subscription_Id__c": None,
        "MRR__c": None,
        "Billing_Status__c": "rolled back: x",
    }
    assert {k: opp[k] for k in _OPP_LINK} == {
        "Billing_Subscription_Id__c": None,
        "MRR__c": None,
        "Billing_Status__c": "rolled back: x",
    }
    assert crm.find_account("stripe", "cus_123") is None


_ACCOUNT_LINK = (
    "Billing_Customer_Id__c",
    "Billing_Platform__c",
    "Billing_Subscription_Id__c",
    "MRR__c",
    "Billing_Status__c",
)
_OPP_LINK = ("Billing_Subscription_Id__c", "MRR__c", "Billing_Status__c")


def test_write_billing_link_is_all_or_none(
    em: SalesforceEmulator, crm: SalesforceCrm, driver: SalesforceDriver
) -> None:
    refs = _link_fixture(em)
    link = BillingLink(
        account_id=refs["a"],
        opportunity_id=missing_id("006"),
        billing="chargebee",
        customer_id="cb_1",
        subscription_id="sub_1",
        status="active",
    )
    with pytest.raises(NotFound):
        crm.write_billing_link(link)
    assert driver.account(refs["a"])["Billing_Customer_Id__c"] is None  # rolled back

    # a customer ID another account already holds: a permanent refusal, nothing written
    other = seed(em, {"Account": [{"Ref": "b", "Name": "Taken", "Billing_Customer_Id__c": "cb_9"}]})
    taken = link.model_copy(update={"opportunity_id": refs["o"], "customer_id": "cb_9"})
    with pytest.raises(ConnectorError) as err:
        crm.write_billing_link(taken)
    assert err.value.kind is ErrorKind.PERMANENT and err.value.code == "DUPLICATE_VALUE"
    assert driver.opportunity(refs["o"])["Billing_Subscription_Id__c"] is None
    assert other["b"] != refs["a"]


def test_write_billing_link_server_error_is_retryable(
    server: tuple[SalesforceEmulator, str], em: SalesforceEmulator, crm: SalesforceCrm
) -> None:
    refs = _link_fixture(em)
    url = server[1]
    crm.get_account(refs["a"])  # a token first, so the fault hits the collection call
    httpx.post(
        url + "/_sandbox/faults",
        json={"kind": "status", "status": 503, "path": r".*/composite/sobjects", "times": 1},
    ).raise_for_status()
    try:
        with pytest.raises(ConnectorError) as err:
            crm.write_billing_link(
                BillingLink(
                    account_id=refs["a"],
                    opportunity_id=refs["o"],
                    billing="chargebee",
                    customer_id="cb_1",
                    subscription_id="sub_1",
                    status="active",
                )
            )
        assert err.value.kind is ErrorKind.RETRYABLE
    finally:
        httpx.delete(url + "/_sandbox/faults")


# --- churn and support context -------------------------------------------------------------------


def test_get_account(em: SalesforceEmulator, crm: SalesforceCrm) -> None:
    refs = seed(
        em,
        {
            "Account": [
                {
                    "Ref": "a",
                    "Name": "Globex",
                    "Customer_Tier__c": "Strategic",
                    "Billing_Customer_Id__c": "cus_g",
                    "Billing_Platform__c": "chargebee",
                },
                {"Ref": "b", "Name": "Unlinked"},
            ]
        },
    )
    account = crm.get_account(refs["a"])
    assert (account.id, account.name, account.tier.value) == (refs["a"], "Globex", "Strategic")
    assert (account.billing_customer_id, account.billing_platform) == ("cus_g", "chargebee")
    assert account.owner_id and account.owner_id.startswith("005")
    plain = crm.get_account(refs["b"])
    assert plain.tier.value == "SMB" and plain.billing_customer_id is None
    with pytest.raises(NotFound):
        crm.get_account(missing_id("001"))


def test_write_churn_score(
    em: SalesforceEmulator, crm: SalesforceCrm, driver: SalesforceDriver
) -> None:
    refs = seed(em, {"Account": [{"Ref": "a", "Name": "Initech"}]})
    record = ChurnScoreRecord(
        account_id=refs["a"],
        score=72,
        level="high",
        reasons=["3 failed payments in 30 days", "usage down 40%"],
        narrative="Payments keep failing while usage falls.",
        scored_at=datetime(2024, 5, 2, 9, 30, tzinfo=UTC),
    )
    crm.write_churn_score(record)
    crm.write_churn_score(record)  # a field set: writing twice changes nothing
    account = driver.account(refs["a"])
    assert account["Churn_Risk__c"] == 72.0
    assert account["Churn_Level__c"] == "high"
    assert account["Churn_Reasons__c"] == "3 failed payments in 30 days\nusage down 40%"
    assert account["Churn_Narrative__c"] == "Payments keep failing while usage falls."
    assert account["Churn_Scored_At__c"] == "2024-05-02T09:30:00.000+0000"

    with pytest.raises(ConnectorError) as err:  # the org's restricted picklist refuses it
        crm.write_churn_score(record.model_copy(update={"level": "extreme"}))
    assert err.value.kind is ErrorKind.PERMANENT
    assert err.value.code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    with pytest.raises(NotFound):
        crm.write_churn_score(record.model_copy(update={"account_id": missing_id("001")}))


def test_get_case_with_and_without_an_account(
    em: SalesforceEmulator, crm: SalesforceCrm, driver: SalesforceDriver
) -> None:
    refs = seed(em, {"Account": [{"Ref": "a", "Name": "Umbrella"}]})
    with_account = driver.open_case(refs["a"], "Invoice looks wrong", "Charged twice?")
    orphan = driver.open_case(None, "Who am I billed by?")
    case = crm.get_case(with_account)
    assert (case.id, case.account_id, case.subject, case.status) == (
        with_account,
        refs["a"],
        "Invoice looks wrong",
        "New",
    )
    assert case.number and case.number.isdigit()
    assert case.opened_at is not None and case.opened_at.tzinfo is not None
    assert abs(datetime.now(UTC) - case.opened_at) < timedelta(minutes=1)
    bare = crm.get_case(orphan)
    assert bare.account_id is None and bare.subject == "Who am I billed by?"
    with pytest.raises(NotFound):
        crm.get_case(missing_id("500"))


def test_annotate_case_is_idempotent(
    server: tuple[SalesforceEmulator, str],
    em: SalesforceEmulator,
    crm: SalesforceCrm,
    driver: SalesforceDriver,
) -> None:
    case_id = driver.open_case(None, "Billing question")
    text = "Plan: Core × 1. Last invoice INV-9 paid 2024-05-01. No open dunning."
    assert crm.annotate_case(case_id, text, "rb-key-1") == case_id
    assert crm.annotate_case(case_id, text, "rb-key-1") == case_id
    assert em.get_record(case_id)["Billing_Context__c"] == text  # type: ignore[index]
    # one value on one case: nothing else was created
    assert len(em.records("Case")) == 1 and em.records("AI_Agent_Log__c") == []
    long = "x" * 40_000  # longer than the Long Text Area: cut, not refused
    crm.annotate_case(case_id, long, "rb-key-2")
    assert len(em.get_record(case_id)["Billing_Context__c"]) == 32_768  # type: ignore[index]
    with pytest.raises(NotFound):
        crm.annotate_case(missing_id("500"), text, "rb-key-3")


def test_open_cases_carry_opened_at_newest_first(
    em: SalesforceEmulator, crm: SalesforceCrm
) -> None:
    refs = seed(
        em,
        {
            "Account": [{"Ref": "a", "Name": "Hooli"}],
            "Case": [
                {"Subject": "older", "AccountId": "@a", "CreatedDate": "2024-04-01T08:00:00Z"},
                {"Subject": "newer", "AccountId": "@a", "CreatedDate": "2024-04-03T08:00:00Z"},
                {
                    "Subject": "closed",
                    "AccountId": "@a",
                    "Status": "Closed",
                    "CreatedDate": "2024-04-04T08:00:00Z",
                },
            ],
        },
    )
    cases = crm.open_cases(refs["a"])
    assert [(c.subject, c.opened_at) for c in cases] == [
        ("newer", datetime(2024, 4, 3, 8, tzinfo=UTC)),
        ("older", datetime(2024, 4, 1, 8, tzinfo=UTC)),
    ]
