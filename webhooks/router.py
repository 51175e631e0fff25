"""Canonical event → Temporal: deterministic workflow IDs, signal-with-start, dedup by event ID."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain import quote, support
from domain import temporal as names
from domain.dunning import WORKFLOW_TYPE, DunningInput
from domain.ids import dunning_workflow_id, q2c_workflow_id, support_workflow_id
from domain.models import CaseOpened, DealWon, InvoicePaid, PaymentFailed
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
