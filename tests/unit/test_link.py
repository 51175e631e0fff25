"""``revbridge link`` (issue 13, harm 2): won deals that predate RevBridge are linked to the one
live subscription their customer already has for the same products — nothing is created, a dry
run writes nothing, and anything uncertain is reported, not guessed.

The connectors are small in-memory stand-ins with only the reads ``link`` makes and the one
write it may make (``write_billing_link``): any other call (a create) would be an AttributeError.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from cli.link import render, run_link
from cli.main import parser
from connectors.base import NotFound
from domain.models import BillingCustomer, CrmAccount
from domain.quote import ProductMapping
from domain.records import (
    BillingLink,
    Contact,
    CustomerSnapshot,
    Opportunity,
    OpportunityLine,
    Price,
    Subscription,
)

MAPPING = ProductMapping(products={"PRO": {"stripe": "pro_monthly"}})
SINCE = datetime(2020, 1, 1, tzinfo=UTC)


class Billing:
    name = "stripe"

    def __init__(self, subscriptions: dict[str, list[Subscription]]) -> None:
        self.subs = subscriptions

    def get_price(self, ref: str) -> Price:
        if ref != "pro_monthly":
            raise NotFound("stripe", ref)
        return Price(id="price_pro", unit_amount=10_000, currency="USD")

    def customer_snapshot(self, customer_id: str, invoices: int = 5) -> CustomerSnapshot:
        return CustomerSnapshot(
            customer=BillingCustomer(id=customer_id), subscriptions=self.subs.get(customer_id, [])
        )

    def find_customer_by_crm(self, crm: str, account_id: str) -> BillingCustomer | None:
        return BillingCustomer(id="cus_by_link") if account_id == "001linked" else None

    def find_customers(self, email: str | None, company: str | None) -> list[BillingCustomer]:
        return [BillingCustomer(id="cus_by_email", email=email)] if email == "ann@b.test" else []


class Crm:
    name = "salesforce"

    def __init__(self, deals: list[Opportunity]) -> None:
        self.deals = {d.id: d for d in deals}
        self.written: list[BillingLink] = []

    def won_opportunities(self, since: datetime, limit: int = 200) -> list[str]:
        return list(self.deals)

    def get_opportunity(self, opportunity_id: str) -> Opportunity:
        return self.deals[opportunity_id]

    def write_billing_link(self, link: BillingLink) -> None:
        self.written.append(link)


def deal(opp_id: str, account: str, **kw: object) -> Opportunity:
    return Opportunity(
        id=opp_id,
        name=opp_id,
        stage="Closed Won",
        won=True,
        account=CrmAccount(id=account, name=account),
        lines=[OpportunityLine(id="l1", product_code="PRO", quantity=5)],
        **{"close_date": date(2024, 6, 1), **kw},  # type: ignore[arg-type]
    )


def sub(sub_id: str, customer: str, status: str = "active") -> Subscription:
    return Subscription(
        id=sub_id, customer_id=customer, status=status, plan="price_pro", quantity=5, mrr=50_000
    )


@pytest.fixture
def world() -> tuple[Billing, Crm]:
    billing = Billing(
        {
            "cus_by_link": [
                sub("sub_old", "cus_by_link"),
                sub("sub_gone", "cus_by_link", "canceled"),
            ],
            "cus_by_email": [sub("sub_a", "cus_by_email"), sub("sub_b", "cus_by_email")],
        }
    )
    crm = Crm(
        [
            deal("006linked", "001linked"),
            deal("006done", "001x", billing_subscription_id="sub_x"),
            deal("006two", "001y", contacts=[Contact(id="c", name="Ann", email="ann@b.test")]),
            deal("006nobody", "001z"),
            deal("006new", "001linked", close_date=date(2026, 3, 1)),
        ]
    )
    return billing, crm


def test_a_dry_run_reports_and_writes_nothing(world: tuple[Billing, Crm]) -> None:
    billing, crm = world
    plans = run_link(billing, crm, MAPPING, SINCE, dry_run=True, go_live=date(2026, 1, 1))  # type: ignore[arg-type]
    verdicts = {p.opportunity_id: (p.verdict, p.subscription_id) for p in plans}
    assert verdicts == {
        "006linked": ("link", "sub_old"),  # the cancelled one does not count
        "006done": ("linked already", None),
        "006two": ("ambiguous", None),
        "006nobody": ("no customer", None),
        "006new": ("after go-live", None),
    }
    assert crm.written == []
    text = render(plans, dry_run=True)
    assert "006linked: would link customer cus_by_link subscription sub_old" in text
    assert text.endswith("5 won deal(s); 1 would link; nothing created.")


def test_link_writes_the_one_certain_link_and_twice_is_the_same(
    world: tuple[Billing, Crm],
) -> None:
    billing, crm = world
    for _ in range(2):
        run_link(billing, crm, MAPPING, SINCE, dry_run=False, go_live=date(2026, 1, 1))  # type: ignore[arg-type]
    first, second = crm.written
    assert first == second  # a field set: the second run writes the same values
    assert (first.opportunity_id, first.customer_id, first.subscription_id) == (
        "006linked",
        "cus_by_link",
        "sub_old",
    )
    assert (first.account_id, first.billing, first.mrr) == ("001linked", "stripe", 50_000)


def test_the_command_is_wired_with_dry_run() -> None:
    args = parser().parse_args(["link", "--dry-run", "--since", "2024-01-01"])
    assert args.dry_run and args.since == date(2024, 1, 1) and args.fn.__name__ == "cmd_link"


def test_the_catch_up_skips_deals_closed_before_go_live(world: tuple[Billing, Crm]) -> None:
    from pathlib import Path

    from activities.quote import QuoteActivities

    billing, crm = world
    acts = QuoteActivities(billing, crm, Path("unused"), go_live=date(2026, 1, 1))  # type: ignore[arg-type]
    assert acts._before_go_live("006linked")  # closed 2024-06-01
    assert not acts._before_go_live("006new")  # closed 2026-03-01
    assert QuoteActivities(billing, crm, Path("unused"), go_live=None).go_live is None  # type: ignore[arg-type]
