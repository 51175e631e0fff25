"""Pure quote-to-cash planning and matching: the mapping file, the plan a won deal becomes, and
the ranking of existing customers a person picks from."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from domain.matching import company_tokens, name_similarity, rank_candidates
from domain.models import BillingCustomer, CrmAccount
from domain.quote import (
    ProductMapping,
    effective_discount,
    net_term_days,
    plan_subscription,
    price_problems,
    unmapped_products,
)
from domain.records import Opportunity, OpportunityLine, Price
from sandbox.scenarios import CATALOG

PRODUCTS = Path(__file__).resolve().parents[2] / "policies" / "products.yaml"
TODAY = date(2026, 3, 1)


def opp(*lines: OpportunityLine, terms: str | None = None, period: str = "month") -> Opportunity:
    return Opportunity(
        id="006A",
        name="Acme renewal",
        stage="Closed Won",
        won=True,
        account=CrmAccount(id="001A", name="Acme"),
        lines=list(lines),
        close_date=TODAY,
        payment_terms=terms,
        billing_period=period,
    )


def line(code: str, qty: int, price: int, discount: float = 0) -> OpportunityLine:
    return OpportunityLine(
        id=f"l-{code}", product_code=code, quantity=qty, unit_price=price, discount_percent=discount
    )


def prices(billing: str = "chargebee") -> dict[str, Price]:
    out = {}
    for p in CATALOG:
        ref = p.chargebee_item_price if billing == "chargebee" else p.stripe_lookup_key
        out[ref] = Price(id=f"id-{ref}", unit_amount=p.unit_price, currency="USD")
    return out


def test_the_shipped_mapping_covers_the_billing_catalogue_and_not_the_legacy_product() -> None:
    mapping = ProductMapping.parse(PRODUCTS.read_text())
    for product in CATALOG:
        cb, st = (mapping.price_for(product.code, b) for b in ("chargebee", "stripe"))
        if product.in_billing:
            assert (cb, st) == (product.chargebee_item_price, product.stripe_lookup_key)
        else:
            assert cb is None and st is None


def test_unknown_and_unpriced_products_are_reported_per_code() -> None:
    mapping = ProductMapping.parse(PRODUCTS.read_text())
    deal = opp(line("RB-CORE", 1, 50_000), line("RB-LEGACY", 1, 9_900))
    assert set(unmapped_products(deal, mapping, "stripe")) == {"RB-LEGACY"}
    catalogue = prices("stripe")
    del catalogue["core_monthly"]
    assert price_problems(deal, mapping, "stripe", catalogue) == {
        "RB-CORE": "stripe has no price core_monthly"
    }


def test_a_standard_deal_plans_list_prices_with_no_custom_terms() -> None:
    mapping = ProductMapping.parse(PRODUCTS.read_text())
    deal = opp(line("RB-CORE", 1, 50_000, 10), line("RB-SEAT", 10, 4_000, 10), terms="Net 30")
    plan = plan_subscription(deal, mapping, "chargebee", prices(), TODAY)
    assert [(x.price_id, x.quantity, x.unit_amount) for x in plan.lines] == [
        ("id-core-USD-monthly", 1, None),
        ("id-seat-USD-monthly", 10, None),
    ]
    assert plan.discount_percent == 10
    assert plan.mrr == round(90_000 * 0.9)
    assert plan.net_term_days == 30 and not plan.custom_terms
    assert plan.start_date is None  # closed today: starts now


def test_price_override_custom_payment_terms_and_billing_cycle_are_non_standard() -> None:
    mapping = ProductMapping.parse(PRODUCTS.read_text())
    deal = opp(line("RB-SEAT", 5, 3_500), terms="Net 90", period="year")
    plan = plan_subscription(deal, mapping, "stripe", prices("stripe"), TODAY)
    assert plan.lines[0].unit_amount == 3_500  # what was sold is what is billed
    assert plan.mrr == 17_500
    assert plan.net_term_days == 90
    assert len(plan.custom) == 3 and "price override on RB-SEAT" in plan.terms


def test_weighted_discount_and_payment_terms() -> None:
    assert effective_discount([line("A", 1, 1000, 50), line("B", 1, 3000, 0)]) == 12.5
    assert effective_discount([]) == 0
    assert net_term_days("Net 45") == 45 and net_term_days(None) is None
    assert net_term_days("Due on receipt") == 0
    with pytest.raises(ValueError):
        net_term_days("whenever")


def test_company_names_compare_without_case_punctuation_or_legal_suffixes() -> None:
    assert company_tokens("Globex Corp.") == ["globex"]
    assert name_similarity("Globex Corporation", "globex corp") == 1.0
    assert name_similarity("Northwind Analytics", "Northwind Analytics GmbH") == 1.0
    assert name_similarity("Northwind", "Northwind Analytics") >= 0.85
    assert name_similarity("Initech", "Globex") < 0.5


def test_candidates_rank_exact_email_then_name_then_domain_and_drop_the_unrelated() -> None:
    customers = [
        BillingCustomer(id="c-other", company="Initech"),
        BillingCustomer(id="c-name", company="Acme Robotics Inc"),
        BillingCustomer(id="c-email", company="ACME Holdings"),
        BillingCustomer(id="c-domain", company="Roadrunner", metadata={"email": "x@acme.io"}),
    ]
    ranked = rank_candidates(
        "Acme Robotics", "jane@acme.io", customers, exact_email_ids=frozenset({"c-email"})
    )
    assert [c.customer_id for c in ranked] == ["c-email", "c-name", "c-domain"]
    assert ranked[0].reasons[0] == "same contact email"
    assert "same email domain" in ranked[2].reasons
    # a free-mail domain says nothing about the company
    assert [c.customer_id for c in rank_candidates("Roadrunner Ltd", "j@gmail.com", customers)] == [
        "c-domain"
    ]
