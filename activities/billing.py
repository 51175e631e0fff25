"""Activities against the configured billing platform (vendor-neutral names), and the dunning
catch-up's two steps: what billing says happened since a watermark, and the runs it concerns."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import timedelta

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.errors import vendor_errors
from activities.models import (
    SIGNAL_RISK_CONTEXT,
    AddBillingNoteInput,
    ApplyCreditInput,
    CancelSubscriptionInput,
    GetBillingCustomerInput,
    GetInvoiceContextInput,
    RetryPaymentInput,
    SignalChurnInput,
    SignalChurnResult,
    WriteResult,
)
from activities.writes import writes
from connectors.base import BillingPlatform, ConnectorError, ErrorKind
from domain import churn
from domain import temporal as names
from domain.dunning import (
    WORKFLOW_TYPE,
    BillingChanges,
    BillingChangesInput,
    CatchUpRuns,
    CatchUpRunsInput,
    DunningInput,
)
from domain.ids import churn_workflow_id, dunning_workflow_id
from domain.models import BillingCustomer, InvoiceContext, PaymentAttempt
from domain.starts import start_options

RPC_TIMEOUT = timedelta(seconds=10)


class Contacts:
    """The billing contact's address of recently read invoices, in this process's memory only.

    Addresses are PII and never enter workflow history, so ``send_email`` used to read the whole
    invoice context again for one address. The context activity remembers it here instead; the
    email activity takes it from here, and reads billing again only on a miss (another worker
    process read the context, or this one restarted)."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._by_invoice: OrderedDict[str, str | None] = OrderedDict()

    def remember(self, invoice_id: str, email: str | None) -> None:
        with self._lock:
            self._by_invoice[invoice_id] = email
            self._by_invoice.move_to_end(invoice_id)
            while len(self._by_invoice) > self._size:
                self._by_invoice.popitem(last=False)

    def get(self, invoice_id: str) -> tuple[bool, str | None]:
        """(known, address): ``known`` False means this process has not read the invoice."""
        with self._lock:
            if invoice_id not in self._by_invoice:
                return False, None
            return True, self._by_invoice[invoice_id]


#: one per worker process, shared by the billing and messaging activities
CONTACTS = Contacts()


class BillingActivities:
    def __init__(self, billing: BillingPlatform) -> None:
        self.billing = billing

    @activity.defn(name="get_invoice_context")
    @vendor_errors
    def get_invoice_context(self, input: GetInvoiceContextInput) -> InvoiceContext:
        later = getattr(self.billing, "invoice_context_customer_later", None)
        if input.failure is not None and later is not None:
            # the invoice alone (Recurly: its account in brief); the run reads the customer
            # after the case where the context says so (``customer_later``; issue 15)
            ctx = later(input.invoice_id).model_copy(update={"recent_payments": [input.failure]})
        elif input.failure is not None:
            # the event carried the declined attempt: the invoice and customer alone (issue 15)
            ctx = self.billing.get_invoice_context(input.invoice_id, payments=0)
            ctx = ctx.model_copy(update={"recent_payments": [input.failure]})
        else:
            ctx = self.billing.get_invoice_context(input.invoice_id)
        # the contact's address is PII: it stays out of history; the email activity finds it in
        # this process's memory (CONTACTS) instead of reading the context again
        CONTACTS.remember(input.invoice_id, ctx.customer.email)
        customer = ctx.customer.model_copy(update={"email": None})
        return ctx.model_copy(update={"customer": customer})

    @activity.defn(name="get_billing_customer")
    @vendor_errors
    def get_billing_customer(self, input: GetBillingCustomerInput) -> BillingCustomer:
        """The customer of a context read with ``customer_later``, after the case (issue 15):
        tenure, language and CRM link; the contact's address kept in this process (CONTACTS),
        out of history."""
        read = getattr(self.billing, "billing_customer", None)
        if read is not None:
            customer = read(input.customer_id)
        else:
            customer = self.billing.get_invoice_context(input.invoice_id, payments=0).customer
        CONTACTS.remember(input.invoice_id, customer.email)
        return customer.model_copy(update={"email": None})

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
        """The entry's note, after any earlier entries that ride with it (``more``), each
        idempotent by its own key. Returns the ID of ``entry``'s note. A connector with
        ``add_notes`` writes them together (one read and one write per record: issue 15)."""
        add_notes = getattr(self.billing, "add_notes", None)
        if add_notes is not None and input.more:
            texts = [(e.as_text(), e.key) for e in input.more]
            ids = add_notes(
                input.target,
                input.target_id,
                [*texts, (input.entry.as_text(), input.entry.key)],
            )
            return WriteResult(id=ids[-1])
        for earlier in input.more:
            self.billing.add_note(
                input.target, input.target_id, earlier.as_text(), idempotency_key=earlier.key
            )
        note_id = self.billing.add_note(
            input.target, input.target_id, input.entry.as_text(), idempotency_key=input.entry.key
        )
        return WriteResult(id=note_id)

    @writes
    @activity.defn(name="retry_payment")
    @vendor_errors
    def retry_payment(self, input: RetryPaymentInput) -> PaymentAttempt:
        """Collect the invoice now. An invoice settled meanwhile (paid, voided, credited — the
        "paid" event may have been lost) is a recovery, never a failure: every platform refuses
        to collect it with a permanent error, so on one the invoice is read again."""
        try:
            return self.billing.retry_payment(input.invoice_id, input.idempotency_key)
        except ConnectorError as err:
            if err.kind is not ErrorKind.PERMANENT or err.code == "not_found":
                raise
            invoice = self.billing.get_invoice_context(input.invoice_id, payments=0).invoice
            if invoice.settled is None:
                raise
            return PaymentAttempt(succeeded=True, already=invoice.settled)

    @writes
    @activity.defn(name="apply_credit")
    @vendor_errors
    def apply_credit(self, input: ApplyCreditInput) -> WriteResult:
        credit_id = self.billing.apply_credit(
            input.customer_id, input.amount, input.currency, input.reason, input.idempotency_key
        )
        return WriteResult(id=credit_id)

    # --- the dunning catch-up (workflows/dunning/catch_up.py) ------------------------------------

    @activity.defn(name="dunning_billing_changes")
    @vendor_errors
    def dunning_billing_changes(self, input: BillingChangesInput) -> BillingChanges:
        """Invoices settled and payments failed since the watermark, oldest first."""
        return BillingChanges(
            billing=self.billing.name,
            paid=self.billing.paid_invoices(input.since, input.limit),
            failed=self.billing.failed_payments(input.since, input.limit),
        )

    @activity.defn(name="dunning_catch_up_runs")
    async def dunning_catch_up_runs(self, input: CatchUpRunsInput) -> CatchUpRuns:
        """What the webhook routes would have done: a failed payment signal-with-starts its
        dunning run (the same ID and start policies: a running run dedups the failure by event
        ID, a finished one is never doubled), a settled invoice signals its running run. Temporal
        calls only, each idempotent, so a retried attempt simply repeats them."""
        client: Client = activity.client()
        info = activity.info()
        started: list[str] = []
        signalled: list[str] = []
        closed: list[str] = []
        for failure in input.failed:
            wf_id = dunning_workflow_id(input.billing, failure.invoice_id)
            running = await _is_running(client, wf_id)
            try:
                await client.start_workflow(
                    WORKFLOW_TYPE,
                    DunningInput(billing=input.billing, invoice_id=failure.invoice_id),
                    id=wf_id,
                    task_queue=info.task_queue,
                    start_signal=names.SIGNAL_PAYMENT_FAILED,
                    start_signal_args=[failure],
                    **start_options(WORKFLOW_TYPE),
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(names.USE_CASE_KEY, names.UseCase.DUNNING),
                            SearchAttributePair(names.CUSTOMER_KEY, failure.customer_id),
                            SearchAttributePair(names.APPROVAL_KEY, "none"),
                            SearchAttributePair(names.AMOUNT_AT_RISK_KEY, failure.amount_due / 100),
                        ]
                    ),
                    static_summary=f"Dunning for invoice {failure.invoice_id} ({input.billing})",
                    static_details=(
                        f"Started by the billing catch-up: {input.billing} reported a failed "
                        f"payment on invoice `{failure.invoice_id}` (event `{failure.event_id}`) "
                        "that no webhook delivered."
                    ),
                    rpc_timeout=RPC_TIMEOUT,
                )
                (signalled if running else started).append(wf_id)
            except WorkflowAlreadyStartedError:
                closed.append(wf_id)
            activity.heartbeat(len(started) + len(signalled) + len(closed))
        for paid in input.paid:
            wf_id = dunning_workflow_id(input.billing, paid.invoice_id)
            handle = client.get_workflow_handle(wf_id)
            try:
                desc = await handle.describe(rpc_timeout=RPC_TIMEOUT)
            except RPCError as err:
                if err.status is RPCStatusCode.NOT_FOUND:
                    continue  # no dunning run for this invoice: nothing to settle
                raise
            if desc.status != WorkflowExecutionStatus.RUNNING:
                closed.append(wf_id)
                continue
            try:
                await handle.signal(names.SIGNAL_INVOICE_PAID, paid, rpc_timeout=RPC_TIMEOUT)
                signalled.append(wf_id)
            except RPCError as err:
                if err.status is not RPCStatusCode.NOT_FOUND:
                    raise
                closed.append(wf_id)  # it closed between the two calls
            activity.heartbeat(len(started) + len(signalled) + len(closed))
        return CatchUpRuns(
            started=sorted(set(started)),
            signalled=sorted(set(signalled)),
            closed=sorted(set(closed)),
        )

    def catch_up_methods(self) -> list:  # noqa: ANN201 - activity callables
        return [self.dunning_billing_changes, self.dunning_catch_up_runs]

    # --- dunning hands the failure to churn (one Temporal call per webhook) -------------------

    @activity.defn(name="dunning_signal_churn")
    async def dunning_signal_churn(self, input: SignalChurnInput) -> SignalChurnResult:
        """Signal-with-start the customer's churn intervention with the failures a dunning run
        saw and what it read (the webhook service used to make this second Temporal call and the
        intervention re-read the CRM). The start policies are the webhook's (``domain.starts``:
        a running intervention is joined, a finished one never restarted); the intervention
        dedups each failure by event ID, so a retried attempt changes nothing. Temporal calls
        only: the dunning run makes it as a local activity."""
        client: Client = activity.client()
        info = activity.info()
        try:
            wf_id = churn_workflow_id(input.billing, input.customer_id)
        except ValueError:  # no workflow ID can hold it (the webhook door refuses such events)
            return SignalChurnResult(workflow_id="", status="invalid_customer_id")
        if not input.risks:
            return SignalChurnResult(workflow_id=wf_id, status="nothing to hand on")
        first, *rest = input.risks
        try:
            handle = await client.start_workflow(
                churn.WORKFLOW_TYPE,
                churn.ChurnInput(billing=input.billing, customer_id=input.customer_id),
                id=wf_id,
                task_queue=info.task_queue,
                start_signal=SIGNAL_RISK_CONTEXT,
                start_signal_args=[first],
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(names.USE_CASE_KEY, names.UseCase.CHURN_INTERVENTION),
                        SearchAttributePair(names.CUSTOMER_KEY, input.customer_id),
                        SearchAttributePair(names.APPROVAL_KEY, "none"),
                    ]
                ),
                static_summary=(
                    f"Churn intervention for customer {input.customer_id} ({input.billing})"
                ),
                rpc_timeout=RPC_TIMEOUT,
                **start_options(churn.WORKFLOW_TYPE),
            )
        except WorkflowAlreadyStartedError:
            return SignalChurnResult(workflow_id=wf_id, status="closed")
        for risk in rest:  # several failures at once (rare): one signal each, deduped there
            try:
                await handle.signal(SIGNAL_RISK_CONTEXT, risk, rpc_timeout=RPC_TIMEOUT)
            except RPCError as err:
                if err.status is not RPCStatusCode.NOT_FOUND:
                    raise
                return SignalChurnResult(workflow_id=wf_id, status="closed")
        return SignalChurnResult(workflow_id=wf_id, status="accepted")


async def _is_running(client: Client, workflow_id: str) -> bool:
    """Whether a run with this ID is open (for the report only: the start decides)."""
    try:
        desc = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return desc.status == WorkflowExecutionStatus.RUNNING
