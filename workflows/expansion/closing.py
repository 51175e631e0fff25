"""The end of an expansion: closed because the forecast fell or the item left, lost by a
person, expired when it went silent (patch ``expansion-expiry``), or won — the outcome quote-
to-cash signals, recorded for attribution. A lost or expired one is held against a reopen
(patch ``expansion-reopen-cooldown``: its record is in the carried state, no command).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from temporalio import workflow

from workflows.expansion import shapes
from workflows.options import READ

with workflow.unsafe.imports_passed_through():
    from activities.expansion import CloseExpansionInput, ExpansionActivities, OpportunityStateInput
    from domain.expansion import ExpansionOutcome, OutcomeSignal
    from domain.forecast import ExpansionPolicy, UsageForecast
    from domain.policy import ActionKind


class ExpansionClosing:
    """Mixin of :class:`~workflows.expansion.workflow.ExpansionWorkflow`."""

    def _expire_days(self) -> int:
        return self.s.expire_after_days or ExpansionPolicy().expire_after_days

    def _expiry_due(self) -> datetime | None:
        """When the earliest open expansion expires (midnight UTC of its day), leaving out one
        whose deal is won and waits for quote-to-cash to tell the outcome."""
        days = timedelta(days=self._expire_days())
        dues = [o.opened_on + days for k, o in self.s.open.items() if k not in self._won_waiting]
        return shapes.midnight(min(dues)) if dues else None

    async def _expire_silent(self) -> None:
        """Every open expansion past its day with no win or loss: closed as expired in the CRM
        (the opportunity or deal closed lost with the reason, the quote rejected, the signal
        Expired), audited, and recorded for attribution. One a person closed meanwhile is
        recorded as they left it (lost), and a won one waits for quote-to-cash."""
        today = workflow.now().date()
        days = self._expire_days()
        for key, o in list(self.s.open.items()):
            if key in self._won_waiting or today < o.opened_on + timedelta(days=days):
                continue
            if await self._closed_by_person(key):
                if key in self.s.open:  # won: quote-to-cash tells the outcome
                    self._won_waiting.add(key)
                continue
            await self._close(
                key,
                f"expired: no win or loss in {days} days (no usage reported since "
                f"{self.s.last_day or o.opened_on})",
                ExpansionOutcome.EXPIRED,
                on=o.opened_on + timedelta(days=days),
            )

    async def _closed_by_person(self, key: str) -> bool:
        """An opportunity a person closed lost is recorded as lost (won waits for quote-to-cash)."""
        o = self.s.open[key]
        if not o.opportunity_id:
            return False
        state = await workflow.execute_activity_method(
            ExpansionActivities.expansion_opportunity_state,
            OpportunityStateInput(opportunity_id=o.opportunity_id),
            summary="the expansion opportunity's stage",
            **READ,
        )
        if state.closed and not state.won:
            await self._close(
                key,
                f"the opportunity was closed: {state.stage or 'deleted'}",
                ExpansionOutcome.LOST,
                write=False,
            )
            return True
        return state.closed  # won: quote-to-cash tells the outcome

    async def _close(
        self,
        key: str,
        reason: str,
        outcome: ExpansionOutcome,
        f: UsageForecast | None = None,
        *,
        write: bool = True,
        mrr: tuple[int, int] = (0, 0),
        on: date | None = None,
    ) -> None:
        s = self.s
        o = s.open.get(key)
        if o is None:
            return
        if outcome in (ExpansionOutcome.LOST, ExpansionOutcome.EXPIRED):
            # held against a reopen (COOLDOWN_PATCH); state only, no command
            s.declined = {
                **s.declined,
                key: shapes.declined(key, o, outcome, on or s.last_day or workflow.now().date()),
            }
        plan = s.plans.get(key)
        decision = "allow"
        if write and o.opportunity_id and outcome is not ExpansionOutcome.WON:
            permit = await self.ask_housekeeping(ActionKind.UPDATE_CRM_FIELD, self._facts(plan))
            decision = permit.decision.outcome.value
            if permit.allowed:
                await self.write(
                    permit,
                    ExpansionActivities.expansion_close,
                    CloseExpansionInput(
                        opportunity_id=o.opportunity_id, quote_id=o.quote_id, reason=reason
                    ),
                    summary=f"close the expansion: {outcome.value}",
                )
        if plan is not None:
            await self._signal(plan, f, o, status=outcome.value.title(), reason=reason)
        s.open = {k: v for k, v in s.open.items() if k != key}
        s.closed = [
            *s.closed,
            shapes.closed(key, o, outcome, reason, s.last_day or workflow.now().date(), mrr),
        ][-20:]
        await self._audit(
            f"expansion_{outcome.value}",
            outcome=outcome.value,
            decision=decision,
            summary=shapes.closed_summary(o, outcome, reason, mrr),
            key_suffix=f"{key}:{o.generation}:{outcome.value}",
        )

    async def _record_outcome(self, signal: OutcomeSignal) -> None:
        key = next(
            (k for k, o in self.s.open.items() if o.opportunity_id == signal.opportunity_id), None
        )
        if key is None:
            self._note("outcome", f"{signal.outcome.value} for an unknown opportunity, ignored")
            return
        await self._close(
            key,
            f"opportunity {signal.opportunity_id} {signal.outcome.value}",
            signal.outcome,
            mrr=(signal.mrr_before, signal.mrr_after),
        )
