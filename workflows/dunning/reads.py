"""Dunning's reads and its hand-off to churn (a mixin of :class:`DunningWorkflow`): the invoice
context and the CRM account read in parallel on the hot path, the assessment, the re-read of the
invoice before every customer-facing step (a lost "paid" event must never leave a paying customer
chased), and the failure handed to the customer's churn intervention.

Split from ``workflow.py`` by role; the command sequence is the workflow's, unchanged.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.options import LOCAL_READ, LOCAL_TEMPORAL, READ

with workflow.unsafe.imports_passed_through():
    from activities.billing import BillingActivities
    from activities.crm import CrmActivities
    from activities.models import (
        AssessFailureInput,
        FindAccountInput,
        FindAccountResult,
        GetBillingCustomerInput,
        GetInvoiceContextInput,
        RiskContext,
        SignalChurnInput,
    )
    from activities.reasoning import ReasoningActivities
    from domain import temporal as names
    from domain.models import (
        InvoiceContext,
        Payment,
        RiskSignal,
    )

#: runs started before the multi-week playbook wait for payment with one retry (``legacy.py``)
PLAYBOOK_PATCH = "dunning-playbook"
#: runs started before it trusted the "paid" event alone; since, the invoice is read again before
#: every customer-facing step (a reminder, an owner task, a retry, the end action)
REREAD_PATCH = "dunning-reread-invoice"
#: runs started before it read sequentially with regular activities, wrote the case's audit
#: entry separately and left churn to the webhook service; since, the hot path (module doc)
HOT_PATH_PATCH = "dunning-hot-path"
#: since: where the invoice names its customer only in brief (Recurly), the first read is the
#: invoice alone and the customer's account (tenure, language, CRM link) is read right after the
#: case, once, for the day-0 step (issue 15: two billing requests to the case)
CUSTOMER_AFTER_CASE_PATCH = "dunning-customer-after-case"
#: an invoice read this recently is not read again before a step (the day-0 step follows the
#: first read by moments: a lost "paid" event cannot hide in that gap)
FRESH_READ = timedelta(minutes=5)


class DunningReads:
    """Mixin of :class:`~workflows.dunning.workflow.DunningWorkflow`."""

    async def _find_account(self, customer_id: str) -> FindAccountResult:
        return await workflow.execute_activity_method(
            CrmActivities.find_crm_account,
            FindAccountInput(billing=self._input.billing, customer_id=customer_id),
            summary="find the linked CRM account" + (" and its open cases" if self._hot else ""),
            **READ,
        )

    async def _assess(self, ctx: InvoiceContext, found: FindAccountResult):  # noqa: ANN202
        arg = AssessFailureInput(
            context=ctx, account=found.account, now=workflow.now(), open_cases=found.open_cases
        )
        if self._hot:  # the rules are pure; an LLM reply is still validated inside
            return await workflow.execute_local_activity_method(
                ReasoningActivities.assess_payment_failure,
                arg,
                summary="classify the failure",
                **LOCAL_READ,
            )
        return await workflow.execute_activity_method(
            ReasoningActivities.assess_payment_failure, arg, summary="classify the failure", **READ
        )

    # --- the churn handoff (hot path) ----------------------------------------------------------------

    def _start_churn_handoff(self) -> None:
        """Hand every failure this run sees to the customer's churn intervention, in the
        background: the first with the account and cases just read."""
        self._churn_task = asyncio.create_task(self._churn_handoff())

    async def _churn_handoff(self) -> None:
        while True:
            await workflow.wait_condition(lambda: len(self.s.failures) > self._churn_sent)
            upto = len(self.s.failures)
            crm, self._churn_crm = self._churn_crm, None
            risks = [
                RiskContext(
                    signal=RiskSignal(
                        billing=f.billing,
                        event_id=f.event_id,
                        customer_id=f.customer_id,
                        kind="payment_failed",
                        occurred_at=f.occurred_at,
                    ),
                    has_crm=crm is not None,
                    account=crm.account if crm else None,
                    open_cases=crm.open_cases if crm else [],
                )
                for f in self.s.failures[self._churn_sent : upto]
            ]
            customer = self.s.context.customer.id if self.s.context else risks[0].signal.customer_id
            try:
                await workflow.execute_local_activity_method(
                    BillingActivities.dunning_signal_churn,
                    SignalChurnInput(
                        billing=self._input.billing, customer_id=customer, risks=risks
                    ),
                    summary="hand the failure to the churn intervention",
                    **LOCAL_TEMPORAL,
                )
            except ActivityError as err:
                # never hold the dunning run for churn: the nightly sweep scores the customer
                workflow.logger.warning("churn handoff failed: %s", err.cause)
            self._churn_sent = upto

    async def _settle_background(self) -> None:
        """Before the run ends or continues: the failures handed to churn, the notes written."""
        if self._churn_task is not None:
            await workflow.wait_condition(lambda: self._churn_sent >= len(self.s.failures))
        await self.flush_billing_notes()

    async def _invoice_context(self, failure: Payment | None = None):  # noqa: ANN202
        """The invoice context (None: billing does not know the invoice). ``failure``: the
        declined attempt the event carried, so the read skips the payment attempts (issue 15;
        the same one activity either way: no change of command sequence); where the platform's
        invoice names its customer only in brief (Recurly) it is the invoice alone, and the
        customer is read after the case (:meth:`_customer_after_case`)."""
        try:
            ctx = self.s.context = await workflow.execute_activity_method(
                BillingActivities.get_invoice_context,
                GetInvoiceContextInput(invoice_id=self._input.invoice_id, failure=failure),
                summary="re-fetch invoice and customer"
                + (" (the decline from the event)" if failure else " and payments"),
                **READ,
            )
        except ActivityError as err:
            if isinstance(err.cause, ApplicationError) and (err.cause.type or "").endswith(
                ".not_found"
            ):
                return None
            raise
        self._context_at = workflow.now()
        self._update(stage="gathering context", customer_id=ctx.customer.id)
        workflow.upsert_search_attributes(
            [
                names.CUSTOMER_KEY.value_set(ctx.customer.id),
                names.AMOUNT_AT_RISK_KEY.value_set(ctx.invoice.amount_due / 100),
            ]
        )
        return ctx

    async def _customer_after_case(self) -> None:
        """The customer's account, when the first read left it for after the case
        (``InvoiceContext.customer_later``: Recurly's invoice names its account in brief): one
        read, before any step that speaks to the customer (day 0's language). The case was
        assessed without the customer's tenure. A failed read keeps what the invoice said (the
        reminder then goes in the default language)."""
        ctx = self.s.context
        if ctx is None or not ctx.customer_later:
            return  # every history recorded before: no command
        if not workflow.patched(CUSTOMER_AFTER_CASE_PATCH):
            # a run begun before it (its answer memoized from its first task): as it was
            return
        try:
            customer = await workflow.execute_activity_method(
                BillingActivities.get_billing_customer,
                GetBillingCustomerInput(
                    invoice_id=self._input.invoice_id, customer_id=ctx.customer.id
                ),
                summary="read the billing customer (tenure, language, CRM link)",
                **READ,
            )
        except ActivityError as err:
            workflow.logger.warning("billing customer read failed: %s", err.cause)
            customer = ctx.customer
        ctx = self.s.context or ctx  # a re-read meanwhile has today's invoice
        self.s.context = ctx.model_copy(
            update={
                "customer": customer.model_copy(
                    update={"mrr": ctx.customer.mrr, "currency": ctx.customer.currency}
                ),
                "customer_later": False,
            }
        )

    async def _settled_now(self, before: str) -> bool:
        """Before anything reaches the customer, ask billing again: a lost "paid" event (a
        webhook outage, a replay window passed) must never leave a paying customer chased. An
        invoice paid, voided or credited — or gone — ends the run as recovered.

        The patch is consulted first, on every path that reaches here. It used to come after
        the early return for an invoice already known as settled, so whether a run recorded the
        marker depended on when the payment came (a run paid during its look for open cases
        did not, one paid a moment later did) and code that skips it where a history has it
        fails with "Non-deprecated patch marker ... dunning-reread-invoice"
        (tests/dunning/test_reread_patch.py). A history without the marker at this point
        replays as before: the call answers False there and records nothing."""
        reread = workflow.patched(REREAD_PATCH)
        if self.s.settled:
            return True
        if not reread:
            return False
        if self._hot and self._context_at and workflow.now() - self._context_at < FRESH_READ:
            return False  # read moments ago (the day-0 step right after the first read)
        try:
            ctx = await workflow.execute_activity_method(
                BillingActivities.get_invoice_context,
                GetInvoiceContextInput(invoice_id=self._input.invoice_id),
                summary=f"re-read the invoice before {before}",
                **READ,
            )
        except ActivityError as err:
            if not (
                isinstance(err.cause, ApplicationError)
                and (err.cause.type or "").endswith(".not_found")
            ):
                raise
            settled = "deleted"
        else:
            settled = ctx.invoice.settled
            if settled is None:
                self.s.context = ctx  # the next step quotes today's amount due
                self._context_at = workflow.now()
                return False
        self.s.recovered_by = f"{settled} before {before} (billing said so; no paid event came)"
        self._update(stage=f"invoice {settled}: closing")
        return True

    async def _audit_refused_reasoning(self) -> None:
        """What the reasoner asked for and code refused never reached an activity: the record
        says why."""
        assessment = self.s.assessment
        assert assessment is not None
        for refusal in assessment.rejected:
            code = refusal.split(":", 1)[0]
            await self._audit(
                "llm_output_rejected",
                decision="deny",
                policy_ids=[f"containment:{code}"],
                outcome="blocked",
                summary=f"The {assessment.model or 'LLM'} reply was refused by code: {refusal}. "
                "The rules decided instead.",
                key_suffix=code,
            )

    # --- governed actions ----------------------------------------------------------------------------
