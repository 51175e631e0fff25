"""Activities against the configured billing platform (vendor-neutral names)."""

from __future__ import annotations

from temporalio import activity

from activities.errors import vendor_errors
from activities.models import (
    AddBillingNoteInput,
    ApplyCreditInput,
    CancelSubscriptionInput,
    GetInvoiceContextInput,
    RetryPaymentInput,
    WriteResult,
)
from activities.writes import writes
from connectors.base import BillingPlatform
from domain.models import InvoiceContext, PaymentAttempt


class BillingActivities:
    def __init__(self, billing: BillingPlatform) -> None:
        self.billing = billing

    @activity.defn(name="get_invoice_context")
    @vendor_errors
    def get_invoice_context(self, input: GetInvoiceContextInput) -> InvoiceContext:
        ctx = self.billing.get_invoice_context(input.invoice_id)
        # the contact's address is PII: it stays out of history (the email activity looks it up)
        customer = ctx.customer.model_copy(update={"email": None})
        return ctx.model_copy(update={"customer": customer})

    @writes
    @activity.defn(name="cancel_subscription")
    @vendor_errors
    def cancel_subscription(self, input: CancelSubscriptionInput) -> WriteResult:
        status = self.billing.cancel_subscription(
            input.subscription_id, input.idempotency_key, input.reason
        )
        return WriteResult(id=f"{input.subscription_id}:{status}")

    @writes
    @activity.defn(name="add_billing_note")
    @vendor_errors
    def add_billing_note(self, input: AddBillingNoteInput) -> WriteResult:
        note_id = self.billing.add_note(
            input.target, input.target_id, input.entry.as_text(), idempotency_key=input.entry.key
        )
        return WriteResult(id=note_id)

    @writes
    @activity.defn(name="retry_payment")
    @vendor_errors
    def retry_payment(self, input: RetryPaymentInput) -> PaymentAttempt:
        return self.billing.retry_payment(input.invoice_id, input.idempotency_key)

    @writes
    @activity.defn(name="apply_credit")
    @vendor_errors
    def apply_credit(self, input: ApplyCreditInput) -> WriteResult:
        credit_id = self.billing.apply_credit(
            input.customer_id, input.amount, input.currency, input.reason, input.idempotency_key
        )
        return WriteResult(id=credit_id)
