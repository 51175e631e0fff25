"""Canonical event → Temporal: deterministic workflow IDs, signal-with-start, dedup by event ID."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain import churn, quote, support
from domain import temporal as names
from domain.dunning import WORKFLOW_TYPE, DunningInput
from domain.ids import (
    churn_workflow_id,
    dunning_workflow_id,
    q2c_workflow_id,
    support_workflow_id,
)
from domain.models import CaseOpened, DealWon, InvoicePaid, PaymentFailed, RiskSignal
from webhooks.errors import Rejected

RPC_TIMEOUT = timedelta(seconds=5)


Routed = tuple[int, dict[str, str]]


async def route(
    client: Client, event: PaymentFailed | InvoicePaid, task_queue: str = names.TASK_QUEUE
) -> Routed:
    try:
        wf_id = dunning_workflow_id(event.billing, event.invoice_id)
    except ValueError as exc:
        raise Rejected(422, str(exc), "bad_id") from None
    async with _temporal_errors():
        if isinstance(event, PaymentFailed):
            return await _payment_failed(client, wf_id, event, task_queue)
        return await _invoice_paid(client, wf_id, event)
    raise AssertionError("unreachable")


async def route_crm(
    client: Client, event: DealWon | CaseOpened, billing: str, task_queue: str = names.TASK_QUEUE
) -> Routed:
    """A won deal starts quote-to-cash, a new case support context: each once per record, ever
    (REJECT_DUPLICATE), so a redelivered callout and the catch-up query start nothing new."""
    try:
        if isinstance(event, DealWon):
            wf_id = q2c_workflow_id(event.crm, event.opportunity_id)
            workflow, arg, use_case = (
                quote.WORKFLOW_TYPE,
                quote.QuoteToCashInput(
                    crm=event.crm, billing=billing, opportunity_id=event.opportunity_id
                ),
                "quote_to_cash",
            )
            summary = f"Quote-to-cash for opportunity {event.opportunity_id} ({event.crm})"
        else:
            wf_id = support_workflow_id(event.crm, event.case_id)
            workflow, arg, use_case = (
                support.WORKFLOW_TYPE,
                support.SupportContextInput(crm=event.crm, billing=billing, case_id=event.case_id),
                "support_context",
            )
            summary = f"Billing context for case {event.case_id} ({event.crm})"
    except ValueError as exc:
        raise Rejected(422, str(exc), "bad_id") from None
    async with _temporal_errors():
        try:
            await client.start_workflow(
                workflow,
                arg,
                id=wf_id,
                task_queue=task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(names.USE_CASE, use_case),
                        SearchAttributePair(names.APPROVAL, "none"),
                    ]
                ),
                static_summary=summary,
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            return 200, {"status": "duplicate", "workflow_id": wf_id}
        return 202, {"status": "accepted", "workflow_id": wf_id}
    raise AssertionError("unreachable")


async def route_risk(
    client: Client, signal: RiskSignal, task_queue: str = names.TASK_QUEUE
) -> Routed:
    """A failed payment or a downgrade moves churn risk: signal-with-start the customer's churn
    intervention (a running one rescores; the signal's event ID dedups redeliveries)."""
    try:
        wf_id = churn_workflow_id(signal.billing, signal.customer_id)
    except ValueError as exc:
        raise Rejected(422, str(exc), "bad_id") from None
    async with _temporal_errors():
        await client.start_workflow(
            churn.WORKFLOW_TYPE,
            churn.ChurnInput(billing=signal.billing, customer_id=signal.customer_id),
            id=wf_id,
            task_queue=task_queue,
            start_signal=names.SIGNAL_RISK,
            start_signal_args=[signal],
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(names.USE_CASE, "churn_intervention"),
                    SearchAttributePair(names.CUSTOMER, signal.customer_id),
                    SearchAttributePair(names.APPROVAL, "none"),
                ]
            ),
            static_summary=f"Churn intervention for customer {signal.customer_id} "
            f"({signal.billing})",
            rpc_timeout=RPC_TIMEOUT,
        )
        return 202, {"status": "accepted", "workflow_id": wf_id}
    raise AssertionError("unreachable")


def risk_of(event: PaymentFailed) -> RiskSignal:
    return RiskSignal(
        billing=event.billing,
        event_id=event.event_id,
        customer_id=event.customer_id,
        kind="payment_failed",
        occurred_at=event.occurred_at,
    )


@asynccontextmanager
async def _temporal_errors() -> AsyncIterator[None]:
    """Temporal unreachable → 503, so the vendor retries; anything else is a real error."""
    try:
        yield
    except RPCError as exc:
        if exc.status in (
            RPCStatusCode.UNAVAILABLE,
            RPCStatusCode.DEADLINE_EXCEEDED,
            RPCStatusCode.CANCELLED,
        ):
            raise Rejected(
                503, "workflow engine unavailable, retry later", "temporal_unavailable"
            ) from None
        raise


async def _payment_failed(
    client: Client, wf_id: str, event: PaymentFailed, task_queue: str
) -> tuple[int, dict[str, str]]:
    try:
        await client.start_workflow(
            WORKFLOW_TYPE,
            DunningInput(billing=event.billing, invoice_id=event.invoice_id),
            id=wf_id,
            task_queue=task_queue,
            start_signal=names.SIGNAL_PAYMENT_FAILED,
            start_signal_args=[event],
            # One dunning run per invoice, ever: a late redelivery after it closed starts nothing.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(names.USE_CASE, "dunning"),
                    SearchAttributePair(names.CUSTOMER, event.customer_id),
                    SearchAttributePair(names.APPROVAL, "none"),
                    SearchAttributePair(names.AMOUNT_AT_RISK, event.amount_due / 100),
                ]
            ),
            static_summary=f"Dunning for invoice {event.invoice_id} ({event.billing})",
            static_details=(
                f"Started by {event.billing} event `{event.event_id}` at "
                f"{event.occurred_at:%Y-%m-%d %H:%M} UTC: a payment on invoice "
                f"`{event.invoice_id}` of customer `{event.customer_id}` failed"
                + (f" ({event.decline_code})" if event.decline_code else "")
                + f"; {event.amount_due / 100:,.2f} {event.currency} due. The run re-fetches "
                "the invoice, follows the segment's playbook (policies/playbooks.yaml) and waits "
                "for payment; its status query and current details say where it stands."
            ),
            rpc_timeout=RPC_TIMEOUT,
        )
    except WorkflowAlreadyStartedError:
        return 200, {"status": "duplicate", "workflow_id": wf_id}
    return 202, {"status": "accepted", "workflow_id": wf_id}


async def _invoice_paid(
    client: Client, wf_id: str, event: InvoicePaid
) -> tuple[int, dict[str, str]]:
    handle = client.get_workflow_handle(wf_id)
    try:
        desc = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return 200, {"status": "ignored", "reason": "no dunning run for this invoice"}
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return 200, {"status": "ignored", "reason": "dunning run already closed"}
    try:
        await handle.signal(names.SIGNAL_INVOICE_PAID, event, rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # closed between describe and signal
            return 200, {"status": "ignored", "reason": "dunning run already closed"}
        raise
    return 202, {"status": "accepted", "workflow_id": wf_id}
