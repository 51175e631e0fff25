"""Canonical event → Temporal: deterministic workflow IDs, signal-with-start, dedup by event ID.

One Temporal call per billing event: a failed payment signal-with-starts its dunning run (which
hands the failure to the customer's churn intervention itself, with what it read: see
``workflows/dunning/workflow.py``); a paid invoice signals its dunning run without asking first
whether it runs (NOT_FOUND: no run, or a closed one — nothing to do).

Two steps, so an event either starts (or signals) everything it should or nothing:

1. :func:`plan` validates the whole event and computes every workflow ID, input, search attribute
   and summary — pure, no I/O. A bad field is a ``Rejected(422)`` before any Temporal call.
2. :func:`execute` makes the calls. Each is idempotent (deterministic IDs, the reuse/conflict
   policies of ``domain.starts``, signal handlers that dedup by event ID), so when Temporal fails
   half-way the 503 makes the vendor redeliver and the redelivery completes the rest.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain import churn, golden, quote, support
from domain import temporal as names
from domain.dunning import WORKFLOW_TYPE, DunningInput
from domain.ids import (
    churn_workflow_id,
    dunning_workflow_id,
    q2c_workflow_id,
    support_workflow_id,
)
from domain.models import CaseOpened, DealWon, InvoicePaid, PaymentFailed, RiskSignal
from domain.starts import start_options
from domain.temporal import UseCase
from webhooks.errors import Rejected

RPC_TIMEOUT = timedelta(seconds=5)

Routed = tuple[int, dict[str, str]]


@dataclass(frozen=True)
class Start:
    """One start, or signal-with-start when ``signal`` is set, with the workflow type's policies."""

    workflow: str
    arg: Any
    id: str
    use_case: str
    summary: str
    customer: str | None = None
    amount_at_risk: float | None = None
    details: str | None = None
    signal: str | None = None
    signal_args: tuple[Any, ...] = ()

    def search_attributes(self) -> TypedSearchAttributes:
        pairs: list[SearchAttributePair[Any]] = [
            SearchAttributePair(names.USE_CASE_KEY, self.use_case)
        ]
        if self.customer is not None:
            pairs.append(SearchAttributePair(names.CUSTOMER_KEY, self.customer))
        pairs.append(SearchAttributePair(names.APPROVAL_KEY, "none"))
        if self.amount_at_risk is not None:
            pairs.append(SearchAttributePair(names.AMOUNT_AT_RISK_KEY, self.amount_at_risk))
        return TypedSearchAttributes(pairs)


@dataclass(frozen=True)
class SignalIfRunning:
    """Signal a run only while it runs (a paid invoice never starts a dunning run)."""

    id: str
    signal: str
    arg: Any
    missing_reason: str
    closed_reason: str


@dataclass(frozen=True)
class SignalRunning:
    """Signal a run that may not exist or may have closed (NOT_FOUND either way): one call."""

    id: str
    signal: str
    arg: Any
    missing_reason: str


@dataclass(frozen=True)
class Plan:
    """What one event does in Temporal. ``follow_up`` runs only when ``first`` started or joined
    a run; when ``first`` met a closed run (a late redelivery), ``follow_up`` only signals a
    running one (``if_closed``) — so a redelivered failed payment never starts a second churn
    intervention after the first ended."""

    first: Start | SignalIfRunning | SignalRunning
    follow_up: Start | None = None
    if_closed: SignalIfRunning | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _bad_id(exc: ValueError) -> Rejected:
    return Rejected(422, str(exc), "bad_id")


def _amount(minor_units: int) -> float:
    """The amount-at-risk search attribute (major units); a value no float holds is refused."""
    try:
        value = minor_units / 100
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise Rejected(422, "amount_due is out of range", "bad_field")
    return value


def plan(event: PaymentFailed | InvoicePaid, task_queue: str = names.TASK_QUEUE) -> Plan:
    """A billing event's plan; raises ``Rejected(422)`` for anything that could not be started."""
    try:
        wf_id = dunning_workflow_id(event.billing, event.invoice_id)
        # validated here although the dunning run makes the churn call: a customer ID that no
        # workflow ID can hold is a 422 before anything starts
        churn_workflow_id(event.billing, event.customer_id)
    except ValueError as exc:
        raise _bad_id(exc) from None
    if isinstance(event, InvoicePaid):
        return Plan(
            SignalRunning(
                wf_id,
                names.SIGNAL_INVOICE_PAID,
                event,
                "no running dunning run for this invoice",
            )
        )
    amount = _amount(event.amount_due)
    dunning = Start(
        WORKFLOW_TYPE,
        DunningInput(billing=event.billing, invoice_id=event.invoice_id),
        wf_id,
        use_case=UseCase.DUNNING,
        customer=event.customer_id,
        amount_at_risk=amount,
        summary=f"Dunning for invoice {event.invoice_id} ({event.billing})",
        details=(
            f"Started by {event.billing} event `{event.event_id}` at "
            f"{event.occurred_at:%Y-%m-%d %H:%M} UTC: a payment on invoice "
            f"`{event.invoice_id}` of customer `{event.customer_id}` failed"
            + (f" ({event.decline_code})" if event.decline_code else "")
            + f"; {amount:,.2f} {event.currency} due. The run re-fetches "
            "the invoice, follows the segment's playbook (policies/playbooks.yaml) and waits "
            "for payment; its status query and current details say where it stands."
        ),
        signal=names.SIGNAL_PAYMENT_FAILED,
        signal_args=(event,),
    )
    # a failed payment is also a churn signal: the dunning run hands it on (one call here)
    return Plan(dunning)


def plan_risk(signal: RiskSignal) -> Plan:
    try:
        churn_id = churn_workflow_id(signal.billing, signal.customer_id)
    except ValueError as exc:
        raise _bad_id(exc) from None
    return Plan(_churn_start(signal, churn_id))


def _churn_start(signal: RiskSignal, churn_id: str) -> Start:
    return Start(
        churn.WORKFLOW_TYPE,
        churn.ChurnInput(billing=signal.billing, customer_id=signal.customer_id),
        churn_id,
        use_case=UseCase.CHURN_INTERVENTION,
        customer=signal.customer_id,
        summary=f"Churn intervention for customer {signal.customer_id} ({signal.billing})",
        signal=names.SIGNAL_RISK,
        signal_args=(signal,),
    )


def plan_sync(signal: golden.SyncSignal, flusher_id: str | None = None) -> Plan:
    """A customer, subscription or CRM account change: signal-with-start the customer's
    account sync (``account:{billing}:{customer}``), which applies changes in order and dedups
    by event ID. One Temporal call."""
    try:
        wf_id = golden.account_workflow_id(signal.billing, signal.customer_id)
    except ValueError as exc:
        raise _bad_id(exc) from None
    return Plan(
        Start(
            golden.WORKFLOW_TYPE,
            golden.AccountSyncInput(
                billing=signal.billing, customer_id=signal.customer_id, flusher_id=flusher_id
            ),
            wf_id,
            use_case=UseCase.ACCOUNT_SYNC,
            customer=signal.customer_id,
            summary=f"Account sync for customer {signal.customer_id} ({signal.billing})",
            signal=golden.SIGNAL_CHANGE,
            signal_args=(signal,),
        )
    )


def plan_crm(
    event: DealWon | CaseOpened | golden.SyncSignal, billing: str, flusher_id: str | None = None
) -> Plan:
    """A won deal starts quote-to-cash, a new case support context: each once per record (a
    failed run may be redone, ``domain.starts``), so a redelivered callout and the catch-up
    query start nothing new. An account change signals its customer's account sync."""
    if isinstance(event, golden.SyncSignal):
        return plan_sync(event, flusher_id)
    try:
        if isinstance(event, DealWon):
            return Plan(
                Start(
                    quote.WORKFLOW_TYPE,
                    quote.QuoteToCashInput(
                        crm=event.crm, billing=billing, opportunity_id=event.opportunity_id
                    ),
                    q2c_workflow_id(event.crm, event.opportunity_id),
                    use_case=UseCase.QUOTE_TO_CASH,
                    summary=f"Quote-to-cash for opportunity {event.opportunity_id} ({event.crm})",
                )
            )
        return Plan(
            Start(
                support.WORKFLOW_TYPE,
                support.SupportContextInput(crm=event.crm, billing=billing, case_id=event.case_id),
                support_workflow_id(event.crm, event.case_id),
                use_case=UseCase.SUPPORT_CONTEXT,
                summary=f"Billing context for case {event.case_id} ({event.crm})",
            )
        )
    except ValueError as exc:
        raise _bad_id(exc) from None


async def execute(client: Client, p: Plan, task_queue: str = names.TASK_QUEUE) -> Routed:
    """Make the plan's calls; Temporal unreachable → ``Rejected(503)`` (the vendor retries)."""
    async with _temporal_errors():
        status, body = await _run(client, p.first, task_queue)
        if p.follow_up is not None:
            if body["status"] == "duplicate" and p.if_closed is not None:
                await _run(client, p.if_closed, task_queue)
            else:
                await _run(client, p.follow_up, task_queue)
        return status, body
    raise AssertionError("unreachable")


async def _run(
    client: Client, step: Start | SignalIfRunning | SignalRunning, task_queue: str
) -> Routed:
    if isinstance(step, SignalRunning):
        return await _signal_running(client, step)
    if isinstance(step, SignalIfRunning):
        return await _signal_if_running(client, step)
    try:
        await client.start_workflow(
            step.workflow,
            step.arg,
            id=step.id,
            task_queue=task_queue,
            start_signal=step.signal,
            start_signal_args=list(step.signal_args),
            search_attributes=step.search_attributes(),
            static_summary=step.summary,
            static_details=step.details,
            rpc_timeout=RPC_TIMEOUT,
            **start_options(step.workflow),
        )
    except WorkflowAlreadyStartedError:
        return 200, {"status": "duplicate", "workflow_id": step.id}
    return 202, {"status": "accepted", "workflow_id": step.id}


async def _signal_running(client: Client, step: SignalRunning) -> Routed:
    try:
        await client.get_workflow_handle(step.id).signal(
            step.signal, step.arg, rpc_timeout=RPC_TIMEOUT
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # never started, or closed already
            return 200, {"status": "ignored", "reason": step.missing_reason}
        raise
    return 202, {"status": "accepted", "workflow_id": step.id}


async def _signal_if_running(client: Client, step: SignalIfRunning) -> Routed:
    handle = client.get_workflow_handle(step.id)
    try:
        desc = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return 200, {"status": "ignored", "reason": step.missing_reason}
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return 200, {"status": "ignored", "reason": step.closed_reason}
    try:
        await handle.signal(step.signal, step.arg, rpc_timeout=RPC_TIMEOUT)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # closed between describe and signal
            return 200, {"status": "ignored", "reason": step.closed_reason}
        raise
    return 202, {"status": "accepted", "workflow_id": step.id}


# --- the one-call forms (each validates before its call) --------------------------------------------


async def route(
    client: Client, event: PaymentFailed | InvoicePaid, task_queue: str = names.TASK_QUEUE
) -> Routed:
    """The one Temporal call a billing event makes: its dunning run."""
    return await execute(client, plan(event, task_queue), task_queue)


async def route_crm(
    client: Client, event: DealWon | CaseOpened, billing: str, task_queue: str = names.TASK_QUEUE
) -> Routed:
    return await execute(client, plan_crm(event, billing), task_queue)


async def route_risk(
    client: Client, signal: RiskSignal, task_queue: str = names.TASK_QUEUE
) -> Routed:
    """A downgrade or usage drop moves churn risk: signal-with-start the customer's churn
    intervention (a running one rescores; the signal's event ID dedups redeliveries)."""
    return await execute(client, plan_risk(signal), task_queue)


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
