"""Containment for drafted text (domain/draft_check.py): a faithful draft passes; each way a
model can overstep — a wrong figure, an invented offer, a foreign link, someone's phone number,
an ambiguous date, another alphabet — is refused with its reason."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.draft_check import DraftCode, DraftFacts, check_draft

FACTS = DraftFacts(
    currency="USD",
    amounts=[129_900],
    dates=[date(2026, 12, 1), date(2026, 12, 14)],
    invoice_numbers=["INV-1042"],
    links=["https://pay.example-billing.com/hosted/"],
    contacts=["ap@globex.example"],
)

GOOD = (
    "Hello Globex team, the payment of $1,299.00 for invoice INV-1042, due on December 1, 2026, "
    "did not go through. You can update your card at "
    "https://pay.example-billing.com/hosted/abc123 — we will try again on 2026-12-14. "
    "Questions? Reply to this email or write to ap@globex.example."
)


def codes(text: str, facts: DraftFacts = FACTS) -> list[DraftCode]:
    return [r.code for r in check_draft(text, facts)]


def test_a_faithful_draft_passes() -> None:
    assert check_draft(GOOD, FACTS) == []


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("The balance of $1,300.00 is overdue.", DraftCode.AMOUNT),  # rounded up
        ("The balance of 1299.00 EUR is overdue.", DraftCode.AMOUNT),  # wrong currency
        ("Invoice INV-1043 is overdue.", DraftCode.INVOICE),  # another invoice
        ("We will retry on 2026-12-15.", DraftCode.DATE),  # a shifted date
        ("We will retry on 15 December 2026.", DraftCode.DATE),
        ("We will retry on 12/14/2026.", DraftCode.DATE),  # ambiguous for half the world
        ("As a thank-you, take 20% off your next invoice.", DraftCode.PERCENT),
        ("We can offer a discount if you pay today.", DraftCode.OFFER),
        ("We have issued a refund for the failed charge.", DraftCode.OFFER),
        ("We will waive the late fee this time.", DraftCode.OFFER),
        ("Enjoy a free month on us.", DraftCode.OFFER),
        ("Pay within 24 hours or your account will be closed.", DraftCode.OFFER),
        ("Pay here: https://evil.example/pay", DraftCode.LINK),
        ("Pay here: https://pay.example-billing.com.evil.example/hosted/x", DraftCode.LINK),
        ("Call our CFO on +1 415 555 0199.", DraftCode.CONTACT),
        ("Write to jane.doe@initech.example instead.", DraftCode.CONTACT),
        ("Оплатите счёт сегодня.", DraftCode.SCRIPT),
        ("", DraftCode.EMPTY),
    ],
)
def test_each_overstep_is_refused_with_its_reason(text: str, code: DraftCode) -> None:
    assert code in codes(text)


def test_an_offer_policy_approved_may_be_stated() -> None:
    facts = FACTS.model_copy(update={"offers": ["credit"], "percents": [5.0], "amounts": [129_900, 6_495]})  # fmt: skip
    text = "We have added a courtesy credit to your account of $64.95 (5% of the invoice)."
    assert check_draft(text, facts) == []
    assert DraftCode.OFFER in codes(text)  # not approved: refused


def test_too_long_is_refused() -> None:
    assert DraftCode.LENGTH in codes("Please pay. " * 300)


def test_every_refusal_is_one_short_line() -> None:
    text = "Pay $5 at https://evil.example now, 99% off, call +44 20 7946 0958, invoice ZZZ-999."
    lines = [r.line() for r in check_draft(text, FACTS)]
    assert len(lines) >= 4 and all("\n" not in line and len(line) < 160 for line in lines)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=1, max_value=10**7).filter(lambda n: n != 129_900))
def test_no_other_amount_slips_through(minor: int) -> None:
    text = f"Your balance is ${minor // 100:,}.{minor % 100:02d} today."
    assert DraftCode.AMOUNT in codes(text)
