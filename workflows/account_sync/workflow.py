"""Account sync: the golden customer record, kept in step between billing and the CRM.

The story: one run per billing customer (``account:{billing}:{customer}``) lives as long as the
customer does. Every change from either side arrives as the signal ``sync_change``
(signal-with-start from the webhook service: billing customer and subscription events, the CRM's
account-change callouts) and waits in order; a redelivered event is dropped by its ID. For each
batch the run does not trust the events: it re-reads the side(s) they came from and, before it
writes a shared field to the other side, that side too. What each side changed since it was last
read or written goes through ``domain/golden.py`` in order (billing first, then the CRM):

- the truth changed → written to the other holders: at once when significant
  (``policies/sync.yaml``: a big MRR move, a downgrade, a cancellation, a failing payment, every
  shared field), else handed to the deployment's flusher, which writes minor changes of many
  customers in ONE bulk call per 200 accounts;
- a side edited a field it does not own (a rep typing a new MRR into the CRM) → the golden value
  is written back, and the restore is audited on both sides;
- our own writes coming back, late and repeated events → nothing (value equality);
- a shared field changed on both sides since the last sync → a person picks one on the approval
  gate (Web UI signal ``approval`` or ``revbridge sync resolve``): approve takes the CRM's value,
  reject keeps billing's; the winner is written to the other side and audited.

In assist mode (``policies/modes.yaml``) a pass writes nothing: everything it would write (to the
CRM: billing-owned fields, restores, the health profile; to billing: contacts and address) is
proposed as ONE CRM task for the account — each field, current → proposed, why, the source —
and asked on the approval gate under an action ID bound to the proposal's hash. Approve applies
exactly those values (audited with the approver); reject leaves both sides and is audited; a
newer pass's proposal supersedes an undecided one (its items carried over).

Every write passes the gate as housekeeping (fields RevBridge keeps in step: only a deny stops
it, so observe mode writes nothing) and is audited in the CRM's agent log and as a note on the
billing customer. The run continues as new when its history grows, carrying its state whole.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.governed.audit import AuditScope
from workflows.governed.base import GovernedWorkflow
from workflows.governed.gate import Permit
from workflows.options import LOCAL_POLICY, LOCAL_TEMPORAL, READ

with workflow.unsafe.imports_passed_through():
    from activities.crm import CrmActivities
    from activities.drafting import DraftingActivities, HealthLineDraft, HealthLineInput
    from activities.models import UpsertTaskInput
    from activities.policy import PolicyActivities
    from activities.sync import (
        HandMinorInput,
        SyncActivities,
        SyncBillingWriteInput,
        SyncCrmWriteInput,
        SyncRead,
        SyncReadInput,
        SyncRulesInput,
    )
    from domain import golden, health
    from domain import temporal as names
    from domain.approvals import (
        SIGNAL,
        ApprovalOutcome,
        ApprovalResult,
        ApprovalTiming,
        ProposedAction,
    )
    from domain.drafts import HealthFacts, health_rules_line
    from domain.golden import (
        AccountSyncInput,
        Conflict,
        Direction,
        FieldChange,
        GoldenRecord,
        MinorChange,
        ProposalItem,
        Side,
        SyncProposal,
        SyncRules,
        SyncSignal,
        SyncState,
        SyncStatus,
        Verdict,
    )
    from domain.ids import idempotency_key
    from domain.models import NoteTarget, TaskDraft
    from domain.policy import (
        AccountFacts,
        ActionKind,
        EligibleApproversInput,
        Mode,
        Outcome,
        PolicyDecision,
        PolicyRequest,
    )
    from domain.temporal import UseCase

#: a re-read's values are the truth as of the read (before: as of the latest event's time, so
#: a late event could make the current value look stale and it was never applied)
REREAD_IS_NOW_PATCH = "sync-reread-is-now"
#: the health profile on the CRM account (billing's inputs read with the view, the line drafted,
#: written with the minor changes when a figure changed); runs from before write none
HEALTH_PATCH = "sync-health-profile"
#: assist mode proposes a pass's writes as one CRM task, applied on approval (asked once, at the
#: start of each run); runs from before wrote in assist mode as in auto
ASSIST_PATCH = "sync-assist-proposals"
#: the health line's draft: a local activity that never fails on a model's trouble; a second
#: attempt at most, then the rules line
DRAFT_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_attempts=2, initial_interval=timedelta(seconds=1)),
}
#: fields whose values are personal data: audited as "changed", never with the value
PERSONAL = frozenset({"billing_contact", "billing_contact_name", "billing_address"})
#: how many verdict lines the status keeps
LAST = 20
#: who decides a conflict (policies/approvers.yaml roles)
CONFLICT_ROLES = ["revops"]
CONFLICT_TIMING = ApprovalTiming(remind_after=timedelta(hours=24), expire_after=timedelta(days=7))


def _shown(field: str, value: Any) -> str:
    return "(changed)" if field in PERSONAL else repr(value)[:80]


@workflow.defn(name=golden.WORKFLOW_TYPE)
class AccountSyncWorkflow(GovernedWorkflow):
    use_case = UseCase.ACCOUNT_SYNC

    @workflow.init
    def __init__(self, input: AccountSyncInput) -> None:
        self._input = input
        carry = input.carry
        self.record: GoldenRecord = (
            carry.record
            if carry
            else GoldenRecord(billing=input.billing, customer_id=input.customer_id)
        )
        self.held: dict[str, dict[str, Any]] = {
            side.value: dict((carry.held if carry else {}).get(side.value, {})) for side in Side
        }
        self.queue: list[SyncSignal] = list(carry.queue) if carry else []
        self.conflicts: list[Conflict] = list(carry.conflicts) if carry else []
        self.st: SyncStatus = carry.status if carry else SyncStatus(customer_id=input.customer_id)
        self.started = carry.started if carry else False
        self.health: health.HealthState = carry.health if carry else health.HealthState()
        #: conflicts a person decided, waiting for the main loop to apply them
        self._decided_conflicts: list[tuple[Conflict, Side, str | None]] = []
        #: assist mode: the proposal waiting for a person, and decided ones to apply
        self.proposal: SyncProposal | None = carry.proposal if carry else None
        self._decided_proposals: list[tuple[SyncProposal, ApprovalResult]] = []
        self._assist_on = False
        self._rules: SyncRules | None = None
        self._reviews: list[asyncio.Task[None]] = []
        self._init_governed()
        self._local_decisions = True

    # --- messages ----------------------------------------------------------------------------------

    @workflow.signal(
        name=golden.SIGNAL_CHANGE,
        description="A change on either side for this customer (deduplicated by event ID).",
    )
    def sync_change(self, signal: SyncSignal) -> None:
        if signal.customer_id != self._input.customer_id or signal.billing != self._input.billing:
            return
        if signal.event_id in self.record.seen or any(
            q.event_id == signal.event_id for q in self.queue
        ):
            self._note(f"duplicate event {signal.event_id[:40]}: nothing")
            return
        self.queue.append(signal)
        self.record = self.record.model_copy(
            update={"seen": [*self.record.seen, signal.event_id][-golden.SEEN_LIMIT :]}
        )
        self._set(signals=self.st.signals + 1)

    @workflow.query(name="status", description="Where this customer's sync stands.")
    def status(self) -> SyncStatus:
        return self.st.model_copy(
            update={"conflicts_open": list(self.conflicts), "proposal_open": self.proposal}
        )

    @workflow.query(name="golden", description="The golden record: each field's value and source.")
    def golden_record(self) -> GoldenRecord:
        return self.record

    @workflow.query(name="conflicts", description="Shared-field conflicts waiting for a person.")
    def open_conflicts(self) -> list[Conflict]:
        return list(self.conflicts)

    # --- the plot ------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: AccountSyncInput) -> SyncStatus:
        self._assist_on = workflow.patched(ASSIST_PATCH)
        if input.carry is None:
            workflow.upsert_search_attributes(
                [
                    names.USE_CASE_KEY.value_set(self.use_case),
                    names.CUSTOMER_KEY.value_set(input.customer_id),
                ]
            )
        for conflict in self.conflicts:  # carried over: ask again in this run
            self._review_later(conflict)
        if self.proposal is not None:  # carried over: ask again in this run (its task exists)
            self._reviews.append(asyncio.create_task(self._review_proposal(self.proposal)))
        while True:
            self._set(stage="waiting for a change")
            await workflow.wait_condition(
                lambda: (
                    bool(self.queue)
                    or bool(self._decided_conflicts)
                    or bool(self._decided_proposals)
                    or self._full()
                )
            )
            while self._decided_conflicts:
                await self._apply_decision(*self._decided_conflicts.pop(0))
            while self._decided_proposals:
                await self._apply_proposal(*self._decided_proposals.pop(0))
            if self.queue:
                await self._apply_batch()
            if (
                self._full()
                and not self.queue
                and not self._decided_conflicts
                and not self._decided_proposals
            ):
                await self.continue_as_new(
                    input.model_copy(
                        update={
                            "carry": SyncState(
                                record=self.record,
                                held=self.held,
                                queue=self.queue,
                                conflicts=self.conflicts,
                                status=self.st,
                                started=self.started,
                                health=self.health,
                                proposal=self.proposal,
                            )
                        }
                    )
                )

    async def _apply_batch(self) -> None:
        batch = sorted(self.queue, key=lambda s: s.occurred_at)
        self.queue = []
        self._set(stage="re-reading the truth")
        rules = self._rules = await workflow.execute_local_activity_method(
            SyncActivities.sync_rules,
            SyncRulesInput(customer_id=self._input.customer_id),
            summary="policies/sync.yaml",
            **LOCAL_POLICY,
        )
        sides = {s.side for s in batch}
        first = not self.started
        account_hint = next((s.crm_account_id for s in batch if s.crm_account_id), None)
        health_on = workflow.patched(HEALTH_PATCH)
        read = await self._read(
            Side.BILLING in sides or first, Side.CRM in sides or first, account_hint, health_on
        )
        views: dict[Side, dict[str, Any]] = {}
        if read.billing is not None:
            views[Side.BILLING] = read.billing
        if read.crm is not None:
            views[Side.CRM] = read.crm
        changes = {side: golden.changes_of(self.held[side.value], v) for side, v in views.items()}
        # before writing a shared field to the other side, re-read that side: a change it made
        # meanwhile is a conflict, not something to overwrite
        missing = {
            side.other
            for side, changed in changes.items()
            for name in changed
            if self._two_way(rules, name) and side.other not in views
        }
        if missing and (Side.CRM not in missing or self.record.crm_account_id):
            more = await self._read(Side.BILLING in missing, Side.CRM in missing, None)
            for side, view in ((Side.BILLING, more.billing), (Side.CRM, more.crm)):
                if view is not None and side in missing:
                    views[side] = view
                    changes[side] = golden.changes_of(self.held[side.value], view)
        if first and Side.CRM in changes:
            # the first sync: a CRM copy of a billing-owned field that differs is catching up
            # (written with the billing values below), not an edit to restore
            changes[Side.CRM] = {
                k: v
                for k, v in changes[Side.CRM].items()
                if (rule := rules.rule(k)) is None or rule.may_change(Side.CRM)
            }
        self.started = True
        # what a re-read returns is the truth as of now, whatever time the event that asked for
        # it carries (a late event must not make the current value look stale)
        now = workflow.now()
        at = {side: now for side in Side}
        if not workflow.patched(REREAD_IS_NOW_PATCH):  # runs from before: the events' times
            at = {
                side: max((s.occurred_at for s in batch if s.side is side), default=now)
                for side in Side
            }
        hint = None
        b = changes.get(Side.BILLING, {})
        if "plan" in b and "mrr" in b and (self.record.value("mrr") or 0) > (b["mrr"] or 0):
            hint = "downgrade"
        outcomes: list[tuple[FieldChange, golden.Outcome]] = []
        for side in (Side.BILLING, Side.CRM):
            for name, value in sorted(changes.get(side, {}).items()):
                change = FieldChange(
                    field=name,
                    value=value,
                    side=side,
                    changed_at=at[side],
                    previous=self.record.value(name),
                    hint=hint,
                )
                outcome = golden.apply(self.record, change, rules)
                self.record = outcome.record
                outcomes.append((change, outcome))
        for side, view in views.items():
            self.held[side.value].update(view)
        profile, facts = await self._health(read.health) if read.health is not None else ({}, None)
        await self._act(outcomes, rules, first, profile)
        crm_holds = self.held[Side.CRM.value]
        if profile and all(crm_holds.get(k) == v for k, v in profile.items()):
            # written (or handed to the flusher): not again until a figure changes; denied
            # (observe mode) or no account linked yet: asked again at the next re-read
            self.health = self.health.model_copy(update={"written": facts})

    async def _health(
        self, inputs: health.HealthInputs
    ) -> tuple[dict[str, Any], HealthFacts | None]:
        """The health profile's fields when one of its figures changed (else nothing): the
        figures from the golden record and billing's inputs, the one-line summary drafted (the
        rules line without a model, or with ``health_line`` unlisted in drafting.yaml; a model's
        line refused by containment is audited on both sides, and the rules line is used)."""
        golden_now = {name: f.value for name, f in self.record.fields.items()}
        facts, self.health = health.facts(
            self._input.customer_id, golden_now, inputs, self.health, workflow.now()
        )
        if not health.changed(self.health, facts):
            return {}, None
        line = health_rules_line(facts)
        try:
            draft: HealthLineDraft = await workflow.execute_local_activity_method(
                DraftingActivities.draft_health_line,
                HealthLineInput(**facts.model_dump(), rules_line=line),
                summary="draft the health line",
                **DRAFT_OPTIONS,
            )
            line = draft.line
            if draft.refusals:
                self._note(f"health line: model draft refused ({draft.refusals[0][:80]})")
                await self.audit(
                    "draft_refused",
                    decision="deny",
                    outcome="rules line used",
                    summary="Health line: the model's draft was discarded for the rules line: "
                    + "; ".join(draft.refusals),
                    key_suffix=f"h{self.st.reads}",
                    parameters={"kind": "health_line"},
                )
        except (ActivityError, ApplicationError) as err:  # a local activity's: the latter
            workflow.logger.warning("health line draft unavailable (%s): the rules line", err)
        return health.crm_fields(facts, line), facts

    async def _act(
        self,
        outcomes: list[tuple[FieldChange, golden.Outcome]],
        rules: SyncRules,
        first: bool,
        profile: dict[str, Any] | None = None,
    ) -> None:
        crm_now: dict[str, Any] = {}
        crm_minor: dict[str, Any] = {}
        #: why each (target, field) would be written, and the side its value comes from
        why: dict[tuple[Side, str], tuple[str, Side]] = {}
        if profile:  # the health profile: a minor change (the next bulk flush) but the first
            (crm_now if first or self._input.flusher_id is None else crm_minor).update(profile)
            why.update(
                {(Side.CRM, k): ("a health profile figure changed", Side.BILLING) for k in profile}
            )
        to_billing: dict[str, Any] = {}
        restored: list[tuple[Side, str]] = []
        # a field in conflict is written nowhere until a person picks its value
        conflicted = {c.field for c, out in outcomes if out.verdict is Verdict.CONFLICT}
        for change, out in outcomes:
            self._note(f"{change.side.value} {change.field}: {out.verdict.value}")
            if out.verdict is Verdict.ECHO:
                self._set(echoes=self.st.echoes + 1)
            elif out.verdict is Verdict.CONFLICT:
                self._open_conflict(change, out)
            elif out.verdict is Verdict.RESTORE:
                restored.append((change.side, change.field))
                (crm_now if change.side is Side.CRM else to_billing)[change.field] = out.value
                why[(change.side, change.field)] = (
                    f"restore: the {change.side.value} edit is undone ({out.reason})",
                    change.side.other,
                )
            elif out.verdict is Verdict.ACCEPT and change.field not in conflicted:
                for target in out.write_to:
                    if self.held[target.value].get(change.field) == out.value:
                        continue  # that side holds it already
                    rule = rules.rule(change.field)
                    owner = rule.owner.value if rule else "?"
                    why[(target, change.field)] = (
                        f"changed in {change.side.value} ({change.field}: owner {owner})",
                        change.side,
                    )
                    if target is Side.BILLING:
                        to_billing[change.field] = out.value
                    elif (
                        first
                        or self._input.flusher_id is None
                        or self._two_way(rules, change.field)
                        or golden.is_immediate(change, rules)
                    ):
                        crm_now[change.field] = out.value
                    else:
                        crm_minor[change.field] = out.value
                if not any(self.held[t.value].get(change.field) != out.value for t in out.write_to):
                    self.record = golden.mark_synced(self.record, change.field, out.value)
        if not (crm_now or to_billing or crm_minor):
            return
        crm_permit = None
        if self._assist_on:
            # one decision for the pass: assist mode proposes instead of writing
            crm_permit = await self.ask_housekeeping(ActionKind.UPDATE_CRM_FIELD, self._facts())
            if self._assisting(crm_permit.decision):
                await self._propose({**crm_minor, **crm_now}, to_billing, why, crm_permit)
                return
        if crm_now:
            await self._write_crm(crm_now, restored, crm_permit)
        if to_billing:
            await self._write_billing(to_billing, restored)
        if crm_minor:
            await self._hand_minor(crm_minor)

    # --- reads and writes ------------------------------------------------------------------------

    async def _read(
        self, billing: bool, crm: bool, account_hint: str | None, with_health: bool = False
    ) -> SyncRead:
        try:
            return await self._read_sides(billing, crm, account_hint, with_health)
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and (cause.type or "").endswith(".not_found"):
                # the customer or account is gone: nothing to sync until it comes back
                self._note(f"not found on re-read: {cause.message[:120]}")
                return SyncRead()
            raise

    async def _read_sides(
        self, billing: bool, crm: bool, account_hint: str | None, with_health: bool = False
    ) -> SyncRead:
        read = await workflow.execute_activity_method(
            SyncActivities.sync_read,
            SyncReadInput(
                billing=self._input.billing,
                customer_id=self._input.customer_id,
                read_billing=billing,
                read_crm=crm,
                crm_account_id=self.record.crm_account_id or account_hint,
                health=with_health and billing,
                health_payments=self.health.payments_due(workflow.now().date()),
            ),
            summary="re-read "
            + " and ".join(s for s, on in (("billing", billing), ("the CRM", crm)) if on),
            **READ,
        )
        self._set(reads=self.st.reads + 1)
        if read.crm_account_id and read.crm_account_id != self.record.crm_account_id:
            self.record = self.record.model_copy(update={"crm_account_id": read.crm_account_id})
            self._set(crm_account_id=read.crm_account_id)
        return read

    def _facts(self) -> AccountFacts:
        return AccountFacts(
            id=self.record.crm_account_id or self._input.customer_id,
            mrr=int(self.record.value("mrr") or 0),
        )

    def _step(self) -> str:
        n = self.st.immediate_writes + self.st.restored + self.st.conflicts_resolved
        return f"{n}:{self.st.reads}"

    async def _approved_permit(self, kind: ActionKind, approver: str) -> Permit:
        """Policy asked again with the person's approval attached: an ``allow`` or nothing."""
        decision = await self._decide(
            PolicyRequest(
                use_case=self.use_case, action=kind, account=self._facts(), approved_by=approver
            ),
            summary=f"policy: {kind.value} approved by a person",
        )
        return self._permit(kind, decision)

    async def _write_crm(
        self,
        fields: dict[str, Any],
        restored: list[tuple[Side, str]],
        permit: Permit | None = None,
        approver: str | None = None,
    ) -> None:
        account_id = self.record.crm_account_id
        if account_id is None:
            self._note("no CRM account linked: the CRM side waits for a link")
            return
        restores = sorted(f for s, f in restored if s is Side.CRM)
        what = ", ".join(f"{k}={_shown(k, v)}" for k, v in sorted(fields.items()))
        step = self._step()
        if approver is not None:
            permit = await self._approved_permit(ActionKind.UPDATE_CRM_FIELD, approver)
        elif permit is None:
            permit = await self.ask_housekeeping(ActionKind.UPDATE_CRM_FIELD, self._facts())
        if not permit.allowed:
            await self.audit(
                "sync_to_crm",
                decision="deny",
                outcome="blocked",
                summary=f"Not written to the CRM ({', '.join(permit.decision.policy_ids)}): {what}",
                approver=approver,
                key_suffix=step,
                parameters={"fields": sorted(fields)},
            )
            return
        self._set(stage="writing the CRM")
        await self.write(
            permit,
            SyncActivities.sync_write_crm,
            SyncCrmWriteInput(account_id=account_id, fields=fields),
            summary=f"write {', '.join(sorted(fields))} to the CRM account",
        )
        self.held[Side.CRM.value].update(fields)
        for name, value in fields.items():
            if self.held[Side.BILLING.value].get(name, value) == value:
                self.record = golden.mark_synced(self.record, name, value)
        self._set(
            immediate_writes=self.st.immediate_writes + 1,
            restored=self.st.restored + (1 if restores else 0),
        )
        summary = f"Golden record written to the CRM account: {what}."
        if approver:
            summary += f" Proposed in assist mode, approved by {approver}."
        if restores:
            summary += (
                f" Restored {', '.join(restores)}: billing owns them (policies/sync.yaml), "
                "the CRM edit was undone."
            )
        await self.audit(
            "restore_field" if restores and len(restores) == len(fields) else "sync_to_crm",
            decision="needs_approval" if approver else permit.decision.outcome.value,
            outcome="written",
            summary=summary,
            policy_ids=permit.decision.policy_ids,
            approver=approver,
            key_suffix=step,
            parameters={"fields": sorted(fields), "restored": restores},
        )

    async def _write_billing(
        self,
        fields: dict[str, Any],
        restored: list[tuple[Side, str]],
        approver: str | None = None,
    ) -> None:
        restores = sorted(f for s, f in restored if s is Side.BILLING)
        what = ", ".join(f"{k}={_shown(k, v)}" for k, v in sorted(fields.items()))
        step = self._step()
        if approver is not None:
            permit = await self._approved_permit(ActionKind.UPDATE_BILLING_FIELD, approver)
        else:
            permit = await self.ask_housekeeping(ActionKind.UPDATE_BILLING_FIELD, self._facts())
        if not permit.allowed:
            await self.audit(
                "sync_to_billing",
                decision="deny",
                outcome="blocked",
                summary=f"Not written to billing ({', '.join(permit.decision.policy_ids)}): {what}",
                approver=approver,
                key_suffix=f"b{step}",
                parameters={"fields": sorted(fields)},
            )
            return
        self._set(stage="writing billing")
        await self.write(
            permit,
            SyncActivities.sync_write_billing,
            SyncBillingWriteInput(
                customer_id=self._input.customer_id,
                fields=fields,
                idempotency_key=idempotency_key(workflow.info().workflow_id, f"sync:b{step}"),
            ),
            summary=f"write {', '.join(sorted(fields))} to the billing customer",
        )
        self.held[Side.BILLING.value].update(fields)
        for name, value in fields.items():
            if self.held[Side.CRM.value].get(name, value) == value:
                self.record = golden.mark_synced(self.record, name, value)
        self._set(
            immediate_writes=self.st.immediate_writes + 1,
            restored=self.st.restored + (1 if restores else 0),
        )
        summary = f"Golden record written to the billing customer: {what}."
        if approver:
            summary += f" Proposed in assist mode, approved by {approver}."
        if restores:
            summary += f" Restored {', '.join(restores)}: the CRM owns them (policies/sync.yaml)."
        await self.audit(
            "sync_to_billing",
            decision="needs_approval" if approver else permit.decision.outcome.value,
            outcome="written",
            summary=summary,
            policy_ids=permit.decision.policy_ids,
            approver=approver,
            key_suffix=f"b{step}",
            parameters={"fields": sorted(fields), "restored": restores},
        )

    async def _hand_minor(self, fields: dict[str, Any]) -> None:
        """Minor changes wait for the flusher's next bulk write (one call per 200 accounts)."""
        account_id, flusher = self.record.crm_account_id, self._input.flusher_id
        if account_id is None or flusher is None:
            return
        rules = self._rules
        await workflow.execute_local_activity_method(
            SyncActivities.sync_hand_minor,
            HandMinorInput(
                flusher_id=flusher,
                billing=self._input.billing,
                crm=flusher.rsplit(":", 1)[-1],
                batch_every_s=self._input.batch_every_s
                or (rules.significance.batch_every_s if rules else 300),
                change=MinorChange(
                    customer_id=self._input.customer_id,
                    crm_account_id=account_id,
                    fields=fields,
                    event_id=f"{workflow.info().workflow_id}:{self.st.reads}",
                    at=workflow.now(),
                ),
            ),
            summary=f"hand {', '.join(sorted(fields))} to the bulk flusher",
            **LOCAL_TEMPORAL,
        )
        # the flusher writes them: the CRM will hold them (a failed record shows as drift on
        # the next CRM read, and is restored then)
        self.held[Side.CRM.value].update(fields)
        for name, value in fields.items():
            self.record = golden.mark_synced(self.record, name, value)
        self._set(minor_handed=self.st.minor_handed + len(fields))

    # --- conflicts: a person picks one -----------------------------------------------------------

    @staticmethod
    def _two_way(rules: SyncRules, name: str) -> bool:
        rule = rules.rule(name)
        return rule is not None and rule.direction is Direction.TWO_WAY

    def _open_conflict(self, change: FieldChange, out: golden.Outcome) -> None:
        assert out.golden is not None
        billing_side = change.side is Side.CRM
        conflict = Conflict(
            field=change.field,
            billing_value=out.golden.value if billing_side else change.value,
            billing_at=out.golden.changed_at if billing_side else change.changed_at,
            crm_value=change.value if billing_side else out.golden.value,
            crm_at=change.changed_at if billing_side else out.golden.changed_at,
        )
        conflict = conflict.model_copy(
            update={"action_id": self._conflict_action(conflict).action_id}
        )
        if any(c.action_id == conflict.action_id for c in self.conflicts):
            return
        # a newer conflict on the same field replaces the older one (its question is stale)
        self.conflicts = [c for c in self.conflicts if c.field != conflict.field] + [conflict]
        self._review_later(conflict)

    def _conflict_action(self, c: Conflict) -> ProposedAction:
        return ProposedAction(
            kind=ActionKind.UPDATE_BILLING_FIELD,
            customer_id=self._input.customer_id,
            subject_id=c.field,
            terms=(
                f"{c.field} changed on both sides: billing {_shown(c.field, c.billing_value)} at "
                f"{c.billing_at:%Y-%m-%d %H:%M:%S} UTC, CRM {_shown(c.field, c.crm_value)} at "
                f"{c.crm_at:%Y-%m-%d %H:%M:%S} UTC. Approve = take the CRM value; "
                "reject = keep billing's"
            ),
            reason=f"{c.field} is shared two-way (policies/sync.yaml): a person picks the value",
        )

    def _review_later(self, conflict: Conflict) -> None:
        """The wait for a person runs beside the sync: other changes go on meanwhile."""
        self._reviews.append(asyncio.create_task(self._review(conflict)))

    async def _review(self, conflict: Conflict) -> None:
        action = self._conflict_action(conflict)
        decision = PolicyDecision(
            outcome=Outcome.NEEDS_APPROVAL,
            policy_ids=["sync_conflict_review"],
            approver_roles=CONFLICT_ROLES,
        )
        eligible = await workflow.execute_local_activity_method(
            PolicyActivities.eligible_approvers,
            EligibleApproversInput(action=action.kind, roles=CONFLICT_ROLES),
            summary="who may resolve a conflict",
            **LOCAL_POLICY,
        )
        answer = await self._await_approval(
            action,
            decision,
            eligible.emails,
            action.reason,
            self.record.crm_account_id,
            CONFLICT_TIMING,
            lambda: all(c.action_id != conflict.action_id for c in self.conflicts),
            approver_crm_ids=eligible.crm_user_ids,
        )
        if answer.outcome is ApprovalOutcome.APPROVED:
            self._decided_conflicts.append((conflict, Side.CRM, answer.approver))
        elif answer.outcome is ApprovalOutcome.REJECTED:
            self._decided_conflicts.append((conflict, Side.BILLING, answer.approver))
        elif answer.outcome is ApprovalOutcome.EXPIRED:
            # nobody decided: billing's value stays the truth (the CRM keeps its edit until the
            # next change), and the expiry is on record
            self.conflicts = [c for c in self.conflicts if c.action_id != conflict.action_id]
            self._note(f"conflict on {conflict.field} expired undecided")

    async def _apply_decision(self, conflict: Conflict, side: Side, approver: str | None) -> None:
        if all(c.action_id != conflict.action_id for c in self.conflicts):
            return
        self.conflicts = [c for c in self.conflicts if c.action_id != conflict.action_id]
        self._set(stage="applying a person's decision")
        value = conflict.crm_value if side is Side.CRM else conflict.billing_value
        self.record, _ = golden.resolve(self.record, conflict.field, value, side, workflow.now())
        self._set(conflicts_resolved=self.st.conflicts_resolved + 1)
        loser = side.other
        step = self._step()
        await self.audit(
            "resolve_conflict",
            decision="needs_approval",
            outcome=f"{side.value} value kept",
            summary=(
                f"Conflict on {conflict.field} resolved by {approver}: the {side.value} value "
                f"wins and is written to the {loser.value} side."
            ),
            approver=approver,
            policy_ids=["sync_conflict_review"],
            key_suffix=f"c{step}",
            parameters={"field": conflict.field, "kept": side.value},
        )
        if self.held[loser.value].get(conflict.field) != value:
            if loser is Side.CRM:
                await self._write_crm({conflict.field: value}, [])
            else:
                await self._write_billing({conflict.field: value}, [])
        self.record = golden.mark_synced(self.record, conflict.field, value)

    # --- assist mode: a pass's writes proposed as one CRM task --------------------------------------

    @staticmethod
    def _assisting(decision: PolicyDecision) -> bool:
        """Assist mode with an approver who can say yes (assist and nobody may: a deny, audited
        as blocked like observe mode)."""
        return decision.mode is Mode.ASSIST and decision.outcome is Outcome.NEEDS_APPROVAL

    async def _propose(
        self,
        to_crm: dict[str, Any],
        to_billing: dict[str, Any],
        why: dict[tuple[Side, str], tuple[str, Side]],
        permit: Permit,
    ) -> None:
        if self.record.crm_account_id is None:
            self._note("assist mode: no CRM account linked, nothing proposed yet")
            return
        holds = {side: self.held[side.value] for side in Side}
        new = [
            ProposalItem(
                target=target,
                field=name,
                current=holds[target].get(name),
                proposed=value,
                source=why.get((target, name), ("", target.other))[1],
                why=why.get((target, name), ("the golden record differs", target.other))[0],
            )
            for target, fields in ((Side.CRM, to_crm), (Side.BILLING, to_billing))
            for name, value in sorted(fields.items())
        ]
        older = self.proposal
        items = golden.merge_proposal(older.items if older else [], new, holds)
        if not items:
            return
        digest = golden.proposal_hash(items)
        if older is not None and older.hash == digest:
            return  # the same values are waiting for a person already
        proposal = SyncProposal(
            items=items,
            hash=digest,
            opened_at=workflow.now(),
            approver_roles=permit.decision.approver_roles or CONFLICT_ROLES,
        )
        action = self._proposal_action(proposal)
        proposal = proposal.model_copy(update={"action_id": action.action_id})
        self.proposal = proposal  # an older one's wait ends as superseded
        self._set(stage="proposing to a person")
        task_id = await self._proposal_task(proposal, action)
        if self.proposal.action_id == proposal.action_id:
            proposal = self.proposal = proposal.model_copy(update={"task_id": task_id})
        shown = "; ".join(
            f"{i.target.value} {i.field}: {_shown(i.field, i.current)} → "
            f"{_shown(i.field, i.proposed)}"
            for i in items
        )
        await self.audit(
            "sync_proposed",
            decision=permit.decision.outcome.value,
            outcome=f"proposed ({task_id})" if task_id else "proposed (no task)",
            summary=(
                f"Assist mode: {len(items)} change(s) proposed for approval, nothing written: "
                f"{shown}." + (f" Supersedes proposal {older.hash}." if older is not None else "")
            )[:1000],
            policy_ids=permit.decision.policy_ids,
            key_suffix=f"p{digest}",
            parameters={"proposal": digest, "fields": [i.field for i in items]},
        )
        self._reviews.append(asyncio.create_task(self._review_proposal(proposal)))

    def _proposal_action(self, p: SyncProposal) -> ProposedAction:
        targets = sorted({i.target for i in p.items})
        return ProposedAction(
            kind=ActionKind.UPDATE_CRM_FIELD
            if Side.CRM in targets
            else ActionKind.UPDATE_BILLING_FIELD,
            customer_id=self._input.customer_id,
            subject_id=f"sync-proposal-{p.hash}",
            terms=(
                "write "
                + "; ".join(
                    f"{i.target.value} {i.field} {_shown(i.field, i.current)} → "
                    f"{_shown(i.field, i.proposed)}"
                    for i in p.items
                )
                + f" (proposal {p.hash}: approve applies exactly these values)"
            ),
            reason="account sync in assist mode: every write is proposed to a person",
        )

    async def _proposal_task(self, p: SyncProposal, action: ProposedAction) -> str | None:
        """The one CRM task of this proposal (its key: the workflow and the proposal's hash)."""
        permit = await self.ask_housekeeping(ActionKind.CREATE_TASK, self._facts())
        if not permit.allowed:
            self._note(f"proposal {p.hash}: no task ({', '.join(permit.decision.policy_ids)})")
            return None
        wf = workflow.info().workflow_id
        lines = [
            f"- {i.target.value}: {i.field}: {i.current!r} → {i.proposed!r} "
            f"(source: {i.source.value}; why: {i.why})"
            for i in p.items
        ]
        signal = {"action_id": p.action_id, "decision": "approve", "approver": "you@example.com"}
        description = (
            "RevBridge's account sync runs in assist mode (policies/modes.yaml): it writes "
            "nothing until a person approves. This pass would change:\n"
            + "\n".join(lines)
            + f"\n\nApprove to apply exactly these values (proposal {p.hash}); reject to leave "
            "both systems as they are. A newer proposal for this account replaces this one.\n"
            f"Run: revbridge approve {wf} --action {p.action_id} --as <your email> "
            f"(or --reject), or send the signal '{SIGNAL}' with {json.dumps(signal)} "
            "in the Temporal Web UI."
        )
        task = await self.write(
            permit,
            CrmActivities.upsert_crm_task,
            UpsertTaskInput(
                draft=TaskDraft(
                    key=idempotency_key(wf, f"proposal:{p.hash}"),
                    account_id=self.record.crm_account_id,
                    subject=f"Account sync proposal: {len(p.items)} change(s) to approve"[:250],
                    description=description,
                    due=workflow.now() + CONFLICT_TIMING.expire_after,
                )
            ),
            summary=f"propose {len(p.items)} change(s) as a CRM task",
        )
        return str(task.id)

    async def _review_proposal(self, proposal: SyncProposal) -> None:
        action = self._proposal_action(proposal)
        decision = PolicyDecision(
            outcome=Outcome.NEEDS_APPROVAL,
            policy_ids=["mode_assist", "sync_assist_proposal"],
            approver_roles=proposal.approver_roles,
        )
        eligible = await workflow.execute_local_activity_method(
            PolicyActivities.eligible_approvers,
            EligibleApproversInput(action=action.kind, roles=proposal.approver_roles),
            summary="who may approve a sync proposal",
            **LOCAL_POLICY,
        )
        answer = await self._await_approval(
            action,
            decision,
            eligible.emails,
            action.reason,
            self.record.crm_account_id,
            CONFLICT_TIMING,
            lambda: self.proposal is None or self.proposal.action_id != proposal.action_id,
            approver_crm_ids=eligible.crm_user_ids,
        )
        if answer.outcome is not ApprovalOutcome.SUPERSEDED:
            self._decided_proposals.append((proposal, answer))

    async def _apply_proposal(self, proposal: SyncProposal, answer: ApprovalResult) -> None:
        if self.proposal is None or self.proposal.action_id != proposal.action_id:
            self._note(f"proposal {proposal.hash} superseded before it was applied")
            return
        self.proposal = None
        fields = ", ".join(f"{i.target.value} {i.field}" for i in proposal.items)
        if answer.outcome is ApprovalOutcome.APPROVED and answer.approver:
            self._set(stage="applying an approved proposal")
            to_crm = {i.field: i.proposed for i in proposal.items if i.target is Side.CRM}
            to_billing = {i.field: i.proposed for i in proposal.items if i.target is Side.BILLING}
            if to_crm:
                await self._write_crm(to_crm, [], approver=answer.approver)
            if to_billing:
                await self._write_billing(to_billing, [], approver=answer.approver)
            self._set(proposals_applied=self.st.proposals_applied + 1)
            self._note(f"proposal {proposal.hash} approved by {answer.approver}: applied")
            return
        rejected = answer.outcome is ApprovalOutcome.REJECTED
        if rejected:
            self._set(proposals_rejected=self.st.proposals_rejected + 1)
        self._note(f"proposal {proposal.hash} {answer.outcome.value}: nothing written")
        await self.audit(
            "sync_proposal_" + ("rejected" if rejected else "expired"),
            decision="needs_approval",
            outcome=answer.outcome.value,
            summary=(
                f"Assist mode: proposal {proposal.hash} ({fields}) "
                + (f"rejected by {answer.approver}" if rejected else "expired undecided")
                + ": nothing written, both systems keep their values."
                + (f" Note: {answer.note[:200]}" if answer.note else "")
            ),
            approver=answer.approver,
            policy_ids=["mode_assist", "sync_assist_proposal"],
            key_suffix=f"p{proposal.hash}:{answer.outcome.value}",
            parameters={"proposal": proposal.hash, "fields": [i.field for i in proposal.items]},
        )

    # --- status ----------------------------------------------------------------------------------------

    def _full(self) -> bool:
        return self.history_full(self._input.history_limit)

    def _set(self, **changes: Any) -> None:
        self.st = self.st.model_copy(update=changes)

    def _note(self, line: str) -> None:
        self._set(last=[*self.st.last, line][-LAST:])

    def _audit_scope(self) -> AuditScope:
        return AuditScope(
            use_case=self.use_case,
            account_id=self.record.crm_account_id,
            billing_note=(NoteTarget.CUSTOMER, self._input.customer_id),
        )
