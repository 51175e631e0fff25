"""The email channel as activities: drafting (from reviewed templates) and sending over SMTP.

Drafts are deterministic templates for either reasoner: the LLM may classify and propose, but the
words a customer reads are reviewed text (containment: nothing a model writes reaches a customer
unreviewed); the dunning workflow runs the draft as a local activity. Sending takes the billing
contact from what this process read with the run's invoice context (``activities.billing
.CONTACTS``), so addresses never enter history and the context is not read again; only a process
that did not read it asks billing. The idempotency key becomes the Message-ID (see
connectors/email.py).
"""

from __future__ import annotations

from temporalio import activity

from activities.billing import CONTACTS
from activities.errors import vendor_errors
from activities.models import DraftReminderInput, SendEmailInput, SendEmailResult
from activities.writes import writes
from connectors.base import BillingPlatform
from connectors.email import Email, SmtpMailer
from domain.decisions import FailureClass
from domain.messages import MessageDraft, draft_reminder


class MessagingActivities:
    def __init__(self, billing: BillingPlatform, mailer: SmtpMailer | None) -> None:
        self.billing = billing
        self.mailer = mailer

    @activity.defn(name="draft_reminder")
    def draft_reminder(self, input: DraftReminderInput) -> MessageDraft:
        return draft_reminder(
            company=input.company,
            invoice_id=input.invoice_id,
            amount_due=input.amount_due,
            currency=input.currency,
            failure_class=FailureClass(input.failure_class),
            reminder=input.reminder,
            reminders=input.reminders,
            tone=input.tone,
            days_left=input.days_left,
        )

    @writes
    @activity.defn(name="send_email")
    @vendor_errors
    def send_email(self, input: SendEmailInput) -> SendEmailResult:
        if self.mailer is None:
            return SendEmailResult(sent=False, reason="no mail relay configured")
        known, to = CONTACTS.get(input.invoice_id)
        if not known:
            to = self.billing.get_invoice_context(input.invoice_id, payments=1).customer.email
            CONTACTS.remember(input.invoice_id, to)
        if not to:
            return SendEmailResult(sent=False, reason="the billing contact has no email address")
        message_id = self.mailer.send(
            Email(key=input.key, to=to, subject=input.subject, body=input.body)
        )
        return SendEmailResult(sent=True, message_id=message_id)
