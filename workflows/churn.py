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

Writes of the score and the CSM task are RevBridge's own CRM fields and internal to-dos; the only
commercial side effect, the offer, goes through the approval gate. Every key derives from the
workflow ID and this intervention's first run ID, so a later intervention for the same customer
never collides with an earlier one's writes.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.approval import Governed, GovernedWorkflow
from workflows.auditing import audit_entry, write_audit
from workflows.options import READ, WRITE

with workflow.unsafe.imports_passed_through():
    from activities.churn import (
        ApplyDiscountInput,
        ChurnActivities,
        CustomerScore,
        ScoreCustomerInput,
        WriteChurnScoreInput,
    )
    from activities.crm import CrmActivities
    from activities.models import UpsertTaskInput
    from domain import churn
    from domain import temporal as names
    from domain.approvals import PendingApproval, ProposedAction, RefusedApproval
    from domain.churn import (
        USE_CASE,
        WORKFLOW_TYPE,
        ChurnCarry,
        ChurnConfig,
        ChurnInput,
        ChurnResult,
        ChurnSignals,
        ChurnStatus,
        Offer,
    )
    from domain.ids import idempotency_key
    from domain.models import CrmAccount, CustomerTier, NoteTarget, RiskSignal, TaskDraft
    from domain.policy import AccountFacts, ActionKind, Outcome
    from domain.records import ChurnScoreRecord


@workflow.defn(name=WORKFLOW_TYPE)
class ChurnInterventionWorkflow(GovernedWorkflow):
    use_case = USE_CASE

    @workflow.init
    def __init__(self, input: ChurnInput) -> None:
        self._input = input
        self._seen_events: set[str] = set()
        self._rescore_due = False
        self._config: ChurnConfig | None = None
        self._baseline: ChurnSignals | None = None
        self._latest: ChurnSignals | None = None
        self._account: CrmAccount | None = None
        self._deadline = workflow.now()
        self._offer_status: str | None = None
        self._status = ChurnStatus(stage="waiting for a risk signal", customer_id=input.customer_id)
        self._intervention = workflow.info().first_execution_run_id
        self._init_gate()
        if input.carry is not None:  # a continuation: keep following, nothing re-done
            c = input.carry
            self._config, self._baseline, self._latest = c.config, c.baseline, c.latest
            self._account, self._deadline, self._status = c.account, c.deadline, c.status
            self._seen_events = set(c.seen_events)
            self._rescore_due = c.pending_rescore
            self._offer_status = c.offer_status

    # --- messages ------------------------------------------------------------------------------------

    @workflow.signal(
        name=names.SIGNAL_RISK,
        description="Something moved this customer's churn risk: rescore (deduplicated by event ID).",
    )
    def risk_signal(self, signal: RiskSignal) -> None:
        if signal.customer_id != self._input.customer_id or signal.event_id in self._seen_events:
            return  # a redelivery, or a signal meant for another customer
        self._seen_events.add(signal.event_id)
        self._rescore_due = True
        self._update(signals_seen=self._status.signals_seen + 1)

    @workflow.query(name="status", description="Where this intervention stands.")
    def status(self) -> ChurnStatus:
        return self._status

    # --- the run ---------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: ChurnInput) -> ChurnResult:
        self._refusal_auditor = asyncio.create_task(self.audit_refusals(self._audit_refusal))
        if input.carry is not None:
            return await self._follow()
        await workflow.wait_condition(lambda: self._rescore_due or input.started_by is not None)
        workflow.upsert_search_attributes(
            [names.USE_CASE.value_set(USE_CASE), names.CUSTOMER.value_set(input.customer_id)]
        )
        try:
            first = await self._score(baseline_mrr=None)
        except ActivityError as err:
            if isinstance(err.cause, ApplicationError) and (err.cause.type or "").endswith(
                ".not_found"
            ):
                # a signal about a customer billing does not know: nothing to score or write
                workflow.logger.warning("customer %s not found in billing", input.customer_id)
                return await self._finish("unknown_customer")
            raise
        config = self._config = first.config
        self._baseline = first.signals
        await self._write(first, "scored")
        if first.result.score < config.task_threshold:
            return await self._finish("low_risk")

        follow_up = input.follow_up or timedelta(days=config.follow_up_days)
        self._deadline = workflow.now() + follow_up
        self._update(follow_up_until=self._deadline)
        workflow.upsert_search_attributes([names.AMOUNT_AT_RISK.value_set(first.signals.mrr / 100)])
        offer = self._offer_for(first)
        await self._open_csm_task(first, offer)
        if offer is not None:
            await self._propose_offer(first, offer)
        return await self._follow()

    async def _follow(self) -> ChurnResult:
        """Follow the account to the deadline, rescoring on every new risk signal."""
        while True:
            remaining = self._deadline - workflow.now()
            if remaining <= timedelta(0):
                break
            self._update(stage="following the account")
            workflow.set_current_details(
                f"Churn risk {self._status.score}/100 ({self._status.level}); following until "
                f"{self._deadline:%Y-%m-%d %H:%M} UTC. Offer: {self._offer_status or 'none'}. "
                f"Scores so far: {self._status.scores}."
            )
            try:
                await workflow.wait_condition(
                    lambda: self._rescore_due or self._history_full(),
                    timeout=remaining,
                    timeout_summary="follow-up ends",
                )
            except TimeoutError:
                break
            if self._rescore_due:
                assert self._baseline is not None
                await self._write(await self._score(self._baseline.mrr), "rescored on a signal")
            if self._history_full():
                await self._continue_as_new()
        assert self._baseline is not None
        final = await self._score(self._baseline.mrr)
        outcome = churn.outcome_of(self._baseline, final.signals)
        await self._write(final, f"follow-up closed: {outcome.value}")
        first = self._status.first_score
        await self._audit(
            "churn_outcome",
            decision="allow",
            outcome=outcome.value,
            summary=(
                f"Followed {self._input.customer_id} to {self._deadline:%Y-%m-%d}: {outcome.value}. "
                f"First score {first}/100, last {final.result.score}/100; "
                f"MRR {self._baseline.mrr / 100:,.2f} → {final.signals.mrr / 100:,.2f}; "
                f"offer: {self._offer_status or 'none'}."
            ),
            parameters={
                "first_score": first,
                "last_score": final.result.score,
                "outcome": outcome.value,
                "offer": self._offer_status,
            },
            billing=True,
        )
        return await self._finish(outcome.value)

    # --- steps -----------------------------------------------------------------------------------------

    async def _score(self, baseline_mrr: int | None) -> CustomerScore:
        self._rescore_due = False  # signals that arrived before this read are covered by it
        self._update(stage="scoring")
        scored = await workflow.execute_activity_method(
            ChurnActivities.score_customer,
            ScoreCustomerInput(
                billing=self._input.billing,
                customer_id=self._input.customer_id,
                now=workflow.now(),
                baseline_mrr=baseline_mrr,
            ),
            summary="score the customer from billing and CRM",
            **READ,
        )
        self._latest, self._account = scored.signals, scored.account
        result = scored.result
        self._update(
            score=result.score,
            level=result.level.value,
            reasons=result.reasons,
            scores=self._status.scores + 1,
            first_score=self._status.first_score
            if self._status.first_score is not None
            else result.score,
            account_id=scored.account.id if scored.account else None,
        )
        return scored

    async def _write(self, scored: CustomerScore, why: str) -> None:
        """The score, level, reasons and narrative onto the CRM account (a field set)."""
        if scored.account is None:
            workflow.logger.info("no CRM account linked to %s: score not written", self._scope)
            return
        result = scored.result
        text = churn.narrative(result, scored.signals)
        if why.startswith("follow-up closed"):
            text += f" Intervention {why}."
        decision = await self.policy_only(ActionKind.UPDATE_CRM_FIELD, self._facts(scored))
        if decision.outcome is Outcome.DENY:  # observe mode: reported, not written
            await self._audit(
                "write_churn_score",
                decision="deny",
                outcome="blocked",
                summary=f"Churn risk {result.score}/100 ({result.level.value}), {why}: not "
                f"written ({', '.join(decision.policy_ids)}).",
                key_suffix=str(self._status.scores),
                parameters={"score": result.score, "level": result.level.value, "why": why},
            )
            return
        await workflow.execute_activity_method(
            ChurnActivities.write_score,
            WriteChurnScoreInput(
                record=ChurnScoreRecord(
                    account_id=scored.account.id,
                    score=result.score,
                    level=result.level.value,
                    reasons=result.reasons,
                    narrative=text,
                    scored_at=workflow.now(),
                )
            ),
            summary=f"write churn score {result.score} to the CRM",
            **WRITE,
        )
        await self._audit(
            "write_churn_score",
            decision="allow",
            outcome="written",
            summary=f"Churn risk {result.score}/100 ({result.level.value}), {why}: "
            + ("; ".join(result.reasons) or "no risk factor present"),
            key_suffix=str(self._status.scores),
            parameters={"score": result.score, "level": result.level.value, "why": why},
        )

    def _offer_for(self, scored: CustomerScore) -> Offer | None:
        config = scored.config
        if scored.result.score < config.offer_threshold or scored.subscription_id is None:
            return None
        if scored.subscription_discount > 0:
            return None  # never stack a retention offer on a running discount
        return config.offers.get(scored.result.level)

    def _facts(self, scored: CustomerScore) -> AccountFacts:
        account = scored.account
        return AccountFacts(
            id=account.id if account else self._input.customer_id,
            tier=account.tier if account else CustomerTier.SMB,
            mrr=scored.signals.mrr,
        )

    async def _open_csm_task(self, scored: CustomerScore, offer: Offer | None) -> None:
        self._update(stage="opening the CSM task")
        account = scored.account
        result = scored.result
        decision = await self.policy_only(ActionKind.CREATE_TASK, self._facts(scored))
        if decision.outcome is Outcome.DENY:
            await self._audit(
                "create_task",
                decision="deny",
                outcome="blocked",
                summary=f"CSM task for churn risk {result.score}/100 not opened "
                f"({', '.join(decision.policy_ids)}).",
                parameters={"task": "csm", "score": result.score},
            )
            return
        task = await workflow.execute_activity_method(
            CrmActivities.upsert_crm_task,
            UpsertTaskInput(
                draft=TaskDraft(
                    key=idempotency_key(self._scope, "csm-task"),
                    account_id=account.id if account else None,
                    subject=f"Churn risk {result.score}/100 ({result.level.value}): reach out",
                    description=churn.outreach(
                        result, account.name if account else self._input.customer_id, offer
                    )
                    + f"\n\nOpened by RevBridge workflow {workflow.info().workflow_id}.",
                    high_priority=result.level is churn.Level.CRITICAL,
                    due=workflow.now() + timedelta(days=3),
                )
            ),
            summary="open the CSM task with a drafted outreach",
            **WRITE,
        )
        self._update(task_id=task.id)
        await self._audit(
            "create_task",
            decision="allow",
            outcome=f"opened ({task.id})",
            summary=f"CSM task for churn risk {result.score}/100 ({result.level.value}).",
            parameters={"task": "csm", "score": result.score},
        )

    async def _propose_offer(self, scored: CustomerScore, offer: Offer) -> None:
        assert scored.subscription_id is not None
        self._update(stage="deciding on a retention offer")
        result, account = scored.result, scored.account
        action = ProposedAction(
            kind=ActionKind.OFFER_DISCOUNT,
            customer_id=self._input.customer_id,
            currency=scored.currency,
            discount_percent=offer.percent,
            months=offer.months,
            subject_id=scored.subscription_id,
            reason=f"retention offer: churn risk {result.score}/100 ({result.level.value})",
        )
        governed = await self.govern(
            action,
            self._facts(scored),
            why="; ".join(result.reasons),
            execute=self._execute,
            audit=self._audit_governed,
            timing=self._input.approval,
            crm_account_id=account.id if account else None,
        )
        self._offer_status = governed.status
        self._update(
            offer_id=governed.result_id,
            actions=[
                *self._status.actions,
                governed.line,
            ],
        )

    async def _execute(self, action: ProposedAction) -> str:
        if action.kind is not ActionKind.OFFER_DISCOUNT or action.subject_id is None:
            raise ValueError(f"churn intervention cannot execute {action.kind.value}")
        applied = await workflow.execute_activity_method(
            ChurnActivities.apply_discount,
            ApplyDiscountInput(
                subscription_id=action.subject_id,
                percent=action.discount_percent,
                months=action.months,
                idempotency_key=idempotency_key(self._scope, f"act:{action.action_id}"),
            ),
            summary="apply the retention discount",
            **WRITE,
        )
        return applied.id

    # --- audit -----------------------------------------------------------------------------------------

    async def _audit_governed(self, governed: Governed) -> None:
        action = governed.action
        await self._audit(action.kind.value, **governed.audit_fields(), billing=True)

    async def _audit_refusal(
        self, refused: RefusedApproval, pending: PendingApproval | None
    ) -> None:
        await self._audit("approval_refused", **refused.audit_fields())

    async def _audit(
        self,
        action: str,
        *,
        decision: str,
        outcome: str,
        summary: str,
        policy_ids: list[str] | None = None,
        approver: str | None = None,
        key_suffix: str = "",
        parameters: dict | None = None,
        billing: bool = False,
    ) -> None:
        """CRM agent log always; a billing note on the customer for what touches billing."""
        entry = audit_entry(
            USE_CASE,
            action,
            decision=decision,
            outcome=outcome,
            summary=summary,
            policy_ids=policy_ids,
            approver=approver,
            account_id=self._account.id if self._account else None,
            parameters=parameters,
            key_suffix=f"{self._intervention}:{key_suffix}",
        )
        note = (NoteTarget.CUSTOMER, self._input.customer_id) if billing else None
        ids = await write_audit(entry, note)
        self._update(audit_ids=[*self._status.audit_ids, *ids])

    # --- helpers ---------------------------------------------------------------------------------------

    @property
    def _scope(self) -> str:
        """Business identity of this intervention: the workflow ID and its first run."""
        return f"{workflow.info().workflow_id}/{self._intervention}"

    def _history_full(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._input.history_limit
        )

    async def _continue_as_new(self) -> None:
        assert self._config and self._baseline and self._latest
        await self.refusals_audited()
        self._refusal_auditor.cancel()
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            self._input.model_copy(
                update={
                    "carry": ChurnCarry(
                        config=self._config,
                        baseline=self._baseline,
                        latest=self._latest,
                        account=self._account,
                        deadline=self._deadline,
                        status=self._status,
                        seen_events=sorted(self._seen_events),
                        pending_rescore=self._rescore_due,
                        offer_status=self._offer_status,
                    )
                }
            )
        )

    def _update(self, **changes: object) -> None:
        self._status = self._status.model_copy(update=changes)

    async def _finish(self, outcome: str) -> ChurnResult:
        await self.refusals_audited()
        self._refusal_auditor.cancel()
        self._update(stage="closed", outcome=outcome)
        if self._status.follow_up_until is not None:
            workflow.upsert_search_attributes([names.AMOUNT_AT_RISK.value_set(0.0)])
        workflow.set_current_details(
            f"Closed: {outcome}. Score {self._status.score}/100 ({self._status.level}). "
            f"Actions: {'; '.join(self._status.actions) or 'none'}."
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ChurnResult(
            outcome=outcome,
            customer_id=self._input.customer_id,
            first_score=self._status.first_score,
            first_level=None if self._baseline is None else self._first_level(),
            last_score=self._status.score,
            offer=self._offer_status,
            audit_ids=self._status.audit_ids,
        )

    def _first_level(self) -> str | None:
        if self._config is None or self._status.first_score is None:
            return None
        return churn.level_of(self._status.first_score, self._config.levels).value
