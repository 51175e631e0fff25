"""Churn intervention: a risk score in the CRM, a CSM on the phone, maybe an offer, and the outcome.

The story: something moved a customer's churn risk — a failed payment, a downgrade, a usage drop
(signal-with-start ``risk_signal`` from the webhook router), or the nightly sweep. We do not trust
the event: we score the customer from fresh billing and CRM data with the transparent scorecard
(``domain/churn.py``, weights in ``policies/churn.yaml``) and write the score, its level, its top
reasons and a rules narrative onto the CRM account. Below the task threshold that is all. At or
above it, the account's CSM gets a task with a drafted outreach, and — at or above the offer
threshold — we propose a retention discount on the main subscription, which policy sends to RevOps
for approval (``churn_intervention`` runs in ``assist`` mode); an approved offer is applied in
billing. Then we follow the account for 30–60 days (a durable timer): every new risk signal
rescores it (deduplicated by event ID) and updates the CRM. When the follow-up ends we compare
billing with where we started and record the outcome — retained, downgraded or churned — on the
account and in both systems' audit trails, next to the first score, so the scorecard can be judged
against what happened.

Every write passes the gate (``steps.py``): the score and the CSM task are housekeeping (only a
deny stops them: observe mode writes nothing), the offer is governed. Every key derives from the
workflow ID and this intervention's first run ID, so a later intervention for the same customer
never collides with an earlier one's writes.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.churn.steps import ChurnSteps
from workflows.governed.base import GovernedWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.models import SIGNAL_RISK_CONTEXT, RiskContext
    from domain import churn
    from domain import temporal as names
    from domain.churn import (
        WORKFLOW_TYPE,
        ChurnInput,
        ChurnOutcome,
        ChurnResult,
        ChurnState,
        ChurnStatus,
    )
    from domain.models import RiskSignal
    from domain.temporal import UseCase


@workflow.defn(name=WORKFLOW_TYPE)
class ChurnInterventionWorkflow(ChurnSteps, GovernedWorkflow):
    use_case = UseCase.CHURN_INTERVENTION

    @workflow.init
    def __init__(self, input: ChurnInput) -> None:
        self._input = input
        # a continuation keeps following: the state comes whole, nothing is re-done
        self.s = input.carry or ChurnState(
            status=ChurnStatus(stage="waiting for a risk signal", customer_id=input.customer_id),
            deadline=workflow.now(),
        )
        self._intervention = workflow.info().first_execution_run_id
        #: what a dunning run read moments before (the CRM account and open cases): the next
        #: score uses it instead of reading the CRM again (never carried over a continuation)
        self._handed: RiskContext | None = None
        #: what the sweep that started this run read and scored (its first score uses it)
        self._sweep = input.sweep if input.carry is None else None
        self._init_governed()

    # --- messages ------------------------------------------------------------------------------------

    @workflow.signal(
        name=names.SIGNAL_RISK,
        description="Something moved this customer's churn risk: rescore (deduplicated by event ID).",
    )
    def risk_signal(self, signal: RiskSignal) -> None:
        if signal.customer_id != self._input.customer_id or signal.event_id in self.s.seen_events:
            return  # a redelivery, or a signal meant for another customer
        self.s.seen_events.append(signal.event_id)
        self.s.pending_rescore = True
        self._update(signals_seen=self.s.status.signals_seen + 1)

    @workflow.signal(
        name=SIGNAL_RISK_CONTEXT,
        description="A failed payment from its dunning run, with the CRM account it read.",
    )
    def risk_signal_with_context(self, handed: RiskContext) -> None:
        if (
            handed.signal.customer_id != self._input.customer_id
            or handed.signal.event_id in self.s.seen_events
        ):
            return
        self.risk_signal(handed.signal)
        if handed.has_crm:
            self._handed = handed

    @workflow.query(name="status", description="Where this intervention stands.")
    def status(self) -> ChurnStatus:
        return self.s.status

    # --- the plot ----------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: ChurnInput) -> ChurnResult:
        if input.carry is not None:
            return await self._follow()
        await workflow.wait_condition(
            lambda: self.s.pending_rescore or input.started_by is not None
        )
        workflow.upsert_search_attributes(
            [
                names.USE_CASE_KEY.value_set(self.use_case),
                names.CUSTOMER_KEY.value_set(input.customer_id),
            ]
        )
        try:
            first = await self._score(baseline_mrr=None)
        except ActivityError as err:
            if isinstance(err.cause, ApplicationError) and (err.cause.type or "").endswith(
                ".not_found"
            ):
                # a signal about a customer billing does not know: nothing to score or write
                workflow.logger.warning("customer %s not found in billing", input.customer_id)
                return await self._finish(ChurnOutcome.UNKNOWN_CUSTOMER)
            raise
        config = self.s.config = first.config
        self.s.baseline = first.signals
        await self._write(first, "scored")
        if first.result.score < config.task_threshold:
            return await self._finish(ChurnOutcome.LOW_RISK)

        follow_up = input.follow_up or timedelta(days=config.follow_up_days)
        self.s.deadline = workflow.now() + follow_up
        self._update(follow_up_until=self.s.deadline)
        workflow.upsert_search_attributes(
            [names.AMOUNT_AT_RISK_KEY.value_set(first.signals.mrr / 100)]
        )
        offer = self._offer_for(first)
        await self._open_csm_task(first, offer)
        if offer is not None:
            await self._propose_offer(first, offer)
        return await self._follow()

    async def _follow(self) -> ChurnResult:
        """Follow the account to the deadline, rescoring on every new risk signal."""
        s = self.s
        assert s.deadline is not None
        while True:
            remaining = s.deadline - workflow.now()
            if remaining <= timedelta(0):
                break
            self._update(stage="following the account")
            workflow.set_current_details(
                f"Churn risk {s.status.score}/100 ({s.status.level}); following until "
                f"{s.deadline:%Y-%m-%d %H:%M} UTC. Offer: {s.offer_status or 'none'}. "
                f"Scores so far: {s.status.scores}."
            )
            try:
                await workflow.wait_condition(
                    lambda: s.pending_rescore or self._history_full(),
                    timeout=remaining,
                    timeout_summary="follow-up ends",
                )
            except TimeoutError:
                break
            if s.pending_rescore:
                assert s.baseline is not None
                await self._write(await self._score(s.baseline.mrr), "rescored on a signal")
            if self._history_full():
                await self.continue_as_new(
                    self._input.model_copy(update={"carry": s, "sweep": None})
                )
        assert s.baseline is not None
        final = await self._score(s.baseline.mrr)
        outcome = churn.outcome_of(s.baseline, final.signals)
        await self._write(final, f"follow-up closed: {outcome.value}")
        first = s.status.first_score
        await self._audit(
            "churn_outcome",
            decision="allow",
            outcome=outcome.value,
            summary=(
                f"Followed {self._input.customer_id} to {s.deadline:%Y-%m-%d}: {outcome.value}. "
                f"First score {first}/100, last {final.result.score}/100; "
                f"MRR {s.baseline.mrr / 100:,.2f} → {final.signals.mrr / 100:,.2f}; "
                f"offer: {s.offer_status or 'none'}."
            ),
            parameters={
                "first_score": first,
                "last_score": final.result.score,
                "outcome": outcome.value,
                "offer": s.offer_status,
            },
            billing=True,
        )
        return await self._finish(ChurnOutcome(outcome.value))

    # --- lifecycle -------------------------------------------------------------------------------------

    def _history_full(self) -> bool:
        return self.history_full(self._input.history_limit)

    def _update(self, **changes: object) -> None:
        self.s.status = self.s.status.model_copy(update=changes)

    async def _finish(self, outcome: ChurnOutcome) -> ChurnResult:
        s = self.s
        self._update(stage="closed", outcome=outcome.value)
        if s.status.follow_up_until is not None:
            workflow.upsert_search_attributes([names.AMOUNT_AT_RISK_KEY.value_set(0.0)])
        workflow.set_current_details(
            f"Closed: {outcome.value}. Score {s.status.score}/100 ({s.status.level}). "
            f"Actions: {'; '.join(s.status.actions) or 'none'}."
        )
        await self.handlers_finished()
        first_level = None
        if s.baseline is not None and s.config is not None and s.status.first_score is not None:
            first_level = churn.level_of(s.status.first_score, s.config.levels).value
        return ChurnResult(
            outcome=outcome,
            customer_id=self._input.customer_id,
            first_score=s.status.first_score,
            first_level=first_level,
            last_score=s.status.score,
            offer=s.offer_status,
            audit_ids=s.status.audit_ids,
        )
