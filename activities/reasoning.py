"""Reasoning as an activity, so every assessment (rules or LLM) is recorded in history.

LLM output is judged here, by code, before the workflow sees it: a reply that breaks the closed
schema, names another customer, asks for a kind of action dunning may not propose or an amount
out of range is refused whole, the rules decide instead, and the refusal travels with the
assessment so the workflow audits it. Nothing an LLM says reaches an activity unvalidated.
"""

from __future__ import annotations

from temporalio import activity

from activities.errors import to_application_error
from activities.models import AssessFailureInput
from connectors.base import ConnectorError, ErrorKind
from connectors.reasoner import LlmReasoner, Reasoner
from domain.approvals import ProposedAction
from domain.containment import (
    DUNNING_LLM_BUDGET,
    ContainmentError,
    LlmBudget,
    validate_reasoner_output,
)
from domain.decisions import DunningAssessment, classify_payment_failure
from domain.policy import ActionKind

#: what an LLM may propose in dunning: things the workflow can execute, each still gated by
#: policy (an LLM-proposed credit always needs a person: policies/llm_money.cedar)
DUNNING_LLM_KINDS = frozenset({ActionKind.RETRY_PAYMENT, ActionKind.APPLY_CREDIT})


class ReasoningActivities:
    def __init__(
        self, reasoner: Reasoner | LlmReasoner, budget: LlmBudget = DUNNING_LLM_BUDGET
    ) -> None:
        self.reasoner = reasoner
        self.budget = budget

    @activity.defn(name="assess_payment_failure")
    def assess_payment_failure(self, input: AssessFailureInput) -> DunningAssessment:
        if not isinstance(self.reasoner, LlmReasoner):
            return self.reasoner.assess_payment_failure(input.context, input.account, input.now)
        rules = classify_payment_failure(input.context, input.account, input.now)
        if not self.budget.allows(input.usage_so_far, 0):
            return rules.model_copy(
                update={"rejected": ["budget_exceeded: LLM budget for this workflow is spent"]}
            )
        try:
            reply = self.reasoner.ask(input.context, input.account, input.open_cases)
        except ConnectorError as err:
            if err.kind is not ErrorKind.PERMANENT:
                raise to_application_error(err) from None  # Temporal retries, honouring retry-after
            # a refused key or request will not get better: the rules decide, the audit says why
            return rules.model_copy(update={"rejected": [f"llm_unavailable: {err}"[:300]]})
        usage = {
            "input_tokens": reply.usage.input_tokens,
            "output_tokens": reply.usage.output_tokens,
        }
        inv = input.context.invoice
        try:
            out = validate_reasoner_output(
                reply.raw,
                customer_id=input.context.customer.id,
                invoice_amount=inv.amount_due,
                allowed_kinds=DUNNING_LLM_KINDS,
                invoice_currency=inv.currency,
            )
        except ContainmentError as err:
            activity.logger.warning("LLM output refused: %s", err.code)
            return rules.model_copy(
                update={"rejected": [f"{err.code}: {err}"], "model": reply.model, **usage}
            )
        proposals = [
            ProposedAction(
                kind=a.kind,
                customer_id=a.customer_id,
                invoice_id=inv.id,
                amount=a.amount,
                currency=a.currency,
                discount_percent=a.discount_percent,
                reason=a.reason,
                origin="llm",
            )
            for a in out.proposed_actions
        ]
        return out.to_assessment(model=reply.model).model_copy(
            update={"proposed_actions": proposals, **usage}
        )
