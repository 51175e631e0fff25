"""What a reasoner concludes about a failed payment, and the deterministic rules that conclude it.

Pure functions: the rules reasoner in connectors/ wraps :func:`classify_payment_failure`, and the
LLM reasoner's output is validated into the same :class:`DunningAssessment`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from domain.approvals import ProposedAction
from domain.models import CasePriority, CrmAccount, CustomerTier, Frozen, InvoiceContext
from domain.policy import ActionKind


class FailureClass(StrEnum):
    EXPIRED_CARD = "expired_card"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    HARD_DECLINE = "hard_decline"  # fraud, stolen card, do-not-honor: retrying will not help
    TECHNICAL = "technical"  # gateway / processing errors: a retry usually works
    UNKNOWN = "unknown"


class DunningAssessment(Frozen):
    failure_class: FailureClass
    priority: CasePriority
    retry_recommended: bool
    reasons: list[str] = Field(min_length=1)
    #: side effects the reasoner suggests; each still goes through policy (and maybe a person)
    proposed_actions: list[ProposedAction] = []
    reasoner: str = "rules"
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    #: reasoner output that deterministic code refused before anything could act on it,
    #: as "code: message" (the workflow audits each)
    rejected: list[str] = []


# Decline codes as Stripe and Chargebee gateways report them, by what they mean for recovery.
_DECLINE_CLASSES: dict[FailureClass, frozenset[str]] = {
    FailureClass.EXPIRED_CARD: frozenset({"expired_card", "card_expired", "invalid_expiry_year"}),
    FailureClass.INSUFFICIENT_FUNDS: frozenset(
        {"insufficient_funds", "card_velocity_exceeded", "withdrawal_count_limit_exceeded"}
    ),
    FailureClass.HARD_DECLINE: frozenset(
        {
            "fraudulent",
            "stolen_card",
            "lost_card",
            "pickup_card",
            "do_not_honor",
            "restricted_card",
            "security_violation",
            "transaction_not_allowed",
        }
    ),
    FailureClass.TECHNICAL: frozenset(
        {
            "processing_error",
            "try_again_later",
            "reenter_transaction",
            "gateway_error",
            "issuer_not_available",
        }
    ),
}

# Amounts in minor units above which a failure is worth a human's attention today.
HIGH_VALUE_AMOUNT = 100_000  # 1,000.00
NEW_CUSTOMER_DAYS = 90
#: a courtesy credit offered to large accounts short of funds, as a share of the amount due
COURTESY_CREDIT_SHARE = 0.05


def classify_decline(code: str | None) -> FailureClass:
    normalized = (code or "").strip().lower()
    for cls, codes in _DECLINE_CLASSES.items():
        if normalized in codes:
            return cls
    return FailureClass.UNKNOWN


def classify_payment_failure(
    ctx: InvoiceContext, account: CrmAccount | None, now: datetime
) -> DunningAssessment:
    """Decline reason, amount and tenure decide class and priority; every factor names itself."""
    failure = ctx.last_failure
    code = failure.decline_code if failure else None
    cls = classify_decline(code)
    reasons = [f"decline code {code!r} → {cls.value}" if code else "no decline code reported"]

    score = 0
    if cls is FailureClass.HARD_DECLINE:
        score += 2
        reasons.append("hard decline: the card will not recover by retrying")
    amount = ctx.invoice.amount_due
    if amount >= HIGH_VALUE_AMOUNT:
        score += 2
        reasons.append(f"high amount at risk: {amount / 100:,.2f} {ctx.invoice.currency}")
    elif amount >= HIGH_VALUE_AMOUNT // 10:
        score += 1
        reasons.append(f"moderate amount at risk: {amount / 100:,.2f} {ctx.invoice.currency}")
    if ctx.customer.created_at is not None:
        tenure_days = (now - ctx.customer.created_at).days
        if tenure_days < NEW_CUSTOMER_DAYS:
            score += 1
            reasons.append(f"new customer ({tenure_days} days): early churn risk")
        else:
            reasons.append(f"established customer ({tenure_days} days)")
    if account and account.tier in (CustomerTier.ENTERPRISE, CustomerTier.STRATEGIC):
        score += 2
        reasons.append(f"{account.tier.value} account")
    if account is None:
        reasons.append("no CRM account linked to this billing customer")

    priority = (
        CasePriority.HIGH if score >= 3 else CasePriority.MEDIUM if score >= 1 else CasePriority.LOW
    )
    retry = cls in (FailureClass.INSUFFICIENT_FUNDS, FailureClass.TECHNICAL, FailureClass.UNKNOWN)
    proposals = []
    inv = ctx.invoice
    if retry:
        proposals.append(
            ProposedAction(
                kind=ActionKind.RETRY_PAYMENT,
                customer_id=ctx.customer.id,
                invoice_id=inv.id,
                amount=inv.amount_due,
                currency=inv.currency,
                reason=f"{cls.value}: a later retry usually succeeds",
            )
        )
    large = account is not None and account.tier in (
        CustomerTier.ENTERPRISE,
        CustomerTier.STRATEGIC,
    )
    if large and cls is FailureClass.INSUFFICIENT_FUNDS:
        credit = int(inv.amount_due * COURTESY_CREDIT_SHARE)
        proposals.append(
            ProposedAction(
                kind=ActionKind.APPLY_CREDIT,
                customer_id=ctx.customer.id,
                invoice_id=inv.id,
                amount=credit,
                currency=inv.currency,
                reason=f"courtesy credit ({COURTESY_CREDIT_SHARE:.0%}) to keep a large account whole while funds clear",
            )
        )
    return DunningAssessment(
        failure_class=cls,
        priority=priority,
        retry_recommended=retry,
        reasons=reasons,
        proposed_actions=proposals,
    )
