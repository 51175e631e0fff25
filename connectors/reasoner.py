"""The reasoner: one interface, rules by default (no key needed). An LLM reasoner plugs in here."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from domain.decisions import DunningAssessment, classify_payment_failure
from domain.models import CrmAccount, InvoiceContext


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
