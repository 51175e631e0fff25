"""What an expansion run writes and says, built from what it knows: the opportunity with its
draft quote, the expansion signal record, the owner's task in assist mode, the declined record
held against a reopen, the audit summaries and the status lines. Pure functions of their
arguments (the workflow passes its keys and ID in), so they run the same in a replay; no command
is scheduled here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.expansion import (
        ClosedExpansion,
        DeclinedExpansion,
        ExpansionDraft,
        ExpansionOutcome,
        ExpansionState,
        ExpansionStatus,
        MeteredPlan,
        OpenExpansion,
        SignalRecord,
        UsageDay,
    )
    from domain.forecast import SignalAction, UsageForecast
    from domain.models import CrmAccount, TaskDraft


def days_between(first: date, last: date) -> list[date]:
    """Every day from ``first`` to ``last``, both included."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def midnight(d: date) -> datetime:
    return datetime.combine(d, time(), UTC)


def with_zero_days(
    plan: MeteredPlan, days: list[UsageDay], first: date, last: date
) -> list[UsageDay]:
    """``days`` (one item's records) with a zero for each day from ``first`` to ``last`` that has
    none: a batch or a backfill covers every day of its span, so a day without records is 0."""
    had = {d.day for d in days}
    return days + [
        UsageDay(subscription_id=plan.subscription_id, item=plan.item, day=day, quantity=0)
        for day in days_between(first, last)
        if day not in had
    ]


def status_view(status: ExpansionStatus, s: ExpansionState) -> ExpansionStatus:
    """The query's answer: usage held, open and closed expansions, batches taken."""
    return status.model_copy(
        update={
            "days": {k: len(v.values) for k, v in s.series.items()},
            "open": [
                f"{o.item}: opportunity {o.opportunity_id or '-'}, quote {o.quote_id or '-'}"
                + (f", task {o.task_id}" if o.task_id else "")
                for o in s.open.values()
            ],
            "closed": [f"{c.key}: {c.outcome.value} ({c.reason})" for c in s.closed],
            "batches": s.batches,
        }
    )


def forecast_line(action: SignalAction, f: UsageForecast) -> str:
    """The status line of one item's forecast and what it decided."""
    return f"{action.action}: {action.reason}" + (
        ""
        if action.action in ("open", "update")
        else (
            f"; limit in {f.days_to_limit} days" if f.days_to_limit is not None else "; no crossing"
        )
        + f", confidence {f.confidence:.0%}"
    )


def expansion_draft(
    plan: MeteredPlan,
    f: UsageForecast,
    o: OpenExpansion,
    account: CrmAccount,
    *,
    opportunity_key: str,
    quote_key: str,
    workflow_id: str,
) -> ExpansionDraft:
    """The opportunity for the account owner with its draft quote for the next tier."""
    close = f.crossing or (f.today + timedelta(days=30))
    return ExpansionDraft(
        opportunity_key=opportunity_key,
        quote_key=quote_key,
        account_id=account.id,
        owner_id=account.owner_id,
        name=f"Expansion: {plan.item} → {plan.upgrade_price_id}"[:120],
        close_date=close,
        currency=plan.currency,
        description="\n".join(
            [
                f"Usage forecast for {plan.item} (subscription {plan.subscription_id}):",
                *f.reasons,
                f"Recommended: {plan.upgrade_price_id} at "
                f"{plan.upgrade_unit_amount / 100:,.2f} {plan.currency}/month "
                f"(+{plan.upgrade_mrr / 100:,.2f} MRR).",
                "Draft quote: review and present it yourself; RevBridge never sends it.",
                f"RevBridge workflow {workflow_id}.",
            ]
        ),
        quantity=plan.plan_quantity,
        unit_amount=plan.upgrade_unit_amount,
        discount_percent=o.discount_percent,
        quote_expires=close + timedelta(days=30),
        upgrade_mrr=plan.upgrade_mrr,
    )


def signal_record(
    plan: MeteredPlan,
    f: UsageForecast | None,
    o: OpenExpansion,
    account: CrmAccount,
    *,
    key: str,
    billing: str,
    customer_id: str,
    workflow_id: str,
    status: str,
    reason: str | None,
) -> SignalRecord:
    """The expansion signal on the CRM account: the expansion's state and its forecast."""
    return SignalRecord(
        key=key,
        account_id=account.id,
        billing=billing,
        customer_id=customer_id,
        subscription_id=plan.subscription_id,
        item=plan.item,
        status=status,
        current_price_id=plan.plan_price_id,
        recommended_price_id=o.upgrade_price_id,
        upgrade_mrr=o.upgrade_mrr,
        opportunity_id=o.opportunity_id,
        quote_id=o.quote_id,
        close_reason=reason,
        workflow_id=workflow_id,
        included_per_period=plan.included_per_period,
        **(
            {
                "days_to_limit": f.days_to_limit,
                "crossing": f.crossing,
                "crossing_earliest": f.crossing_earliest,
                "crossing_latest": f.crossing_latest,
                "confidence": f.confidence,
                "projected_per_period": f.projected_per_period,
                "reasons": f.reasons,
            }
            if f is not None
            else {}
        ),
    )


def proposal_task(
    plan: MeteredPlan, f: UsageForecast, draft: ExpansionDraft, account: CrmAccount, key: str
) -> TaskDraft:
    """Assist mode: the owner's task proposing the opportunity and quote of ``draft``."""
    return TaskDraft(
        key=key,
        account_id=account.id,
        owner_id=account.owner_id,
        subject=f"Expansion proposed: {plan.item} heads for its limit"[:250],
        description=draft.description
        + "\n\nRevBridge runs expansion in assist mode: create the opportunity and "
        "the quote yourself if you agree (policies/modes.yaml: auto creates them).",
        due=midnight(f.crossing) if f.crossing else None,
    )


def opened_summary(plan: MeteredPlan, f: UsageForecast, why: str, discount: float) -> str:
    """The audit summary of an opened expansion."""
    return (
        f"{plan.item} on {plan.subscription_id}: {why}. Recommended "
        f"{plan.upgrade_price_id} (+{plan.upgrade_mrr / 100:,.2f} {plan.currency} MRR"
        + (f", {discount:g}% off approved" if discount else "")
        + "). "
        + " ".join(f.reasons)
    )


def declined(key: str, o: OpenExpansion, outcome: ExpansionOutcome, on: date) -> DeclinedExpansion:
    """A lost or expired expansion, held against a reopen (its crossing, or the one implied by
    its days to the limit when it opened)."""
    crossing = o.crossing or (
        o.opened_on + timedelta(days=o.days_to_limit) if o.days_to_limit is not None else None
    )
    return DeclinedExpansion(
        key=key, outcome=outcome, on=on, crossing=crossing, upgrade_mrr=o.upgrade_mrr
    )


def closed(
    key: str,
    o: OpenExpansion,
    outcome: ExpansionOutcome,
    reason: str,
    on: date,
    mrr: tuple[int, int],
) -> ClosedExpansion:
    """How an expansion ended, kept for attribution."""
    return ClosedExpansion(
        key=key,
        opportunity_id=o.opportunity_id,
        outcome=outcome,
        reason=reason[:250],
        on=on,
        mrr_before=mrr[0],
        mrr_after=mrr[1],
    )


def closed_summary(
    o: OpenExpansion, outcome: ExpansionOutcome, reason: str, mrr: tuple[int, int]
) -> str:
    """The audit summary of a closed expansion."""
    return (
        f"Expansion of {o.item} on {o.subscription_id} "
        + (f"(opportunity {o.opportunity_id}) " if o.opportunity_id else "")
        + f"{outcome.value}: {reason}"
        + (f"; MRR {mrr[0] / 100:,.2f} → {mrr[1] / 100:,.2f}" if any(mrr) else "")
        + "."
    )
