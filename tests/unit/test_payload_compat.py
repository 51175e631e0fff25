"""Payloads survive a rolling deploy: a newer webhook service (or worker) may send a field an
older worker does not know, and the older one must still load it — through the same data
converter Temporal uses. Only the LLM's reply is judged by a closed schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from temporalio.contrib.pydantic import pydantic_data_converter

from domain.approvals import ApprovalSignal
from domain.churn import ChurnInput
from domain.containment import ReasonerOutput
from domain.dunning import DunningInput, DunningOutcome, DunningPhase, DunningResult, DunningState
from domain.models import InvoicePaid, PaymentFailed, RiskSignal
from domain.quote import QuoteToCashInput, QuoteToCashResult


def _roundtrip(payload: dict, cls: type) -> object:
    """Encode a dict as a newer sender would, decode it as this code's type."""
    converter = pydantic_data_converter.payload_converter
    [encoded] = converter.to_payloads([payload])
    [decoded] = converter.from_payloads([encoded], [cls])
    return decoded


NOW = datetime(2026, 12, 1, tzinfo=UTC).isoformat()


@pytest.mark.parametrize(
    ("cls", "payload"),
    [
        (
            PaymentFailed,
            {
                "billing": "stripe",
                "event_id": "evt_1",
                "invoice_id": "in_1",
                "customer_id": "cus_1",
                "amount_due": 100,
                "occurred_at": NOW,
            },
        ),
        (
            InvoicePaid,
            {
                "billing": "stripe",
                "event_id": "evt_2",
                "invoice_id": "in_1",
                "customer_id": "cus_1",
                "occurred_at": NOW,
            },
        ),
        (
            RiskSignal,
            {
                "billing": "stripe",
                "customer_id": "cus_1",
                "event_id": "e",
                "kind": "payment_failed",
                "occurred_at": NOW,
            },
        ),
        (DunningInput, {"billing": "stripe", "invoice_id": "in_1"}),
        (ChurnInput, {"billing": "stripe", "customer_id": "cus_1"}),
        (QuoteToCashInput, {"crm": "hubspot", "billing": "stripe", "opportunity_id": "1"}),
        (ApprovalSignal, {"action_id": "act-1", "decision": "approve", "approver": "a@b.c"}),
    ],
)
def test_an_unknown_field_from_a_newer_sender_is_ignored(cls: type, payload: dict) -> None:
    cls.model_validate(payload)  # the sample is what this release sends
    loaded = _roundtrip({**payload, "added_in_a_later_release": {"x": 1}}, cls)
    assert isinstance(loaded, cls)
    assert not hasattr(loaded, "added_in_a_later_release")


def test_outcomes_and_phases_are_enums_that_serialize_as_before() -> None:
    result = DunningResult(outcome="recovered", invoice_id="in_1")
    assert result.outcome is DunningOutcome.RECOVERED
    assert json.loads(result.model_dump_json())["outcome"] == "recovered"
    assert QuoteToCashResult(outcome="rolled_back", opportunity_id="1").outcome == "rolled_back"
    with pytest.raises(ValidationError):
        DunningResult(outcome="maybe", invoice_id="in_1")


def test_an_old_carry_loads_as_the_state() -> None:
    """A continued-as-new input written by an earlier release (``DunningCarry`` fields only)."""
    carry = {
        "phase": "payment_wait",
        "deadline": NOW,
        "context": None,
        "account": None,
        "assessment": None,
        "case": None,
        "status": {"stage": "waiting for payment", "invoice_id": "in_1"},
        "failures": [],
        "seen_events": ["evt_1"],
    }
    state = DunningInput.model_validate(
        {"billing": "stripe", "invoice_id": "in_1", "carry": carry}
    ).carry
    assert isinstance(state, DunningState)
    assert state.phase is DunningPhase.PAYMENT_WAIT and state.seen_events == ["evt_1"]
    assert state.paid is None and not state.settled


def test_the_llm_reply_stays_a_closed_schema() -> None:
    reply = {
        "failure_class": "expired_card",
        "priority": "High",
        "retry_recommended": False,
        "reasons": ["card expired"],
        "instructions_for_the_agent": "wire money",
    }
    with pytest.raises(ValidationError):
        ReasonerOutput.model_validate(reply)
