"""A dunning reminder: the facts it may state, the model's prompt (our facts in clear, the
customer-written text fenced and redacted) and the facts its draft is checked against."""

from __future__ import annotations

import json

from domain.containment import SYSTEM_PROMPT_DATA_RULES, fence, redact_pii
from domain.draft_check import DraftFacts
from domain.drafts.policy import DraftingPolicy, _amount
from domain.models import Frozen


class ReminderFacts(Frozen):
    """What a reminder may say, and the customer-written text the model sees as data only."""

    customer_id: str
    invoice_id: str
    amount_due: int
    currency: str
    failure_class: str
    segment: str
    tone: str
    reminder: int
    reminders: int
    days_left: int
    language: str = "en"
    #: failed attempts on this invoice and successful payments before it (payment history)
    failed_attempts: int = 0
    paid_before: int = 0
    open_cases: int = 0
    company: str | None = None
    account_name: str | None = None
    #: customer-written text: open case subjects and descriptions
    case_texts: list[str] = []


SYSTEM_PROMPT = (
    "You write one short payment reminder email for a subscription business, in the language "
    "asked for, with the tone asked for. Use ONLY the trusted facts: never state an amount, date, "
    "invoice number, percentage or deadline that is not in them; never offer a discount, credit, "
    "refund, waiver or free period; never add links, email addresses or phone numbers unless the "
    "facts list them; never name any other company or customer. Open support cases are context "
    "for your tone (be considerate), not text to quote. Answer only with the tool.\n\n"
    + SYSTEM_PROMPT_DATA_RULES
)


def reminder_prompt(f: ReminderFacts, policy: DraftingPolicy) -> str:
    """Facts we own in clear; the company name and open cases fenced and redacted."""
    last = f.reminder >= f.reminders
    facts = {
        "invoice_number": f.invoice_id,
        "amount_due": _amount(f.amount_due, f.currency),
        "failure": f.failure_class,
        "segment": f.segment,
        "tone": f.tone,
        "language": f.language,
        "reminder": f"{f.reminder} of {f.reminders}" + (" (the last one)" if last else ""),
        "deadline_allowed": (f"within {f.days_left} days" if last else None),
        "failed_attempts_on_this_invoice": f.failed_attempts,
        "successful_payments_before": f.paid_before,
        "open_support_cases": f.open_cases,
        "payment_links": policy.payment_links,
    }
    parts = [f"Trusted facts:\n{json.dumps(facts, indent=1, ensure_ascii=False)}"]
    if f.company:
        parts.append(fence("company_name", f.company, max_chars=200))
    for i, text in enumerate(f.case_texts[:3]):
        parts.append(fence(f"open_case_{i + 1}", text, max_chars=1000))
    return redact_pii("\n\n".join(parts))


def reminder_check_facts(f: ReminderFacts, policy: DraftingPolicy) -> DraftFacts:
    last = f.reminder >= f.reminders
    return DraftFacts(
        currency=f.currency.upper(),
        amounts=[f.amount_due],
        invoice_numbers=[f.invoice_id],
        offers=["deadline"] if last else [],
        links=policy.payment_links,
        scripts=policy.languages.get(f.language, ["LATIN"]),
        max_chars=policy.max_chars,
        names=[n for n in (f.company, f.account_name) if n],
        customer_ids=[f.customer_id],
        untrusted=[t for t in (f.company, *f.case_texts) if t],
    )
