"""Reasoning as an activity, so every assessment (rules or LLM) is recorded in history.

Three rules, in this order:

1. **Rules first.** The rules assess every failure; when they are conclusive (the decline code
   names the cause: ``domain.containment.rules_decide``) their assessment is the answer and no
   LLM is asked.
2. **Budgets.** Before an LLM call, its estimate is reserved against the run's and the day's caps
   (``policies/llm_budget.yaml``) in the day's budget entity workflow, shared by every worker
   (:class:`TemporalLlmLedger`); the reply's real usage then replaces the estimate. Past a cap the
   rules decide and the refusal (``budget_exceeded: ...``) travels with the assessment, so the
   workflow audits it on both systems like any refused reply.
3. **Containment.** LLM output is judged here, by code, before the workflow sees it: a reply that
   breaks the closed schema, names another customer, asks for a kind of action dunning may not
   propose or an amount out of range is refused whole and the rules decide instead. What is
   accepted comes back as a :class:`~domain.containment.ContainedAssessment` — the activity's
   declared result type, so the workflow's own decoding re-applies it — whose every LLM-written
   string is neutralized (links, markup, instructions, PII). Nothing an LLM says reaches an
   activity, a record or a customer unchecked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from datetime import UTC
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import ValidationError
from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.errors import to_application_error
from activities.models import AssessFailureInput
from connectors.base import ConnectorError, ErrorKind
from connectors.reasoner import SYSTEM_PROMPT, LlmReasoner, Reasoner, output_schema
from domain.approvals import ProposedAction
from domain.containment import (
    ContainedAssessment,
    ContainmentError,
    LlmBudget,
    LlmBudgetBook,
    LlmBudgetInput,
    LlmBudgets,
    LlmGrant,
    LlmReservation,
    LlmSettlement,
    LlmUsage,
    estimate_tokens,
    rules_decide,
    validate_reasoner_output,
)
from domain.decisions import classify_payment_failure
from domain.policy import ActionKind

#: what an LLM may propose in dunning: things the workflow can execute, each still gated by
#: policy (an LLM-proposed credit always needs a person: policies/llm_money.cedar)
DUNNING_LLM_KINDS = frozenset({ActionKind.RETRY_PAYMENT, ActionKind.APPLY_CREDIT})

LLM_BUDGET_FILE = "llm_budget.yaml"
#: the budget entity workflow (workflows/llm_budget.py), named here: activities never import
#: workflows (the layering runs the other way)
BUDGET_WORKFLOW = "LlmBudgetWorkflow"
BUDGET_ID_PREFIX = "llm-budget:"
#: the output estimate when the client does not say its max_tokens
DEFAULT_MAX_OUTPUT_TOKENS = 1024


def budget_workflow_id(task_queue: str, day: str) -> str:
    """``llm-budget:{task_queue}:{YYYY-MM-DD}``: one book per deployment (its main task queue,
    which is also where the entity runs) and UTC day."""
    return f"{BUDGET_ID_PREFIX}{task_queue}:{day}"


def load_llm_budgets(path: Path) -> LlmBudgets:
    """``policies/llm_budget.yaml``; a missing file means the defaults (the same figures). An
    unknown key or a bad figure is an error at worker start, not a silent default."""
    try:
        raw: Any = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        return LlmBudgets()
    if not isinstance(raw, dict) or set(raw) - {"per_run", "per_day"}:
        raise ValueError(f"{path}: expected only per_run and per_day")
    fields = set(LlmBudget.model_fields)
    for section, caps in raw.items():
        if not isinstance(caps, dict) or set(caps) - fields:
            raise ValueError(f"{path}: {section} takes only {', '.join(sorted(fields))}")
    try:
        return LlmBudgets.model_validate(raw)
    except ValidationError as err:
        raise ValueError(f"{path}: {err.errors()[0]['msg']}") from None


class LlmLedger(Protocol):
    """Where reservations and usage go: the day's budget entity (workers), or a local book."""

    async def reserve(self, day: str, request: LlmReservation) -> LlmGrant: ...

    async def settle(self, day: str, report: LlmSettlement) -> None: ...


class TemporalLlmLedger:
    """The day's budget entity workflow, reached with update-with-start: the first reservation
    of a UTC day starts ``llm-budget:{task_queue}:YYYY-MM-DD``, every other one joins it. Update IDs are the
    reservation IDs, so a retried RPC is the same update."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    def _start(self, day: str) -> WithStartWorkflowOperation:
        return WithStartWorkflowOperation(
            BUDGET_WORKFLOW,
            LlmBudgetInput(day=day),
            id=budget_workflow_id(self.task_queue, day),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # a closed day is never reopened with an empty book
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )

    async def reserve(self, day: str, request: LlmReservation) -> LlmGrant:
        return await self.client.execute_update_with_start_workflow(
            "reserve",
            request,
            start_workflow_operation=self._start(day),
            id=f"reserve:{request.reservation_id}",
            result_type=LlmGrant,
        )

    async def settle(self, day: str, report: LlmSettlement) -> None:
        await self.client.execute_update_with_start_workflow(
            "settle",
            report,
            start_workflow_operation=self._start(day),
            id=f"settle:{report.reservation_id}",
        )


class LocalLlmLedger:
    """A book in this process only: for a reasoner used without a Temporal client (tests, one-off
    tools). Workers always use :class:`TemporalLlmLedger`: caps must hold across processes."""

    def __init__(self) -> None:
        self.books: dict[str, LlmBudgetBook] = {}
        self._lock = threading.Lock()

    def book(self, day: str) -> LlmBudgetBook:
        with self._lock:
            return self.books.setdefault(day, LlmBudgetBook(day=day))

    async def reserve(self, day: str, request: LlmReservation) -> LlmGrant:
        book = self.book(day)
        with self._lock:
            return book.reserve(request)

    async def settle(self, day: str, report: LlmSettlement) -> None:
        book = self.book(day)
        with self._lock:
            book.settle(report)


def _reservation_id(info: activity.Info) -> str:
    """Stable per attempt: a retried update is one reservation, a retried activity a new one
    (its earlier attempt may have been billed)."""
    raw = f"{info.workflow_id}\n{info.workflow_run_id}\n{info.activity_id}\n{info.attempt}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


class ReasoningActivities:
    def __init__(
        self,
        reasoner: Reasoner | LlmReasoner,
        budgets: LlmBudgets | None = None,
        ledger: LlmLedger | None = None,
    ) -> None:
        self.reasoner = reasoner
        self.budgets = budgets or LlmBudgets()
        self.ledger: LlmLedger = ledger or LocalLlmLedger()

    @activity.defn(name="assess_payment_failure")
    async def assess_payment_failure(self, input: AssessFailureInput) -> ContainedAssessment:
        if not isinstance(self.reasoner, LlmReasoner):
            return ContainedAssessment.of(
                self.reasoner.assess_payment_failure(input.context, input.account, input.now)
            )
        rules = classify_payment_failure(input.context, input.account, input.now)
        if rules_decide(rules):
            return ContainedAssessment.of(rules)  # conclusive: the LLM is not asked
        if not self.budgets.per_run.allows(input.usage_so_far, 0):
            return ContainedAssessment.of(
                rules, rejected=["budget_exceeded: LLM budget for this workflow is spent"]
            )
        info = activity.info()
        prompt = self.reasoner.prompt(input.context, input.account, input.open_cases)
        estimate = estimate_tokens(SYSTEM_PROMPT, prompt, json.dumps(output_schema()))
        max_out = getattr(self.reasoner.client, "max_tokens", DEFAULT_MAX_OUTPUT_TOKENS)
        # the server's clock, as the entity's own (it closes its book an hour after the day)
        day = info.current_attempt_scheduled_time.astimezone(UTC).date().isoformat()
        rid = _reservation_id(info)
        request = LlmReservation(
            reservation_id=rid,
            run_key=info.workflow_id,
            input_tokens=estimate,
            output_tokens=int(max_out),
            caps=self.budgets,
        )
        try:
            grant = await self.ledger.reserve(day, request)
        except RPCError as err:
            # no answer from the day's book: no call without one (Temporal retries the activity)
            raise ApplicationError(
                f"LLM budget ledger unavailable: {err.status.name} {err.message}"[:300],
                type="llm_budget.unavailable",
            ) from None
        except WorkflowAlreadyStartedError:
            # the day's book has closed (the attempt was scheduled more than an hour before it
            # ran): the retry is scheduled on the new day and reserves there
            raise ApplicationError(
                f"LLM budget book for {day} is closed", type="llm_budget.closed"
            ) from None
        if not grant.granted:
            activity.logger.warning("LLM call not made: %s", grant.reason)
            return ContainedAssessment.of(
                rules, rejected=[f"budget_exceeded: {grant.reason}; the LLM was not asked"]
            )
        try:
            reply = await asyncio.to_thread(self.reasoner.ask_prompt, prompt)
        except ConnectorError as err:
            # An answered error (4xx/5xx) was not billed: free the reservation. A timeout or a
            # dropped connection may have been: it stays charged.
            if err.status is not None:
                await self._settle(day, rid, info.workflow_id, LlmUsage(calls=1))
            if err.kind is not ErrorKind.PERMANENT:
                raise to_application_error(err) from None  # Temporal retries, honouring retry-after
            # a refused key or request will not get better: the rules decide, the audit says why
            return ContainedAssessment.of(rules, rejected=[f"llm_unavailable: {err}"])
        await self._settle(day, rid, info.workflow_id, reply.usage)
        usage = {
            "input_tokens": reply.usage.input_tokens,
            "output_tokens": reply.usage.output_tokens,
        }
        inv = input.context.invoice
        try:
            out = validate_reasoner_output(
                reply.raw,
                customer_id=input.context.customer.id,
                invoice_amount=inv.amount_due,
                allowed_kinds=DUNNING_LLM_KINDS,
                invoice_currency=inv.currency,
            )
        except ContainmentError as err:
            activity.logger.warning("LLM output refused: %s", err.code)
            return ContainedAssessment.of(
                rules, rejected=[f"{err.code}: {err}"], model=reply.model, **usage
            )
        proposals = [
            ProposedAction(
                kind=a.kind,
                customer_id=a.customer_id,
                invoice_id=inv.id,
                amount=a.amount,
                currency=a.currency,
                discount_percent=a.discount_percent,
                reason=a.reason,
                origin="llm",
            )
            for a in out.proposed_actions
        ]
        # one validated construction: every LLM string neutralized (model_copy would skip it)
        return ContainedAssessment.of(
            out.to_assessment(model=reply.model), proposed_actions=proposals, **usage
        )

    async def _settle(self, day: str, rid: str, run_key: str, usage: LlmUsage) -> None:
        try:
            await self.ledger.settle(
                day, LlmSettlement(reservation_id=rid, run_key=run_key, usage=usage)
            )
        except Exception as err:  # noqa: BLE001 - the estimate stays charged: never less safe
            activity.logger.warning("LLM usage not settled (%s): the estimate stays charged", err)
