"""Support context (customer 360): the workflow's input and result (shared with the webhook
service, which starts it), and the pure summary a new case gets.

The summary is what a support agent reads on the case before answering: plan, payment status,
open dunning, the latest invoices and payments by ID (so they can be looked up and quoted),
credits and usage. It is built from provider IDs, amounts and dates only — never an email, a
name or customer-controlled text — and it is bounded, so it fits a Salesforce long text field
and reads at a glance.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from domain.models import CrmAccount, Frozen, InvoiceStatus
from domain.records import CustomerSnapshot

WORKFLOW_TYPE = "SupportContextWorkflow"

#: the longest case note we write (Salesforce long text areas take 32 768; people read less)
MAX_NOTE_CHARS = 2_000
#: how much history the note cites: the snapshot is asked for this many invoices
INVOICES_SHOWN = 5
PAYMENTS_SHOWN = 5
SUBSCRIPTIONS_SHOWN = 3
#: no single line is longer (IDs are short; this only guards against a vendor oddity)
MAX_LINE_CHARS = 300
#: the note starts with this when there is nothing in billing to summarize
NO_BILLING_ACCOUNT = "No billing account linked"

# ISO 4217 currencies whose minor unit is the unit itself (billing APIs send these unscaled)
_ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)


class SupportContextInput(Frozen):
    crm: str
    billing: str
    case_id: str


class SupportContextResult(Frozen):
    #: summarized | no_billing_account | case_not_found
    outcome: str
    case_id: str
    customer_id: str | None = None
    note_id: str | None = None


class OpenDunning(Frozen):
    """A dunning run still going for one of the customer's unpaid invoices."""

    workflow_id: str
    invoice_id: str
    started_at: datetime | None = None
    #: the run's own ``status`` query, when it answered in time (best effort)
    stage: str | None = None
    case_number: str | None = None


class SupportStatus(Frozen):
    """What the ``status`` query answers while the workflow runs and after it closed."""

    stage: str
    case_id: str
    account_id: str | None = None
    customer_id: str | None = None
    open_dunning: list[str] = []
    policy: str | None = None
    note_id: str | None = None
    outcome: str | None = None


def static_summary(input: SupportContextInput) -> str:
    """The Web UI's one-line summary for a run (the starter passes it as ``static_summary``)."""
    return f"Support context for {input.crm} case {input.case_id} ({input.billing})"


def billing_link(account: CrmAccount | None, billing: str) -> str | None:
    """The billing customer this account is linked to on ``billing``, or None. An account linked
    to another billing platform is not linked as far as this deployment can see."""
    if account is None or not account.billing_customer_id:
        return None
    if account.billing_platform and account.billing_platform.lower() != billing.lower():
        return None
    return account.billing_customer_id


def unpaid_invoice_ids(snapshot: CustomerSnapshot) -> list[str]:
    """The snapshot's invoices with money still due (the only ones dunning can be running for)."""
    return [i.id for i in snapshot.invoices if i.status is InvoiceStatus.OPEN and i.amount_due > 0]


def money(amount: int, currency: str) -> str:
    """Minor units as people write them: ``1,234.50 USD`` (``1,234 JPY`` for zero-decimal)."""
    code = currency.upper()
    if code in _ZERO_DECIMAL:
        return f"{amount:,} {code}"
    return f"{amount / 100:,.2f} {code}"


def _day(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d}" if at else "date unknown"


def _totals(amounts: list[tuple[int, str]]) -> str:
    by_currency: dict[str, int] = defaultdict(int)
    for amount, currency in amounts:
        by_currency[currency.upper()] += amount
    return " + ".join(money(v, k) for k, v in sorted(by_currency.items()))


def summarize(
    snapshot: CustomerSnapshot,
    open_dunning: list[OpenDunning],
    billing: str,
    *,
    as_of: datetime | None = None,
    workflow_id: str | None = None,
) -> str:
    """The billing context note for a case: concise, cites invoice and payment IDs, amounts
    with their currency, no PII, at most :data:`MAX_NOTE_CHARS` characters."""
    c = snapshot.customer
    head = f"Billing context ({billing} customer {c.id}" + (
        f", as of {as_of:%Y-%m-%d %H:%M} UTC)" if as_of else ")"
    )
    lines = [head]

    subs = snapshot.subscriptions[:SUBSCRIPTIONS_SHOWN]
    if not subs:
        lines.append("Plan: no subscription.")
    for s in subs:
        name = s.plan or "plan unknown"
        plan = f"{name} × {s.quantity}" if s.quantity != 1 else name
        extra = []
        if s.current_term_end:
            extra.append(f"term ends {_day(s.current_term_end)}")
        if s.cancel_at:
            extra.append(f"cancels {_day(s.cancel_at)}")
        if s.discount_percent:
            extra.append(f"{s.discount_percent:g}% off")
        lines.append(
            f"Plan: {plan} ({s.status}), subscription {s.id}, "
            f"MRR {money(s.mrr, s.currency)}" + (f"; {', '.join(extra)}" if extra else "") + "."
        )
    if len(snapshot.subscriptions) > SUBSCRIPTIONS_SHOWN:
        lines.append(f"(+{len(snapshot.subscriptions) - SUBSCRIPTIONS_SHOWN} more subscriptions)")

    unpaid = [i for i in snapshot.invoices if i.status is InvoiceStatus.OPEN and i.amount_due > 0]
    if unpaid:
        lines.append(
            f"Payment status: {len(unpaid)} unpaid invoice(s), "
            f"{_totals([(i.amount_due, i.currency) for i in unpaid])} due "
            f"({', '.join(i.id for i in unpaid)})."
        )
    elif snapshot.invoices:
        lines.append("Payment status: nothing due on the latest invoices.")
    else:
        lines.append("Payment status: no invoices yet.")
    if snapshot.payments:
        p = snapshot.payments[0]
        outcome = "succeeded" if p.succeeded else f"failed ({p.decline_code or 'no code'})"
        lines.append(
            f"Last payment: {p.id} {outcome}, {money(p.amount, p.currency)} on {_day(p.at)}."
        )

    if open_dunning:
        for d in open_dunning:
            state = ", ".join(
                x
                for x in (
                    d.stage,
                    f"dunning case {d.case_number}" if d.case_number else None,
                )
                if x
            )
            lines.append(
                f"Open dunning: invoice {d.invoice_id} since {_day(d.started_at)}"
                + (f" ({state})" if state else "")
                + f", workflow {d.workflow_id}."
            )
    else:
        lines.append("Open dunning: none.")

    credit = (
        money(snapshot.credit_balance, c.currency) + " account credit"
        if snapshot.credit_balance
        else "none"
    )
    lines.append(f"Credits: {credit}.")
    if snapshot.usage_30d is None:
        lines.append("Usage: not metered.")
    else:
        trend = ""
        if snapshot.usage_prev_30d:
            change = (snapshot.usage_30d - snapshot.usage_prev_30d) / snapshot.usage_prev_30d
            trend = f" ({change:+.0%} vs the 30 days before)"
        lines.append(f"Usage: {snapshot.usage_30d:,.0f} in the last 30 days{trend}.")
    if snapshot.downgrades_90d:
        lines.append(f"Plan decreases in the last 90 days: {snapshot.downgrades_90d}.")

    invoices = snapshot.invoices[:INVOICES_SHOWN]
    if invoices:
        lines.append("Latest invoices:")
        for i in invoices:
            due = f", {money(i.amount_due, i.currency)} due" if i.amount_due else ""
            lines.append(
                f"- {i.id}: {money(i.total, i.currency)}, {i.status.value}{due}, "
                f"issued {_day(i.issued_at)}"
            )
    payments = snapshot.payments[:PAYMENTS_SHOWN]
    if payments:
        lines.append("Latest payments:")
        for p in payments:
            outcome = "succeeded" if p.succeeded else f"failed ({p.decline_code or 'no code'})"
            on = f" for {p.invoice_id}" if p.invoice_id else ""
            lines.append(f"- {p.id}: {money(p.amount, p.currency)} {outcome}{on}, {_day(p.at)}")
    return _bounded(lines, _footer(workflow_id))


def no_billing_account_note(reason: str, workflow_id: str | None = None) -> str:
    """The short note for a case whose account has nothing in billing to summarize."""
    return _bounded([f"{NO_BILLING_ACCOUNT}: {reason}."], _footer(workflow_id))


def _footer(workflow_id: str | None) -> str:
    by = f"RevBridge workflow {workflow_id}" if workflow_id else "RevBridge"
    return f"Written by {by}; read-only: nothing was changed in billing."


def _bounded(lines: list[str], footer: str) -> str:
    """Whole lines up to the limit (the footer always fits); a cut is marked."""
    budget = MAX_NOTE_CHARS - len(footer) - 1
    kept: list[str] = []
    used = 0
    for line in lines:
        if len(line) > MAX_LINE_CHARS:
            line = line[: MAX_LINE_CHARS - 1] + "…"
        if used + len(line) + 1 > budget - 2:  # room for the "…" marker line
            kept.append("…")
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join([*kept, footer])
