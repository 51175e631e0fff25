"""Usage-based expansion: one long-lived workflow per customer that watches metered usage, and
hands the account executive an opportunity with a draft quote before the customer hits the limit.

The story: the daily intake (``intake.py``) reads a page of customers' metered usage and plan
limits in bulk and signals each customer's workflow (``expansion:{billing}:{customer}``,
signal-with-start) with complete daily totals for the last days. The workflow keeps compact
daily aggregates per subscription and metered item (a day's total replaces the day: a retried or
repeated batch changes nothing; batches are deduplicated by event ID too), asks billing once for
the history a new customer lacks and never again, and forecasts each item (``domain/forecast``:
seasonal despiking, weekly smoothing, Theil–Sen trend, crossing band, confidence).

When the forecast crosses the policy's thresholds (``policies/expansion.yaml``: days to the
limit, confidence, minimum upgrade MRR) it opens ONE expansion per customer and item: an
``Expansion_Signal__c`` on the CRM account with the forecast and its reasons (a field RevBridge
owns: housekeeping), and — where policy allows it outright (``auto``) — an opportunity for the
account owner with a DRAFT quote for the next tier priced from the billing catalogue; in
``assist`` mode a task for the owner proposes them instead. A quote is never sent by RevBridge.
A discount on the upgrade waits for RevOps. A rising forecast updates the records; a falling one
(past the hysteresis) closes them with the reason; an opportunity a person lost is recorded as
lost, one left open too long expires; a lost or expired one does not come back the next day
because usage still rises (a cooldown, then only a materially earlier crossing or a bigger
deal reopens it). When the deal is won, quote-to-cash upgrades the existing
subscription and tells this workflow (``expansion_outcome``): the outcome is recorded for
attribution. Every key derives from the workflow ID, the chain's first run and the expansion's
generation, so continue-as-new and retries never write a record twice.
"""

from __future__ import annotations

from datetime import date, timedelta

from temporalio import workflow

from workflows.expansion import shapes
from workflows.expansion.closing import ExpansionClosing
from workflows.governed.audit import AuditScope
from workflows.governed.base import GovernedWorkflow
from workflows.options import READ

with workflow.unsafe.imports_passed_through():
    from activities.crm import CrmActivities
    from activities.expansion import (
        AccountFound,
        BackfillInput,
        ExpansionActivities,
        FindAccountInput,
        UpsertExpansionInput,
        UpsertSignalInput,
    )
    from activities.models import UpsertTaskInput
    from domain import expansion as ex
    from domain import temporal as names
    from domain.approvals import ApprovalTiming, ProposedAction
    from domain.expansion import (
        ExpansionDraft,
        ExpansionInput,
        ExpansionOutcome,
        ExpansionResult,
        ExpansionState,
        ExpansionStatus,
        MeteredPlan,
        OpenExpansion,
        OutcomeSignal,
        UsageBatch,
        merge_days,
    )
    from domain.forecast import (
        SEASON_DAYS,
        ExpansionPolicy,
        ForecastError,
        UsageForecast,
        decide,
        forecast,
    )
    from domain.ids import idempotency_key
    from domain.models import NoteTarget
    from domain.policy import AccountFacts, ActionKind
    from domain.temporal import UseCase

#: a day's usage moves the crossing by a day or two; the records are rewritten when it moved more
UPDATE_WHEN_MOVED_DAYS = 7
#: an open expansion that goes silent (no usage batch, no win or loss) expires on its own day:
#: the wait for usage ends then, not only after ``idle_days`` (histories before it replay)
EXPIRY_PATCH = "expansion-expiry"
#: a lost or expired expansion's item is not reopened the next day because usage still rises:
#: not within the policy's ``reopen_after_days``, then only for a materially different forecast
#: or deal (``domain.expansion.reopen_held``); the declined record is in the carried state
COOLDOWN_PATCH = "expansion-reopen-cooldown"


@workflow.defn(name=ex.WORKFLOW_TYPE)
class ExpansionWorkflow(ExpansionClosing, GovernedWorkflow):
    use_case = UseCase.EXPANSION

    @workflow.init
    def __init__(self, input: ExpansionInput) -> None:
        self._input = input
        self.s = input.carry or ExpansionState()
        self._chain = workflow.info().first_execution_run_id
        self._batches: list[UsageBatch] = []
        self._outcomes: list[OutcomeSignal] = []
        self._status = ExpansionStatus(customer_id=input.customer_id)
        #: open expansions whose deal a person won: quote-to-cash tells the outcome, no expiry
        self._won_waiting: set[str] = set()
        self._init_governed()

    # --- messages --------------------------------------------------------------------------------

    @workflow.signal(name=ex.SIGNAL_USAGE, description="Daily usage totals from the intake.")
    def usage(self, batch: UsageBatch) -> None:
        if batch.customer_id != self._input.customer_id or self._seen(batch.event_id):
            return
        self._batches.append(batch)

    @workflow.signal(
        name=ex.SIGNAL_OUTCOME,
        description="How an expansion ended: {event_id, opportunity_id, outcome, mrr_before, "
        "mrr_after} (quote-to-cash sends 'won').",
    )
    def expansion_outcome(self, outcome: OutcomeSignal) -> None:
        if self._seen(outcome.event_id):
            return
        self._outcomes.append(outcome)

    @workflow.query(name=ex.QUERY_STATUS, description="Usage held, forecasts, open expansions.")
    def status(self) -> ExpansionStatus:
        return shapes.status_view(self._status, self.s)

    def _seen(self, event_id: str) -> bool:
        pending = {b.event_id for b in self._batches} | {o.event_id for o in self._outcomes}
        return event_id in self.s.seen_events or event_id in pending

    def _remember(self, event_id: str) -> None:
        self.s.seen_events = [*self.s.seen_events, event_id][-ex.SEEN_MAX :]

    # --- the plot ------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: ExpansionInput) -> ExpansionResult:
        if input.carry is None:
            workflow.upsert_search_attributes(
                [
                    names.USE_CASE_KEY.value_set(self.use_case),
                    names.CUSTOMER_KEY.value_set(input.customer_id),
                ]
            )
        while True:
            self._stage("waiting for usage")
            wait = timedelta(days=input.idle_days)
            due = self._expiry_due() if self.s.open else None
            if due is not None and workflow.patched(EXPIRY_PATCH):
                wait = min(wait, max(due - workflow.now(), timedelta(seconds=1)))
            else:
                due = None
            try:
                await workflow.wait_condition(
                    lambda: bool(self._batches or self._outcomes),
                    timeout=wait,
                    timeout_summary="no usage for a while"
                    if due is None
                    else "an open expansion expires",
                )
            except TimeoutError:
                if due is not None and workflow.now() >= due:
                    await self._expire_silent()
                    continue
                if not self.s.open:
                    self._stage("closed: idle")
                    await self.handlers_finished()
                    return ExpansionResult(customer_id=input.customer_id, closed=self.s.closed)
                continue
            while self._outcomes:
                outcome = self._outcomes.pop(0)
                self._remember(outcome.event_id)
                await self._record_outcome(outcome)
            while self._batches:
                batch = self._batches.pop(0)
                self._remember(batch.event_id)
                await self._take(batch)
            if self.history_full(input.history_limit):
                await self.continue_as_new(input.model_copy(update={"carry": self.s}))

    # --- one batch: merge, forecast, decide --------------------------------------------------------

    async def _take(self, batch: UsageBatch) -> None:
        s = self.s
        self._stage("forecasting")
        s.batches += 1
        s.expire_after_days = batch.policy.expire_after_days
        for plan in batch.plans:
            s.plans[plan.key] = plan
        await self._backfill(batch)
        for plan in batch.plans:
            days = [d for d in batch.days if d.subscription_id == plan.subscription_id]
            days = [d for d in days if d.item == plan.item]
            # the batch covers every day from covers_from to today: a day without records is 0
            start = batch.covers_from or batch.today
            days = shapes.with_zero_days(plan, days, start, batch.today)
            s.series[plan.key] = merge_days(s.series.get(plan.key), days)
        s.last_day = batch.today
        if not s.account_read:
            found: AccountFound = await workflow.execute_activity_method(
                ExpansionActivities.expansion_find_account,
                FindAccountInput(billing=self._input.billing, customer_id=self._input.customer_id),
                summary="the CRM account",
                **READ,
            )
            s.account, s.account_read = found.account, True
        for plan in batch.plans:
            await self._forecast_one(plan, batch.policy, batch.today)
        for key in [k for k in s.open if k not in {p.key for p in batch.plans}]:
            await self._close(
                key, "the metered item left the subscription", ExpansionOutcome.CLOSED
            )

    async def _backfill(self, batch: UsageBatch) -> None:
        """The history a customer's first batch lacks, read once for all its items."""
        s = self.s
        new = [p for p in batch.plans if p.key not in s.backfilled]
        if not new:
            return
        since = batch.today - timedelta(days=ex.BACKFILL_DAYS)
        until = (batch.covers_from or batch.today) - timedelta(days=1)
        got = await workflow.execute_activity_method(
            ExpansionActivities.expansion_backfill,
            BackfillInput(
                subscription_ids=sorted({p.subscription_id for p in new}), since=since, plans=new
            ),
            summary=f"usage since {since}",
            **READ,
        )
        for plan in new:
            days = [
                d
                for d in got.days
                if d.subscription_id == plan.subscription_id
                and d.item == plan.item
                and d.day <= until
            ]
            first = min((d.day for d in days), default=None)
            if first is not None:
                days = shapes.with_zero_days(plan, days, first, until)
            s.series[plan.key] = merge_days(s.series.get(plan.key), days)
            s.backfilled = [*s.backfilled, plan.key]

    async def _forecast_one(self, plan: MeteredPlan, policy: ExpansionPolicy, today: date) -> None:
        s = self.s
        series = s.series.get(plan.key)
        if series is None or len(series.values) < 2 * SEASON_DAYS:
            self._note(plan.key, f"{len(series.values) if series else 0} days of usage so far")
            return
        try:
            f = forecast(series.values, series.last_day, plan.limit)
        except ForecastError as err:
            self._note(plan.key, str(err))
            return
        is_open = plan.key in s.open
        action = decide(f, policy, upgrade_mrr=plan.upgrade_mrr, is_open=is_open)
        self._note(plan.key, shapes.forecast_line(action, f))
        if is_open:
            expired = s.open[plan.key].opened_on + timedelta(days=policy.expire_after_days)
            if await self._closed_by_person(plan.key):
                return
            if today >= expired:
                await self._close(
                    plan.key,
                    f"open for {policy.expire_after_days} days without a decision",
                    ExpansionOutcome.EXPIRED,
                )
                return
        if action.action == "open" and plan.upgrade_price_id:
            declined = s.declined.get(plan.key)
            if declined is not None and workflow.patched(COOLDOWN_PATCH):
                held = ex.reopen_held(
                    declined,
                    today=today,
                    crossing=f.crossing,
                    upgrade_mrr=plan.upgrade_mrr,
                    policy=policy,
                )
                if held is not None:
                    self._note(plan.key, f"held: {held}")
                    return
            await self._open(plan, f, policy, action.reason)
        elif action.action == "update":
            await self._update_open(plan, f, policy)
        elif action.action == "close":
            await self._close(plan.key, action.reason, ExpansionOutcome.CLOSED, f)

    # --- opening and updating (closing: closing.py) -----------------------------------------------

    def _key(self, key: str, gen: int, what: str) -> str:
        return idempotency_key(workflow.info().workflow_id, f"{self._chain}:{key}:{gen}:{what}")

    def _facts(self, plan: MeteredPlan | None = None) -> AccountFacts:
        a = self.s.account
        if a is None:
            return AccountFacts(id=self._input.customer_id)
        return AccountFacts(id=a.id, tier=a.tier, mrr=plan.upgrade_mrr if plan else 0)

    async def _open(
        self, plan: MeteredPlan, f: UsageForecast, policy: ExpansionPolicy, why: str
    ) -> None:
        s = self.s
        if s.account is None:
            self._note(plan.key, "no CRM account linked to this customer: nothing to open")
            return
        gen = s.generations.get(plan.key, 0) + 1
        s.generations = {**s.generations, plan.key: gen}
        opened = OpenExpansion(
            key=plan.key,
            item=plan.item,
            subscription_id=plan.subscription_id,
            opened_on=f.today,
            upgrade_price_id=plan.upgrade_price_id,
            upgrade_mrr=plan.upgrade_mrr,
            days_to_limit=f.days_to_limit,
            generation=gen,
            crossing=f.crossing,
        )
        discount = await self._discount(plan, policy, opened)
        opened = opened.model_copy(update={"discount_percent": discount})
        records = await self.ask(ActionKind.UPDATE_CRM_FIELD, self._facts(plan))
        if records.allowed:
            made = await self.write(
                records,
                ExpansionActivities.expansion_upsert_records,
                UpsertExpansionInput(
                    draft=self._draft(plan, f, opened),
                    billing=self._input.billing,
                    upgrade_price_id=plan.upgrade_price_id,
                ),
                summary="the opportunity and its draft quote",
            )
            opened = opened.model_copy(
                update={"opportunity_id": made.opportunity_id, "quote_id": made.quote_id}
            )
        else:
            opened = opened.model_copy(update={"task_id": await self._propose(plan, f, opened)})
        opened = opened.model_copy(update={"signal_id": await self._signal(plan, f, opened)})
        s.open = {**s.open, plan.key: opened}
        s.declined = {k: v for k, v in s.declined.items() if k != plan.key}
        await self._audit(
            "expansion_opened",
            outcome="opportunity and draft quote"
            if opened.opportunity_id
            else ("proposed to the owner" if opened.task_id else "not written"),
            decision=records.decision.outcome.value,
            summary=shapes.opened_summary(plan, f, why, discount),
            key_suffix=f"{plan.key}:{gen}:opened",
        )

    async def _discount(
        self, plan: MeteredPlan, policy: ExpansionPolicy, opened: OpenExpansion
    ) -> float:
        """A discount on the recommended tier goes on the quote only with RevOps' approval."""
        if not policy.upgrade_discount_percent:
            return 0.0
        governed = await self.govern(
            ProposedAction(
                kind=ActionKind.OFFER_DISCOUNT,
                customer_id=self._input.customer_id,
                subject_id=plan.subscription_id,
                amount=plan.upgrade_mrr,
                currency=plan.currency,
                discount_percent=policy.upgrade_discount_percent,
                reason=f"expansion quote: {plan.upgrade_price_id} for {plan.item}",
            ),
            self._facts(plan),
            why=f"Draft quote for {plan.upgrade_price_id} with "
            f"{policy.upgrade_discount_percent:g}% off (the expansion policy's discount)",
            execute=_approved,
            audit=self._audit_governed,
            timing=ApprovalTiming(),
            crm_account_id=self.s.account.id if self.s.account else None,
        )
        return policy.upgrade_discount_percent if governed.status == "executed" else 0.0

    async def _audit_governed(self, governed: object) -> None:
        await self.audit_governed(governed)  # type: ignore[arg-type]

    def _draft(self, plan: MeteredPlan, f: UsageForecast, o: OpenExpansion) -> ExpansionDraft:
        a = self.s.account
        assert a is not None
        return shapes.expansion_draft(
            plan,
            f,
            o,
            a,
            opportunity_key=self._key(plan.key, o.generation, "opportunity"),
            quote_key=self._key(plan.key, o.generation, "quote"),
            workflow_id=workflow.info().workflow_id,
        )

    async def _signal(
        self,
        plan: MeteredPlan,
        f: UsageForecast | None,
        o: OpenExpansion,
        status: str = "Open",
        reason: str | None = None,
    ) -> str | None:
        """The expansion signal record on the CRM account (housekeeping: only a deny stops it)."""
        a = self.s.account
        if a is None:
            return o.signal_id
        permit = await self.ask_housekeeping(ActionKind.UPDATE_CRM_FIELD, self._facts(plan))
        if not permit.allowed:
            return o.signal_id
        record = shapes.signal_record(
            plan,
            f,
            o,
            a,
            key=self._key(plan.key, o.generation, "signal"),
            billing=self._input.billing,
            customer_id=self._input.customer_id,
            workflow_id=workflow.info().workflow_id,
            status=status,
            reason=reason,
        )
        written = await self.write(
            permit,
            ExpansionActivities.expansion_upsert_signal,
            UpsertSignalInput(record=record),
            summary=f"expansion signal: {status.lower()}",
        )
        return written.id

    async def _propose(self, plan: MeteredPlan, f: UsageForecast, o: OpenExpansion) -> str | None:
        """Assist mode: a task for the account owner proposing the opportunity and quote."""
        a = self.s.account
        assert a is not None
        permit = await self.ask_housekeeping(ActionKind.CREATE_TASK, self._facts(plan))
        if not permit.allowed:
            return None
        draft = self._draft(plan, f, o)
        task = await self.write(
            permit,
            CrmActivities.upsert_crm_task,
            UpsertTaskInput(
                draft=shapes.proposal_task(
                    plan, f, draft, a, self._key(plan.key, o.generation, "task")
                )
            ),
            summary="propose the expansion to the owner",
        )
        return task.id

    async def _update_open(
        self, plan: MeteredPlan, f: UsageForecast, policy: ExpansionPolicy
    ) -> None:
        s = self.s
        o = s.open[plan.key]
        moved = (
            o.days_to_limit is None
            or f.days_to_limit is None
            or abs(o.days_to_limit - f.days_to_limit) >= UPDATE_WHEN_MOVED_DAYS
        )
        if not moved and o.upgrade_price_id == plan.upgrade_price_id:
            return
        o = o.model_copy(
            update={
                "updates": o.updates + 1,
                "days_to_limit": f.days_to_limit,
                "crossing": f.crossing,
            }
        )
        if o.opportunity_id:
            permit = await self.ask(ActionKind.UPDATE_CRM_FIELD, self._facts(plan))
            if permit.allowed:
                await self.write(
                    permit,
                    ExpansionActivities.expansion_upsert_records,
                    UpsertExpansionInput(
                        draft=self._draft(plan, f, o),
                        billing=self._input.billing,
                        upgrade_price_id=plan.upgrade_price_id,
                    ),
                    summary="update the opportunity and its draft quote",
                )
        await self._signal(plan, f, o)
        s.open = {**s.open, plan.key: o}

    # --- audit and status ----------------------------------------------------------------------------

    def _audit_scope(self) -> AuditScope:
        a = self.s.account
        return AuditScope(
            use_case=self.use_case,
            account_id=a.id if a else None,
            billing_note=(NoteTarget.CUSTOMER, self._input.customer_id),
            key_prefix=self._chain,
        )

    async def _audit(self, action: str, **fields: object) -> None:
        ids = await self.audit(action, **fields)  # type: ignore[arg-type]
        self._status = self._status.model_copy(
            update={"audit_ids": [*self._status.audit_ids, *ids][-50:]}
        )

    def _note(self, key: str, line: str) -> None:
        self._status = self._status.model_copy(
            update={"last_forecast": {**self._status.last_forecast, key: line[:300]}}
        )

    def _stage(self, stage: str) -> None:
        self._status = self._status.model_copy(update={"stage": stage})


async def _approved(permit: object, action: ProposedAction) -> str:
    """The approved discount is a term of the draft quote written next, not a write of its own."""
    return "approved"
