"""An account's one-line health summary on the CRM record: its facts, the rules line (in the
account's language where we have the words), the model's prompt and the checks."""

from __future__ import annotations

import json

from domain.containment import SYSTEM_PROMPT_DATA_RULES, fence, redact_pii
from domain.draft_check import DraftFacts, facts_from_text
from domain.drafts.policy import DraftingPolicy, _amount
from domain.models import Frozen

#: a health line is one line on the CRM account: at most this many characters
MAX_HEALTH_CHARS = 240
HEALTH_SUBJECT = "Account health"


HEALTH_SYSTEM_PROMPT = (
    "You write the one-line account health summary a CRM shows on a customer's record: plan, "
    "revenue, tenure, payment reliability, open dunning, usage trend and churn risk, in plain "
    f"words, ONE line of at most {MAX_HEALTH_CHARS} characters, no line break, in the language "
    "asked for. Use ONLY the trusted facts: every figure (amount, percentage, number of months or "
    "invoices) must be one of theirs, written as they write it; never offer or suggest a "
    "discount, credit, refund, waiver, free period or deadline; no links, email addresses or "
    "phone numbers; never name any other company or customer. Answer only with the tool: the "
    f"subject is the words '{HEALTH_SUBJECT}', the body is the line.\n\n" + SYSTEM_PROMPT_DATA_RULES
)


class HealthFacts(Frozen):
    """What an account's health line may say (the account-sync health profile's figures). Every
    field but the customer ID is optional: an unknown figure is left out of the line."""

    customer_id: str
    #: the CRM account's name (customer-controlled: fenced in the prompt)
    account_name: str | None = None
    #: the plan (catalog) ID or name
    plan: str | None = None
    #: monthly recurring revenue, minor units of ``currency``
    mrr: int | None = None
    currency: str = "USD"
    tenure_months: int | None = None
    #: share of payment attempts that succeeded, in percent (0-100); shown rounded
    payment_success_rate: float | None = None
    #: invoices in dunning now
    open_dunning: int = 0
    #: "rising" | "flat" | "falling" (other words are shown as given)
    usage_trend: str | None = None
    #: the churn level ("low" | "medium" | "high")
    churn_level: str | None = None
    language: str = "en"


_HEALTH_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "mrr": "{amount} MRR",
        "tenure": "customer for {n} months",
        "tenure1": "customer for 1 month",
        "paid": "{p}% of payments succeeded",
        "dunning0": "nothing in dunning",
        "dunning1": "1 invoice in dunning",
        "dunning": "{n} invoices in dunning",
        "usage": "usage {trend}",
        "churn": "churn risk {level}",
        "rising": "rising",
        "flat": "flat",
        "falling": "falling",
        "low": "low",
        "medium": "medium",
        "high": "high",
    },
    "fr": {
        "mrr": "MRR {amount}",
        "tenure": "client depuis {n} mois",
        "tenure1": "client depuis 1 mois",
        "paid": "{p}% des paiements réussis",
        "dunning0": "aucune relance en cours",
        "dunning1": "1 facture en relance",
        "dunning": "{n} factures en relance",
        "usage": "usage {trend}",
        "churn": "risque de churn {level}",
        "rising": "en hausse",
        "flat": "stable",
        "falling": "en baisse",
        "low": "faible",
        "medium": "moyen",
        "high": "élevé",
    },
    "de": {
        "mrr": "MRR {amount}",
        "tenure": "Kunde seit {n} Monaten",
        "tenure1": "Kunde seit 1 Monat",
        "paid": "{p}% der Zahlungen erfolgreich",
        "dunning0": "kein Mahnverfahren offen",
        "dunning1": "1 Rechnung im Mahnverfahren",
        "dunning": "{n} Rechnungen im Mahnverfahren",
        "usage": "Nutzung {trend}",
        "churn": "Abwanderungsrisiko {level}",
        "rising": "steigend",
        "flat": "stabil",
        "falling": "fallend",
        "low": "niedrig",
        "medium": "mittel",
        "high": "hoch",
    },
    "es": {
        "mrr": "MRR {amount}",
        "tenure": "cliente desde hace {n} meses",
        "tenure1": "cliente desde hace 1 mes",
        "paid": "{p}% de los pagos con éxito",
        "dunning0": "nada en cobro",
        "dunning1": "1 factura en cobro",
        "dunning": "{n} facturas en cobro",
        "usage": "uso {trend}",
        "churn": "riesgo de baja {level}",
        "rising": "al alza",
        "flat": "estable",
        "falling": "a la baja",
        "low": "bajo",
        "medium": "medio",
        "high": "alto",
    },
}


def health_language(f: HealthFacts) -> str:
    """The language the rules line is written in: the account's, or English."""
    return f.language if f.language in _HEALTH_WORDS else "en"


def health_rules_line(f: HealthFacts) -> str:
    """The rules health line (the default and the fallback), in the account's language when we
    have its words (English otherwise): the known figures joined by " · ", one line."""
    words = _HEALTH_WORDS[health_language(f)]
    parts: list[str] = []
    if f.plan:
        parts.append(" ".join(f.plan.split())[:60])
    if f.mrr is not None:
        parts.append(words["mrr"].format(amount=_amount(f.mrr, f.currency)))
    if f.tenure_months is not None:
        key = "tenure1" if f.tenure_months == 1 else "tenure"
        parts.append(words[key].format(n=f.tenure_months))
    if f.payment_success_rate is not None:
        parts.append(words["paid"].format(p=round(f.payment_success_rate)))
    n = f.open_dunning
    parts.append(words["dunning0" if n == 0 else "dunning1" if n == 1 else "dunning"].format(n=n))
    if f.usage_trend:
        parts.append(words["usage"].format(trend=words.get(f.usage_trend, f.usage_trend)))
    if f.churn_level:
        parts.append(words["churn"].format(level=words.get(f.churn_level, f.churn_level)))
    return " · ".join(parts)[:MAX_HEALTH_CHARS]


def health_prompt(f: HealthFacts, line: str) -> str:
    """Our figures and the rules line in clear; the account name fenced; PII redacted."""
    facts = {
        "plan": f.plan,
        "mrr": _amount(f.mrr, f.currency) if f.mrr is not None else None,
        "tenure_months": f.tenure_months,
        "payment_success_percent": (
            round(f.payment_success_rate) if f.payment_success_rate is not None else None
        ),
        "invoices_in_dunning": f.open_dunning,
        "usage_trend": f.usage_trend,
        "churn_risk": f.churn_level,
        "language": f.language,
        "rules_line": line,
    }
    parts = [f"Trusted facts:\n{json.dumps(facts, indent=1, ensure_ascii=False)}"]
    if f.account_name:
        parts.append(fence("account_name", f.account_name, max_chars=200))
    return redact_pii("\n\n".join(parts))


def health_check_facts(f: HealthFacts, line: str, policy: DraftingPolicy) -> DraftFacts:
    """Every figure of the line must be one of the facts' (amounts, percentages, and every other
    number too: a health line has no figure of its own), one line, no offer."""
    numbers: list[float] = [float(f.open_dunning)]
    if f.tenure_months is not None:
        numbers.append(float(f.tenure_months))
    percents: list[float] = []
    if f.payment_success_rate is not None:
        percents += sorted({float(round(f.payment_success_rate)), f.payment_success_rate})
    base = DraftFacts(
        currency=f.currency.upper(),
        amounts=[f.mrr] if f.mrr is not None else [],
        percents=percents,
        numbers=numbers + percents,
        one_line=True,
        scripts=policy.languages.get(f.language, ["LATIN"]),
        max_chars=MAX_HEALTH_CHARS,
        names=[f.account_name] if f.account_name else [],
        customer_ids=[f.customer_id],
        untrusted=[f.account_name] if f.account_name else [],
    )
    return facts_from_text(line, base)
