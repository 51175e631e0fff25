"""The steps of a churn intervention: score, write the score, open the CSM task, propose the
offer — each write through the gate, each audited."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.governed.audit import AuditScope
from workflows.governed.gate import Governed, Permit
from workflows.options import READ

with workflow.unsafe.imports_passed_through():
    from activities.churn import (
        ApplyDiscountInput,
        ChurnActivities,
        CustomerScore,
        ScoreCustomerInput,
        WriteChurnScoreInput,
    )
    from activities.crm import CrmActivities
    from activities.drafting import CsmDraftInput, DraftingActivities
    from activities.models import UpsertTaskInput
    from domain import churn
    from domain.approvals import ProposedAction
    from domain.churn import Offer
    from domain.ids import idempotency_key
    from domain.models import CustomerTier, NoteTarget, TaskDraft
    from domain.policy import AccountFacts, ActionKind
    from domain.records import ChurnScoreRecord


#: the score, CSM task and follow-up entries also go to the customer's billing notes (issue 13,
#: harm 6); runs from before wrote them to the CRM only
AUDIT_BOTH_SIDES_PATCH = "churn-audit-both-sides"
#: the CSM task's note may be a model's draft, contained; a refused one is audited (issue 22)
CHURN_DRAFTING_PATCH = "churn-drafting"
#: the draft is a local activity that never fails on a model's account (the template comes
#: back); a worker without it must not hold the task: two quick tries, then the template
_DRAFT_OPTIONS = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_attempts=2, initial_interval=timedelta(seconds=1)),
}
#: a score within ``sweep_write_threshold`` of the one the CRM holds (or this intervention last
#: wrote), at the same level, is not written again (issue 15: the sweep's rule,
#: ``domain.churn.moved``); runs from before wrote every score
UNCHANGED_SCORE_PATCH = "churn-unchanged-score"


class ChurnSteps:
    """Mixin of :class:`~workflows.churn.workflow.ChurnInterventionWorkflow`."""

    async def _score(self, baseline_mrr: int | None) -> CustomerScore:
        self.s.pending_rescore = False  # signals that arrived before this read are covered by it
        self._update(stage="scoring")
        # a dunning run's handoff: the CRM account and cases it read moments ago
        handed, self._handed = self._handed, None
        # the sweep's handoff (the first score of a run the sweep started): what it scored the
        # customer from, so the score reads neither system again (a dunning handoff is newer)
        sweep, self._sweep = getattr(self, "_sweep", None), None
        scored = await workflow.execute_activity_method(
            ChurnActivities.churn_score_customer,
            ScoreCustomerInput(
                billing=self._input.billing,
                customer_id=self._input.customer_id,
                now=workflow.now(),
                baseline_mrr=baseline_mrr,
                has_crm=handed is not None,
                account=handed.account if handed else None,
                open_cases=handed.open_cases if handed else [],
                sweep=sweep if handed is None else None,
            ),
            summary="score the customer from billing and CRM",
            **READ,
        )
        self.s.latest, self.s.account = scored.signals, scored.account
        result, status = scored.result, self.s.status
        self._update(
            score=result.score,
            level=result.level.value,
            reasons=result.reasons,
            scores=status.scores + 1,
            first_score=status.first_score if status.first_score is not None else result.score,
            account_id=scored.account.id if scored.account else None,
        )
        return scored

    async def _write(self, scored: CustomerScore, why: str) -> None:
        """The score, level, reasons and narrative onto the CRM account (a field we own)."""
        if scored.account is None:
            workflow.logger.info("no CRM account linked to %s: score not written", self._scope)
            return
        result = scored.result
        closing = why.startswith("follow-up closed")  # carries the outcome: always written
        if workflow.patched(UNCHANGED_SCORE_PATCH) and not closing:
            s = self.s
            stored = (
                (s.written_score, s.written_level)
                if s.written_score is not None
                else (scored.stored_score, scored.stored_level)
            )
            if not churn.moved(*stored, result, scored.config):
                workflow.logger.info(
                    "churn score %s (%s) unchanged in the CRM: not written again",
                    result.score,
                    result.level.value,
                )
                return
        text = churn.narrative(result, scored.signals)
        if why.startswith("follow-up closed"):
            text += f" Intervention {why}."
        what = {"score": result.score, "level": result.level.value, "why": why}
        permit = await self.ask_housekeeping(ActionKind.UPDATE_CRM_FIELD, self._facts(scored))
        if not permit.allowed:  # observe mode: reported, not written
            await self._audit(
                "write_churn_score",
                decision="deny",
                outcome="blocked",
                summary=f"Churn risk {result.score}/100 ({result.level.value}), {why}: not "
                f"written ({', '.join(permit.decision.policy_ids)}).",
                key_suffix=str(self.s.status.scores),
                parameters=what,
            )
            return
        await self.write(
            permit,
            ChurnActivities.churn_write_score,
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
        )
        self.s.written_score, self.s.written_level = result.score, result.level.value
        await self._audit(
            "write_churn_score",
            decision="allow",
            outcome="written",
            summary=f"Churn risk {result.score}/100 ({result.level.value}), {why}: "
            + ("; ".join(result.reasons) or "no risk factor present"),
            key_suffix=str(self.s.status.scores),
            parameters=what,
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
        account, result = scored.account, scored.result
        permit = await self.ask_housekeeping(ActionKind.CREATE_TASK, self._facts(scored))
        if not permit.allowed:
            await self._audit(
                "create_task",
                decision="deny",
                outcome="blocked",
                summary=f"CSM task for churn risk {result.score}/100 not opened "
                f"({', '.join(permit.decision.policy_ids)}).",
                parameters={"task": "csm", "score": result.score},
            )
            return
        subject = f"Churn risk {result.score}/100 ({result.level.value}): reach out"
        note = churn.outreach(result, account.name if account else self._input.customer_id, offer)
        if workflow.patched(CHURN_DRAFTING_PATCH):
            note = await self._draft_outreach(scored, offer, subject, note)
        task = await self.write(
            permit,
            CrmActivities.upsert_crm_task,
            UpsertTaskInput(
                draft=TaskDraft(
                    key=idempotency_key(self._scope, "csm-task"),
                    account_id=account.id if account else None,
                    subject=subject,
                    description=note
                    + f"\n\nOpened by RevBridge workflow {workflow.info().workflow_id}.",
                    high_priority=result.level is churn.Level.CRITICAL,
                    due=workflow.now() + timedelta(days=3),
                )
            ),
            summary="open the CSM task with a drafted outreach",
        )
        self._update(task_id=task.id)
        await self._audit(
            "create_task",
            decision="allow",
            outcome=f"opened ({task.id})",
            summary=f"CSM task for churn risk {result.score}/100 ({result.level.value}).",
            parameters={"task": "csm", "score": result.score},
        )

    async def _draft_outreach(
        self, scored: CustomerScore, offer: Offer | None, subject: str, template: str
    ) -> str:
        """The CSM note from a model when one may draft it (contained: figures from the rules
        text only, an offer only as awaiting approval), else the rules text; a refused draft is
        audited on both sides with its reasons."""
        result, account = scored.result, scored.account
        try:
            draft = await workflow.execute_local_activity_method(
                DraftingActivities.draft_csm_outreach,
                CsmDraftInput(
                    customer_id=self._input.customer_id,
                    account_name=account.name if account else self._input.customer_id,
                    score=result.score,
                    level=result.level.value,
                    reasons=result.reasons,
                    talking_points=[
                        line[2:] for line in template.splitlines() if line.startswith("- ")
                    ],
                    offer_percent=offer.percent if offer else None,
                    offer_months=offer.months if offer else None,
                    template=template,
                    subject=subject,
                    # an input only (no new command): the note in the customer's language
                    language=scored.language or "en",
                ),
                summary="draft the CSM note",
                **_DRAFT_OPTIONS,
            )
        except (ActivityError, ApplicationError) as err:  # a local activity's failure is the latter
            workflow.logger.warning("CSM draft unavailable (%s): the rules text", err)
            return template
        if draft.refusals:
            await self._audit(
                "draft_refused",
                decision="deny",
                outcome="template used",
                summary="CSM note: the model's draft was discarded for the rules text: "
                + "; ".join(draft.refusals),
                parameters={"task": "csm", "score": result.score},
            )
        return draft.body

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
        self.s.offer_status = governed.status
        self._update(offer_id=governed.result_id, actions=[*self.s.status.actions, governed.line])

    async def _execute(self, permit: Permit, action: ProposedAction) -> str:
        if action.kind is not ActionKind.OFFER_DISCOUNT or action.subject_id is None:
            raise ValueError(f"churn intervention cannot execute {action.kind.value}")
        applied = await self.write(
            permit,
            ChurnActivities.churn_apply_discount,
            ApplyDiscountInput(
                subscription_id=action.subject_id,
                percent=action.discount_percent,
                months=action.months,
                idempotency_key=idempotency_key(self._scope, f"act:{action.action_id}"),
            ),
            summary="apply the retention discount",
        )
        return applied.id

    # --- audit -----------------------------------------------------------------------------------------

    def _audit_scope(self) -> AuditScope:
        return AuditScope(
            use_case=self.use_case,
            account_id=self.s.account.id if self.s.account else None,
            billing_note=(NoteTarget.CUSTOMER, self._input.customer_id),
            key_prefix=self._intervention,
        )

    async def _audit_governed(self, governed: Governed) -> None:
        await self._audit(governed.action.kind.value, **governed.audit_fields(), billing=True)

    async def _audit(self, action: str, *, billing: bool = False, **fields: object) -> None:
        """CRM agent log and a billing note on the customer, one correlation ID (runs from
        before ``churn-audit-both-sides`` noted in billing only what touched billing)."""
        both = billing or workflow.patched(AUDIT_BOTH_SIDES_PATCH)
        ids = await self.audit(action, billing_note=both, **fields)  # type: ignore[arg-type]
        await self._record_audit_ids(ids)

    async def _record_audit_ids(self, ids: list[str]) -> None:
        self._update(audit_ids=[*self.s.status.audit_ids, *ids])

    @property
    def _scope(self) -> str:
        """Business identity of this intervention: the workflow ID and its first run."""
        return f"{workflow.info().workflow_id}/{self._intervention}"
