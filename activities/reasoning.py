"""Reasoning as an activity, so every assessment (rules or LLM) is recorded in history."""

from __future__ import annotations

from temporalio import activity

from activities.models import AssessFailureInput
from connectors.reasoner import Reasoner
from domain.decisions import DunningAssessment


class ReasoningActivities:
    def __init__(self, reasoner: Reasoner) -> None:
        self.reasoner = reasoner

    @activity.defn(name="assess_payment_failure")
    def assess_payment_failure(self, input: AssessFailureInput) -> DunningAssessment:
        return self.reasoner.assess_payment_failure(input.context, input.account, input.now)
