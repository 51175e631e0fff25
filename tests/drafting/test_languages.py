"""The customer's language (issue 22): the reviewed reminder templates in every language the policy
allows as shipped (en, fr, de, es), the fallback in the customer's language — a refused French
model draft is replaced by the French template — and English only when the language is unknown or
not allowed. The language comes from the billing customer's locale field, read through each
platform's official client against its sandbox (Chargebee ``locale``, Stripe
``preferred_locales``, Recurly ``preferred_locale``; Zuora's account has no language field)."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.drafting import Drafter, ReminderDraftInput
from activities.messaging import MessagingActivities
from connectors.anthropic_llm import AnthropicLlm
from connectors.registry import build_billing
from domain.containment import LlmBudget, LlmBudgets
from domain.decisions import FailureClass
from domain.draft_check import check_draft
from domain.drafts import DraftingPolicy, ReminderFacts, Variant, reminder_check_facts
from domain.messages import TEMPLATE_LANGUAGES, draft_reminder, locale_language
from harness.drivers import drivers
from sandbox.anthropic import AnthropicEmulator, tool_reply
from sandbox.framework import ServerThread
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.contract.targets import BILLING
from tests.pairs import ANTHROPIC_KEY as KEY
from tests.pairs import pair_settings

POLICIES = Path(__file__).parent.parent.parent / "policies"
INVOICE, CUSTOMER, AMOUNT = "INV-2042", "cus_F1R2A3", 12_500
BUDGETS = LlmBudgets(
    per_run=LlmBudget(max_calls=1000, max_input_tokens=10**9, max_output_tokens=10**9),
    per_day=LlmBudget(max_calls=1000, max_input_tokens=10**9, max_output_tokens=10**9),
)
#: a phrase of the English template that must not appear in another language's
ENGLISH = ("We could not collect", "Reminder 1 of", "If you have already paid")


def _template(language: str, tone: str = "friendly", failure=FailureClass.EXPIRED_CARD, n=1):  # noqa: ANN001, ANN202
    return draft_reminder(
        company="Acme SARL",
        invoice_id=INVOICE,
        amount_due=AMOUNT,
        currency="USD",
        failure_class=failure,
        reminder=n,
        reminders=3,
        tone=tone,
        days_left=10,
        language=language,
    )


def test_the_shipped_policy_languages_all_have_templates() -> None:
    from domain.drafts import load_drafting_policy

    allowed = set(load_drafting_policy(POLICIES).languages)
    assert allowed <= set(TEMPLATE_LANGUAGES) and {"en", "fr", "de", "es"} <= allowed


@pytest.mark.parametrize(
    ("language", "tone", "failure", "n"),
    list(
        itertools.product(
            ["fr", "de", "es"], ["friendly", "firm", "formal"], list(FailureClass), [1, 3]
        )
    ),
)
def test_every_localized_template_passes_the_checks_and_speaks_its_language(
    language: str, tone: str, failure: FailureClass, n: int
) -> None:
    t = _template(language, tone, failure, n)
    facts = ReminderFacts(
        customer_id=CUSTOMER,
        invoice_id=INVOICE,
        amount_due=AMOUNT,
        currency="USD",
        failure_class=failure.value,
        segment="SMB",
        tone=tone,
        reminder=n,
        reminders=3,
        days_left=10,
        language=language,
        company="Acme SARL",
    )
    checks = reminder_check_facts(facts, DraftingPolicy())
    assert check_draft(t.body, checks) == [] and check_draft(t.subject, checks) == []
    assert not any(phrase in t.body for phrase in ENGLISH), t.body
    assert INVOICE in t.subject and "125.00 USD" in t.body
    assert t.body != _template("en", tone, failure, n).body


def test_an_unknown_template_language_is_english() -> None:
    assert _template("pt") == _template("en")


@pytest.mark.parametrize(
    ("locale", "language"),
    [("fr-FR", "fr"), ("de_DE", "de"), ("es", "es"), ("EN-us", "en"), ("", None), (None, None)],
)
def test_a_platform_locale_names_a_language(locale: str | None, language: str | None) -> None:
    assert locale_language(locale) == language


@pytest.fixture(scope="module")
def anthropic() -> Iterator[tuple[AnthropicEmulator, AnthropicLlm]]:
    em = AnthropicEmulator(api_key=KEY)
    with ServerThread({em: 0}) as thread:
        llm = AnthropicLlm(api_key=KEY, base_url=thread.urls["anthropic"], max_tokens=600)
        try:
            yield em, llm
        finally:
            llm.close()


def _input(language: str) -> ReminderDraftInput:
    return ReminderDraftInput(
        invoice_id=INVOICE,
        company="Acme SARL",
        amount_due=AMOUNT,
        currency="USD",
        failure_class="expired_card",
        reminder=1,
        reminders=3,
        tone="friendly",
        days_left=10,
        customer_id=CUSTOMER,
        segment="SMB",
        language=language,
    )


def _asked_language(em: AnthropicEmulator) -> str:
    prompt = json.loads(em.ledger[-1]["body"])["messages"][0]["content"]
    return json.loads(prompt.split("Trusted facts:\n", 1)[1].split("\n\n", 1)[0])["language"]


def test_a_refused_french_draft_falls_back_to_the_french_template(anthropic: Any) -> None:
    em, llm = anthropic
    em.clear_script()
    bad = (
        f"Bonjour,\n\nNous n'avons pas pu encaisser 152.00 USD pour la facture {INVOICE}. "
        "Profitez de 20% de remise."
    )
    em.script([tool_reply({"subject": f"Facture {INVOICE}", "body": bad, "language": "fr"})])
    m = MessagingActivities(None, None, Drafter(llm, DraftingPolicy(), BUDGETS))  # type: ignore[arg-type]
    draft = asyncio.run(m.draft_reminder(_input("fr")))
    assert _asked_language(em) == "fr"  # the model was asked in the customer's language
    assert draft.variant is Variant.TEMPLATE and draft.language == "fr"
    assert (draft.subject, draft.body) == (_template("fr").subject, _template("fr").body)
    assert "Nous n'avons pas pu encaisser 125.00 USD" in draft.body
    assert any(r.startswith("amount_not_in_facts") for r in draft.refusals)
    assert draft.hash_ok()


def test_a_good_french_draft_is_sent_in_french(anthropic: Any) -> None:
    em, llm = anthropic
    em.clear_script()
    good = (
        f"Bonjour,\n\nNous n'avons pas pu encaisser 125.00 USD pour la facture {INVOICE}. Merci "
        "de vérifier votre moyen de paiement."
    )
    em.script([tool_reply({"subject": f"Facture {INVOICE}", "body": good, "language": "fr"})])
    m = MessagingActivities(None, None, Drafter(llm, DraftingPolicy(), BUDGETS))  # type: ignore[arg-type]
    draft = asyncio.run(m.draft_reminder(_input("fr")))
    assert (draft.variant, draft.body, draft.language) == (Variant.LLM, good, "fr")


@pytest.mark.parametrize("language", ["pt", ""])
def test_a_language_policy_does_not_allow_is_english_for_model_and_template(
    anthropic: Any, language: str
) -> None:
    em, llm = anthropic
    em.clear_script()
    em.script([tool_reply({"subject": "x", "body": "Hola", "language": "es"})])  # refused
    m = MessagingActivities(None, None, Drafter(llm, DraftingPolicy(), BUDGETS))  # type: ignore[arg-type]
    draft = asyncio.run(m.draft_reminder(_input(language)))
    assert _asked_language(em) == "en"
    assert draft.variant is Variant.TEMPLATE and draft.language == "en"
    assert draft.body == _template("en").body
    assert draft.refusals and draft.refusals[0].startswith("wrong_language")


def test_without_a_model_the_template_is_in_the_customers_language() -> None:
    m = MessagingActivities(None, None)  # type: ignore[arg-type]
    for language in ("fr", "de", "es", "en"):
        draft = asyncio.run(m.draft_reminder(_input(language)))
        assert (draft.body, draft.language, draft.refusals) == (
            _template(language).body,
            language,
            [],
        )
    assert m.drafter.calls == 0


#: how each platform's admin sets a customer's language, through its official client
SET_LOCALE = {
    "chargebee": lambda c, cid: c.client.Customer.update(cid, {"locale": "fr-FR"}),
    "stripe": lambda c, cid: c.client.v1.customers.update(cid, {"preferred_locales": ["fr-FR"]}),
    "recurly": lambda c, cid: c.client.update_account(f"code-{cid}", {"preferred_locale": "fr-FR"}),
}


@pytest.mark.parametrize("spec", [s for s in BILLING if s.name in SET_LOCALE], ids=lambda s: s.name)
def test_the_billing_customers_locale_is_read_as_their_language(spec: Any) -> None:
    customer = DEMO_CUSTOMERS[0]
    with ServerThread({spec.emulator(): 0}) as thread:
        urls = dict.fromkeys(("chargebee", "stripe", "salesforce", "hubspot"), "http://127.0.0.1:9")
        urls[spec.name] = thread.urls[spec.name]
        settings = pair_settings(urls, spec.name, "salesforce", "languages")
        connector = build_billing(settings)
        driver, _ = drivers(settings, connector, None)
        suffix = uuid.uuid4().hex[:6]
        driver.seed((customer,), suffix)
        ids = customer.ids(suffix)
        context = connector.get_invoice_context(ids["invoice"])
        assert context.customer.language is None  # not set: unknown, the template in English
        SET_LOCALE[spec.name](connector, ids["customer"])
        context = connector.get_invoice_context(ids["invoice"])
        assert context.customer.language == "fr"


#: offers and dates a model might write in the other languages (each refused, as in English)
FOREIGN_OFFERS = [
    ("fr", "Nous vous offrons une remise exceptionnelle.", "offer_not_approved: discount"),
    ("fr", "Nous vous accordons un geste commercial.", "offer_not_approved: credit"),
    ("fr", "Nous vous remboursons les frais.", "offer_not_approved: refund"),
    ("fr", "Nous renonçons à cette facture.", "offer_not_approved: waiver"),
    ("fr", "Le mois prochain est gratuit.", "offer_not_approved: free"),
    ("fr", "Payez avant la date limite.", "offer_not_approved: deadline"),
    ("fr", "Payez avant le 1er janvier 2027.", "date_not_in_facts: 2027-01-01"),
    ("de", "Wir gewähren Ihnen einen Rabatt.", "offer_not_approved: discount"),
    ("de", "Sie erhalten eine Gutschrift.", "offer_not_approved: credit"),
    ("de", "Wir erstatten Ihnen den Betrag.", "offer_not_approved: refund"),
    ("de", "Wir verzichten auf die Zahlung.", "offer_not_approved: waiver"),
    ("de", "Der nächste Monat ist kostenlos.", "offer_not_approved: free"),
    ("de", "Bitte zahlen Sie innerhalb von 5 Tagen.", "offer_not_approved: deadline"),
    ("de", "Bitte zahlen Sie bis 3. März 2027.", "date_not_in_facts: 2027-03-03"),
    ("es", "Le ofrecemos un descuento.", "offer_not_approved: discount"),
    ("es", "Añadimos un crédito de cortesía.", "offer_not_approved: credit"),
    ("es", "Le haremos un reembolso.", "offer_not_approved: refund"),
    ("es", "Condonamos la factura.", "offer_not_approved: waiver"),
    ("es", "El próximo mes es gratis.", "offer_not_approved: free"),
    ("es", "Tiene un plazo de una semana.", "offer_not_approved: deadline"),
    ("es", "Pague antes del 2 de mayo de 2027.", "date_not_in_facts: 2027-05-02"),
]


@pytest.mark.parametrize(("language", "sentence", "refusal"), FOREIGN_OFFERS)
def test_offers_and_dates_are_caught_in_every_template_language(
    language: str, sentence: str, refusal: str
) -> None:
    t = _template(language)
    facts = ReminderFacts(
        customer_id=CUSTOMER,
        invoice_id=INVOICE,
        amount_due=AMOUNT,
        currency="USD",
        failure_class="expired_card",
        segment="SMB",
        tone="friendly",
        reminder=1,
        reminders=3,
        days_left=10,
        language=language,
    )
    refusals = [
        r.line()
        for r in check_draft(
            t.body + "\n\n" + sentence, reminder_check_facts(facts, DraftingPolicy())
        )
    ]
    assert any(r.startswith(refusal) for r in refusals), refusals


# --- the CSM note in the customer's language -------------------------------------------------------


def _csm_facts(language: str) -> Any:
    from domain.churn import ChurnScore, ChurnSignals, Factor, Level, Offer, describe, outreach
    from domain.drafts import CsmFacts

    signals = ChurnSignals(
        payment_failures_90d=3,
        usage_drop=0.45,
        mrr=90_000,
        baseline_mrr=120_000,
        days_to_renewal=20,
    )
    factors = [Factor.PAYMENT_FAILURES, Factor.USAGE_DROP, Factor.MRR_DROP, Factor.RENEWAL_SOON]
    result = ChurnScore(
        score=72,
        level=Level.HIGH,
        reasons=[describe(f, signals) for f in factors],
        top_factors=factors,
    )
    offer = Offer(percent=10, months=3)
    template = outreach(result, "Acme SARL", offer)
    return CsmFacts(
        customer_id=CUSTOMER,
        account_name="Acme SARL",
        score=result.score,
        level=result.level.value,
        reasons=result.reasons,
        talking_points=[line[2:] for line in template.splitlines() if line.startswith("- ")],
        offer_percent=offer.percent,
        offer_months=offer.months,
        language=language,
        template=template,
    )


@pytest.mark.parametrize("language", ["fr", "de", "es"])
def test_the_csm_note_is_written_in_the_customers_language_with_the_same_figures(
    language: str,
) -> None:
    from domain.drafts import csm_check_facts, csm_template

    facts = _csm_facts(language)
    note = csm_template(facts)
    english = facts.template
    for hook in facts.talking_points:  # every talking point and reason has its words
        assert hook not in note
    assert "failed payment" not in note and "month over month" not in note
    for figure in ("72/100", "3 ", "45%", "25%", "1,200.00 → 900.00", "20 ", "10%", "3 "):
        assert figure in note and figure in english
    assert check_draft(note, csm_check_facts(facts, DraftingPolicy())) == []
    assert csm_template(_csm_facts("en")) == english  # English: the churn rules' own text


def test_a_refused_french_csm_note_falls_back_to_the_french_rules_note(anthropic: Any) -> None:
    from activities.drafting import CsmDraftInput, DraftingActivities
    from domain.drafts import DraftKind, csm_template

    em, llm = anthropic
    em.clear_script()
    em.script(
        [
            tool_reply(
                {
                    "subject": "Risque de churn",
                    "body": "Risque 72/100. Offrez-leur une remise de 30% pour les garder.",
                    "language": "fr",
                }
            )
        ]
    )
    facts = _csm_facts("fr")
    acts = DraftingActivities(
        Drafter(llm, DraftingPolicy(llm_kinds=[DraftKind.CSM_OUTREACH]), BUDGETS)
    )
    draft = asyncio.run(
        acts.draft_csm_outreach(CsmDraftInput(**facts.model_dump(), subject="Churn risk"))
    )
    assert _asked_language(em) == "fr"
    assert draft.variant is Variant.TEMPLATE and draft.language == "fr"
    assert draft.body == csm_template(facts) and "Points à aborder" in draft.body
    assert any(r.startswith("percent_not_approved: 30%") for r in draft.refusals), draft.refusals
