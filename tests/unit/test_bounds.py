"""Harm 7, size: free text that crosses Temporal is bounded — at the limit it passes whole, one
character over it is cut to the limit with a visible marker (issue 13). Fails on the previous
code: a case description of any length went whole into the assessment input and history."""

from __future__ import annotations

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from domain.approvals import ApprovalSignal, ProposedAction, read_approval
from domain.bounds import MARKER, NOTE_MAX, REASON_MAX, SUBJECT_MAX, SUMMARY_MAX, clip
from domain.models import CaseSummary
from domain.policy import ActionKind


@pytest.mark.parametrize("limit", [SUBJECT_MAX, SUMMARY_MAX, NOTE_MAX, REASON_MAX])
def test_clip_at_and_past_the_limit(limit: int) -> None:
    exact = "x" * limit
    assert clip(exact, limit) == exact
    over = clip(exact + "y", limit)
    assert len(over) == limit and over.endswith(MARKER) and over.startswith("x")


def test_a_case_summary_is_a_summary() -> None:
    at = CaseSummary(id="500A", subject="s" * SUBJECT_MAX, description="d" * SUMMARY_MAX)
    assert at.subject == "s" * SUBJECT_MAX and at.description == "d" * SUMMARY_MAX
    document = CaseSummary(id="500A", subject="s" * 10_000, description="d" * 1_000_000)
    assert len(document.subject) == SUBJECT_MAX and document.subject.endswith(MARKER)
    assert len(document.description) == SUMMARY_MAX and document.description.endswith(MARKER)
    payload = pydantic_data_converter.payload_converter.to_payloads([document])[0]
    assert len(payload.data) < SUBJECT_MAX + SUMMARY_MAX + 200  # was over a megabyte
    # and what comes back from history is bounded the same way
    back = pydantic_data_converter.payload_converter.from_payloads([payload], [CaseSummary])[0]
    assert back == document


def test_approval_text_is_bounded() -> None:
    signal = read_approval(
        {"action_id": "act-1", "decision": "approve", "approver": "a@x.com", "note": "n" * 5000}
    )
    assert isinstance(signal, ApprovalSignal)
    assert len(signal.note) == NOTE_MAX and signal.note.endswith(MARKER)
    too_long = read_approval(
        {"action_id": "act-" + "1" * 200, "decision": "approve", "approver": "a@x.com"}
    )
    assert isinstance(too_long, str) and "too long" in too_long
    action = ProposedAction(kind=ActionKind.APPLY_CREDIT, customer_id="c", reason="r" * 5000)
    assert len(action.reason) == REASON_MAX
    # the reason is not part of the action ID: bounding it changes no ID
    assert (
        action.action_id == ProposedAction(kind=ActionKind.APPLY_CREDIT, customer_id="c").action_id
    )
