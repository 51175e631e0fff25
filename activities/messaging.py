"""The email channel as activities: drafting and sending over SMTP.

A draft is the reviewed template first. With a model configured (``REVBRIDGE_REASONER=anthropic``)
and ``policies/drafting.yaml`` allowing it, :class:`~activities.drafting.Drafter` may replace it
with a model's draft that passed every containment check (``domain.drafts``), else the template
goes out with the reasons the model's draft was refused. Without a model no model is called: the
dunning workflow runs the draft as a local activity, as fast as before. Every draft carries the
SHA-256 of its subject and body; a send that names one (an approved draft) re-checks it here,
before anything goes to the relay. Sending takes the billing
contact from what this process read with the run's invoice context (``activities.billing
.CONTACTS``), so addresses never enter history and the context is not read again; only a process
that did not read it asks billing. The idempotency key becomes the Message-ID (see
connectors/email.py).
"""

from __future__ import annotations

from temporalio import activity

from activities.billing import CONTACTS
from activities.drafting import Drafter, ReminderDraftInput
from activities.errors import vendor_errors
from activities.models import SendEmailInput, SendEmailResult
from activities.writes import writes
from connectors.base import BillingPlatform
from connectors.email import Email, SmtpMailer
from domain.decisions import FailureClass
from domain.drafts import DraftedMessage, draft_sha256
from domain.messages import TEMPLATE_LANGUAGES, draft_reminder


class SendDraftInput(SendEmailInput):
    """A send of a reviewed draft: ``sha256`` is the hash the approval bound; the text must still
    hash to it, or nothing is sent."""

    sha256: str = ""


class MessagingActivities:
    def __init__(
        self, billing: BillingPlatform, mailer: SmtpMailer | None, drafter: Drafter | None = None
    ) -> None:
        self.billing = billing
        self.mailer = mailer
        self.drafter = drafter or Drafter(None)

    @activity.defn(name="draft_reminder")
    async def draft_reminder(self, input: ReminderDraftInput) -> DraftedMessage:
        # the customer's language when policy writes in it (else English); the template in it
        # when we have its words (domain.messages.TEMPLATE_LANGUAGES), else English
        language = self.drafter.language_for(input.language)
        written = language if language in TEMPLATE_LANGUAGES else "en"
        input = input.model_copy(update={"language": language, "template_language": written})
        template = draft_reminder(
            company=input.company,
            invoice_id=input.invoice_id,
            amount_due=input.amount_due,
            currency=input.currency,
            failure_class=FailureClass(input.failure_class),
            reminder=input.reminder,
            reminders=input.reminders,
            tone=input.tone,
            days_left=input.days_left,
            language=written,
        )
        return await self.drafter.reminder(input, template)

    @writes
    @activity.defn(name="send_email")
    @vendor_errors
    def send_email(self, input: SendDraftInput) -> SendEmailResult:
        bound = getattr(input, "sha256", "")  # direct callers may pass a plain SendEmailInput
        if bound and draft_sha256(input.subject, input.body) != bound:
            # never a near miss: the approved text or nothing
            return SendEmailResult(sent=False, reason="the text is not the approved draft")
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
