"""The texts a dunning run writes: the CRM case and the Web UI's current details. Pure functions
of the run's state, so the workflow stays a plot and these are unit-testable."""

from __future__ import annotations

from datetime import timedelta

from domain.decisions import DunningAssessment
from domain.dunning import DunningState, DunningStatus
from domain.models import CaseDraft, CaseRef, CrmAccount, InvoiceContext


def case_draft(
    ctx: InvoiceContext,
    assessment: DunningAssessment,
    account: CrmAccount | None,
    billing: str,
    workflow_id: str,
    key: str,
) -> CaseDraft:
    """The billing case: the invoice, the customer, the last decline and the assessment."""
    inv = ctx.invoice
    failure = ctx.last_failure
    lines = [
        f"Invoice {inv.id}: {inv.amount_due / 100:,.2f} {inv.currency} due (total {inv.total / 100:,.2f}).",
        f"Billing customer {ctx.customer.id} on {billing}; "
        f"MRR {ctx.customer.mrr / 100:,.2f} {ctx.customer.currency}.",
    ]
    if failure:
        lines.append(
            f"Last attempt {failure.id} declined: {failure.decline_code or 'no code'}"
            + (f" ({failure.decline_message})" if failure.decline_message else "")
        )
    lines.append(f"Assessment ({assessment.reasoner}): {assessment.failure_class.value}.")
    lines.extend(f"- {r}" for r in assessment.reasons)
    lines.append(
        "Recommended: "
        + (
            "retry the payment and remind the customer."
            if assessment.retry_recommended
            else "ask the customer for a new payment method; retrying will not help."
        )
    )
    lines.append(f"Opened by RevBridge workflow {workflow_id}.")
    return CaseDraft(
        key=key,
        account_id=account.id if account else None,
        subject=f"Payment failed: invoice {inv.id} ({assessment.failure_class.value})",
        description="\n".join(lines),
        priority=assessment.priority,
        invoice_id=inv.id,
    )


def _case_label(case: CaseRef | None) -> str:
    return (case.number or case.id) if case else "none"


def playbook_details(state: DunningState, next_line: str) -> str:
    """The Web UI's current details: where the schedule stands, in one short paragraph."""
    assert state.context is not None
    s, inv = state.status, state.context.invoice
    lines = [
        f"**Dunning invoice {inv.id}** ({inv.amount_due / 100:,.2f} {inv.currency}), "
        f"segment {s.segment or '-'}, {s.failure_class or '-'}, case {_case_label(state.case)}.",
        f"Reminder {s.reminders_sent} of {s.reminders_total} sent; {next_line}; "
        "waiting for payment.",
    ]
    if s.actions:
        lines.append("Actions: " + "; ".join(s.actions) + ".")
    return "\n\n".join(lines)


def legacy_wait_details(state: DunningState, wait: timedelta) -> str:
    """Current details of a pre-playbook run waiting for payment."""
    assert state.context is not None
    s = state.status
    return (
        f"Case {_case_label(state.case)} ({s.priority} priority, {s.failure_class}). "
        f"Waiting up to {wait.days} days {wait.seconds // 3600} h for invoice "
        f"{state.context.invoice.id} to be paid. Actions: {'; '.join(s.actions) or 'none'}."
    )


def closed_details(outcome: str, status: DunningStatus) -> str:
    return f"Closed: {outcome}. Actions: {'; '.join(status.actions) or 'none'}."
