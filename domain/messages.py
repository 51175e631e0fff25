"""Dunning messages drafted from reviewed templates: tone by segment, wording by failure class and
by how far along the schedule is. Pure (no I/O), so a draft is reproducible from its inputs.

Customer-controlled text (company names) is data: it is inserted, never interpreted, and trimmed.
The draft carries no card data and no email address; the address is added by the email channel.
"""

from __future__ import annotations

from domain.decisions import FailureClass
from domain.models import Frozen


class MessageDraft(Frozen):
    subject: str
    body: str


_ASK = {
    FailureClass.EXPIRED_CARD: "The card on file has expired. Please add a current card so we "
    "can collect the payment.",
    FailureClass.INSUFFICIENT_FUNDS: "The bank declined the payment for insufficient funds. We "
    "will try again shortly; you can also pay now by another method.",
    FailureClass.HARD_DECLINE: "The bank declined the payment and will keep declining it. Please "
    "use a different payment method.",
    FailureClass.TECHNICAL: "A technical problem stopped the payment. We will retry it for you; "
    "there is nothing you need to do unless the retry fails.",
    FailureClass.UNKNOWN: "We could not collect the payment. Please check the payment method "
    "on file, or reply and we will help.",
}

_OPENERS = {
    "friendly": ("Hi {name},", "Thanks for being with us."),
    "firm": ("Hello {name},", "This needs your attention."),
    "formal": ("Dear {name} team,", "We are writing about your account."),
}


def _clean(text: str, limit: int = 80) -> str:
    # a name is data: one line, no control characters, bounded
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return flat[:limit] or "there"


def draft_reminder(
    *,
    company: str | None,
    invoice_id: str,
    amount_due: int,
    currency: str,
    failure_class: FailureClass,
    reminder: int,
    reminders: int,
    tone: str,
    days_left: int,
) -> MessageDraft:
    """Reminder ``reminder`` of ``reminders`` for an unpaid invoice."""
    name = _clean(company or "there")
    greeting, context = _OPENERS.get(tone, _OPENERS["friendly"])
    amount = f"{amount_due / 100:,.2f} {currency.upper()}"
    last = reminder >= reminders
    subject = (
        f"Final reminder: invoice {invoice_id} ({amount}) is past due"
        if last
        else f"Payment for invoice {invoice_id} ({amount}) did not go through"
    )
    closing = (
        f"This is our last reminder. Without payment within {days_left} days the account "
        "moves to collections review."
        if last
        else "If you have already paid, please ignore this message."
    )
    body = "\n\n".join(
        [
            greeting.format(name=name),
            context,
            f"We could not collect {amount} for invoice {invoice_id}. "
            + _ASK.get(failure_class, _ASK[FailureClass.UNKNOWN]),
            closing,
            f"(Reminder {reminder} of {reminders}.)",
        ]
    )
    return MessageDraft(subject=subject, body=body)
