"""The LLM budget of one UTC day, shared by every worker: an entity workflow per day.

The story: the first LLM call of a day starts ``llm-budget:{task_queue}:YYYY-MM-DD`` (update-with-start from
the reasoning activity, ``activities/reasoning.TemporalLlmLedger``); every later call of that day,
on any worker, joins it. A call first asks ``reserve`` for room for its estimate — the prompt's
tokens and the call's ``max_tokens`` — against its run's cap and the day's cap
(``policies/llm_budget.yaml``, sent with each request); the answer is granted or denied with the
cap that said no. After the call, ``settle`` replaces the estimate with the real usage the API
reported. Updates run one at a time on the workflow's single thread, so two workers can never
both take the last tokens. A reservation is keyed by workflow, activity and attempt, and its
update ID is that key, so a retried request gets the same answer.

The book (``domain.containment.LlmBudgetBook``) is pure; this workflow only holds it, answers
``usage`` queries, continues as new with the book when its history grows, and closes an hour
after its day ends (late settlements of calls made before midnight still land). No activity, no
vendor call, no command but the timer: its command sequence is trivially stable.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.containment import (
        LlmBudgetBook,
        LlmBudgetInput,
        LlmBudgetSummary,
        LlmGrant,
        LlmReservation,
        LlmSettlement,
    )

WORKFLOW_TYPE = "LlmBudgetWorkflow"
#: how long after its day ends the book stays open for settlements of calls made before midnight
GRACE = timedelta(hours=1)


@workflow.defn(name=WORKFLOW_TYPE)
class LlmBudgetWorkflow:
    @workflow.init
    def __init__(self, input: LlmBudgetInput) -> None:
        self.input = input
        self.book = input.carry or LlmBudgetBook(day=input.day)

    @workflow.run
    async def run(self, input: LlmBudgetInput) -> LlmBudgetSummary:
        day_start = datetime.fromisoformat(input.day).replace(tzinfo=UTC)
        closes = day_start + timedelta(days=1) + GRACE
        remaining = closes - workflow.now()
        if remaining > timedelta(0):
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(self._too_long, timeout=remaining)
        # no update is left half-answered: a reservation granted is settled in this run's book
        await workflow.wait_condition(workflow.all_handlers_finished)
        if workflow.now() < closes:
            workflow.continue_as_new(
                LlmBudgetInput(day=input.day, carry=self.book, max_history=input.max_history)
            )
        return self.usage()

    def _too_long(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self.input.max_history
        )

    @workflow.update
    def reserve(self, request: LlmReservation) -> LlmGrant:
        return self.book.reserve(request)

    @workflow.update
    def settle(self, report: LlmSettlement) -> None:
        self.book.settle(report)

    @workflow.query
    def usage(self) -> LlmBudgetSummary:
        b = self.book
        return LlmBudgetSummary(
            day=b.day,
            total=b.total,
            runs=len(b.runs),
            open_reservations=len(b.held),
            denied=b.denied,
        )
