"""The reasoner: one interface, rules by default (no key needed), an LLM behind containment.

An LLM only *proposes*. :class:`LlmReasoner` builds the prompt with customer-controlled text
redacted and fenced as data, asks its :class:`LlmClient` for a structured answer, and returns the
raw answer; deterministic code (``domain.containment``) validates it before any workflow can act
on it. The Anthropic client plugs in as an ``LlmClient``.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any, Protocol

from domain.containment import SYSTEM_PROMPT_DATA_RULES, LlmUsage, ReasonerOutput, fence, redact_pii
from domain.decisions import DunningAssessment, classify_payment_failure
from domain.models import CaseSummary, CrmAccount, Frozen, InvoiceContext


class Reasoner(Protocol):
    name: str

    def assess_payment_failure(
        self, ctx: InvoiceContext, account: CrmAccount | None, now: datetime
    ) -> DunningAssessment: ...


class RulesReasoner:
    """Deterministic rules: decline reason, amount, tenure and tier. Explainable by construction."""

    name = "rules"

    def assess_payment_failure(
        self, ctx: InvoiceContext, account: CrmAccount | None, now: datetime
    ) -> DunningAssessment:
        return classify_payment_failure(ctx, account, now)


class LlmReply(Frozen):
    raw: Any  # the model's structured output (tool input), not yet trusted
    model: str
    usage: LlmUsage = LlmUsage()


class LlmClient(Protocol):
    model: str

    def complete(
        self,
        system: str,
        prompt: str,
        output_schema: dict[str, Any],
        tool: tuple[str, str] | None = None,
    ) -> LlmReply: ...


SYSTEM_PROMPT = (
    "You assess failed subscription payments for a revenue team. Classify the failure, set a "
    "priority, say whether a payment retry is likely to help, give short reasons, and propose at "
    "most three actions from the allowed kinds for THIS customer only. You only propose: code and "
    "people decide. Never propose actions for another customer.\n\n" + SYSTEM_PROMPT_DATA_RULES
)


def dunning_prompt(
    ctx: InvoiceContext, account: CrmAccount | None, cases: list[CaseSummary]
) -> str:
    """Facts we own in clear; everything a customer can write (names, metadata, case text) fenced
    as data and redacted of emails, phone and card numbers."""
    inv, cust = ctx.invoice, ctx.customer
    facts = {
        "customer_id": cust.id,
        "invoice_id": inv.id,
        "amount_due_minor_units": inv.amount_due,
        "currency": inv.currency,
        "mrr_minor_units": cust.mrr,
        "customer_since": cust.created_at.isoformat() if cust.created_at else None,
        "tier": account.tier.value if account else None,
        "recent_payments": [
            {"succeeded": p.succeeded, "amount": p.amount, "decline_code": p.decline_code}
            for p in ctx.recent_payments
        ],
    }
    parts = [f"Facts (trusted):\n{json.dumps(facts, indent=1)}"]
    if cust.company:
        parts.append(fence("company_name", cust.company))
    if account and account.name:
        parts.append(fence("crm_account_name", account.name))
    if cust.metadata:
        parts.append(fence("billing_metadata", json.dumps(cust.metadata, ensure_ascii=False)))
    for case in cases:
        parts.append(fence("support_case", f"{case.subject}\n{case.description}"))
    return redact_pii("\n\n".join(parts))


@functools.cache
def _schema_json() -> str:
    return json.dumps(ReasonerOutput.model_json_schema())


def output_schema() -> dict[str, Any]:
    """The closed output schema as the tool's ``input_schema`` (built once; a fresh copy each
    call, so no client can alter the next one's)."""
    return json.loads(_schema_json())


class LlmReasoner:
    """Asks an LLM; returns its raw reply for containment to judge (see ReasoningActivities)."""

    name = "llm"

    def __init__(self, client: LlmClient) -> None:
        self.client = client

    def prompt(
        self, ctx: InvoiceContext, account: CrmAccount | None, cases: list[CaseSummary]
    ) -> str:
        """The user prompt for this failure (its size is what a budget reserves)."""
        return dunning_prompt(ctx, account, cases)

    def ask_prompt(self, prompt: str) -> LlmReply:
        return self.client.complete(SYSTEM_PROMPT, prompt, output_schema())

    def ask(
        self, ctx: InvoiceContext, account: CrmAccount | None, cases: list[CaseSummary]
    ) -> LlmReply:
        return self.ask_prompt(self.prompt(ctx, account, cases))
