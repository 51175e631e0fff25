"""Drafting in the dunning run (issue 22), on the time-skipping server over fake activities: a
refused model draft is audited on both systems and the template goes out; a model's draft asks
policy as ``origin=llm``; where a person reviews, the CRM task carries the exact text and its
SHA-256, and approval sends exactly that text, once; an approval for any other text sends
nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from domain.approvals import Decision
from domain.drafts import SHA_PREFIX, VARIANT_MEMO, draft_sha256
from domain.policy import Outcome
from tests.fast.fakes import answer, policy
from tests.fast.test_dunning import Run, dunning, dunning_fakes, pending, status
from tests.pairs import eventually

SUBJECT = "Your payment for the invoice did not go through"
BODY = "Hello,\n\nWe could not collect 1,200.00 USD. Please check the card on file."


HISTORIES = Path(__file__).parent.parent / "histories"


async def keep_history(handle: WorkflowHandle, name: str) -> None:
    """`make histories` commits this run's history for the replay gate (tests/replay) as
    ``DunningWorkflow__drafting_{name}``: the branches behind ``dunning-drafting``."""
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1":
        history = await handle.fetch_history()
        (HISTORIES / f"DunningWorkflow__drafting_{name}.json").write_text(history.to_json())


def model_draft(i: dict[str, Any]) -> dict[str, Any]:
    return {
        "subject": f"{SUBJECT} ({i['reminder']})",
        "body": BODY,
        "variant": "llm",
        "model": "claude-sonnet-5-5",
        "sha256": draft_sha256(f"{SUBJECT} ({i['reminder']})", BODY),
    }


def refused_draft(i: dict[str, Any]) -> dict[str, Any]:
    return {
        "subject": f"Template {i['reminder']}",
        "body": f"Please pay {i['invoice_id']}",
        "variant": "template",
        "refusals": ["amount_not_in_facts: 152.00 USD", "offer_not_approved: discount ('20% off')"],
    }


def audited(fakes: Any, action: str) -> tuple[list[Any], list[Any]]:
    crm = [i["entry"] for i in fakes.inputs("write_crm_audit") if i["entry"]["action"] == action]
    notes = [
        e
        for n in fakes.inputs("add_billing_note")
        for e in [*n.get("more", []), n["entry"]]
        if e["action"] == action
    ]
    return crm, notes


async def test_a_refused_draft_is_audited_on_both_sides_and_the_template_is_sent(
    client: Client,
) -> None:
    run = Run()
    fakes = dunning_fakes(run).on("draft_reminder", refused_draft)
    async with dunning(client, run, fakes) as handle:
        await handle.result()
        await keep_history(handle, "refused_template_sent")
    crm, notes = audited(fakes, "draft_refused")
    assert len(crm) == 2 and len(notes) == 2  # two reminders, both sides each
    assert all("amount_not_in_facts" in e["summary"] for e in crm + notes)
    sent = fakes.inputs("send_email")
    assert [s["subject"] for s in sent] == ["Template 1", "Template 2"]
    assert all(s["sha256"] == draft_sha256(s["subject"], s["body"]) for s in sent)
    # the facts the model was given: segment, payment history, the customer (never the email)
    facts = fakes.inputs("draft_reminder")[0]
    assert facts["segment"] and facts["customer_id"] == run.customer
    assert (facts["failed_attempts"], facts["paid_before"]) == (1, 0)


async def test_a_model_draft_sent_where_policy_allows_it_carries_its_hash_and_variant(
    client: Client,
) -> None:
    run = Run()
    fakes = dunning_fakes(run).on("draft_reminder", model_draft)
    async with dunning(client, run, fakes) as handle:
        await handle.result()
        memo = await (await handle.describe()).memo()
        await keep_history(handle, "llm_sent")
    asked = [p for p in fakes.inputs("decide_policy") if p["action"] == "send_email"]
    assert asked and all(p["origin"] == "llm" for p in asked)
    sent = fakes.inputs("send_email")
    assert len(sent) == 2 and all(s["body"] == BODY for s in sent)
    assert all(s["sha256"] == draft_sha256(s["subject"], s["body"]) for s in sent)
    assert memo[VARIANT_MEMO] == "llm"
    crm, _ = audited(fakes, "send_email")
    assert all(e["summary"].endswith("(variant: llm)") for e in crm) and len(crm) == 2


@pytest.mark.parametrize("right", [True, False], ids=["approved", "other-text"])
async def test_assist_mode_sends_exactly_the_reviewed_text_once_after_approval(
    client: Client, right: bool
) -> None:
    run = Run()
    fakes = (
        dunning_fakes(run)
        .on("draft_reminder", model_draft)
        .on("decide_policy", policy({"send_email": Outcome.NEEDS_APPROVAL}))
    )
    async with dunning(client, run, fakes) as handle:
        waiting = await pending(handle)
        (task,) = [
            t for t in fakes.inputs("upsert_crm_task") if "Approve & send" in t["draft"]["subject"]
        ]
        text = task["draft"]["description"]
        sha = draft_sha256(f"{SUBJECT} (1)", BODY)
        assert BODY in text and sha in text and waiting.action_id in text
        assert fakes.inputs("send_email") == []  # nothing before the approval
        if right:
            await answer(
                handle,
                waiting.action_id,
            )
            await answer(
                handle,
                waiting.action_id,
            )  # a repeat
            await eventually(lambda: status(handle), lambda s: s.reminders_sent == 1, "sent")
            await handle.terminate("history kept")
            await keep_history(handle, "approved_and_sent")
        else:
            # an approval for another text: another action ID, refused; the draft stays unsent
            other = waiting.action_id[:-4] + "0000"
            before = len(fakes.inputs("write_crm_audit"))

            async def audits() -> int:
                return len(fakes.inputs("write_crm_audit"))

            await answer(handle, other, Decision.APPROVE)
            await eventually(audits, lambda n: n > before, "the refused approval's audit")
            assert (await pending(handle)).action_id == waiting.action_id  # still waiting
        sent = list(fakes.inputs("send_email"))
    if right:
        (one,) = sent
        assert (one["subject"], one["body"], one["sha256"]) == (f"{SUBJECT} (1)", BODY, sha)
        assert one["key"] == run.key("remind:1:email")
    else:
        assert sent == []
    assert waiting.action.subject_id == SHA_PREFIX + sha


async def test_a_reviewed_template_goes_to_the_rep_as_a_task_and_the_playbook_goes_on(
    client: Client,
) -> None:
    """``dunning-review-llm-only``: where a person must review (assist mode here) and the draft
    is the reviewed template, nothing waits for an approval: the rep gets a "Review and send"
    task with the text, every reminder of the schedule is drafted the same way, and the run goes
    on to its end. Only a model's draft waits for approve & send."""
    run = Run()
    fakes = dunning_fakes(run).on(
        "decide_policy", policy({"send_email": Outcome.NEEDS_APPROVAL})
    )  # draft_reminder answers with the template (the fakes' default)
    async with dunning(client, run, fakes) as handle:
        result = await handle.result()
        memo = await (await handle.describe()).memo()
        await keep_history(handle, "review_template_task")
    assert fakes.inputs("send_email") == []  # a rep sends it, not RevBridge
    tasks = [t["draft"]["subject"] for t in fakes.inputs("upsert_crm_task")]
    reviews = [t for t in tasks if t.startswith("Review and send reminder")]
    assert len(reviews) == 2 and not any("Approve & send" in t for t in tasks)
    assert result.outcome != "recovered"
    assert memo[VARIANT_MEMO] == "template"
    crm, _ = audited(fakes, "send_email")
    assert len(crm) == 2 and all("drafted for a rep" in e["summary"] for e in crm)
    assert all(e["summary"].endswith("(variant: template)") for e in crm)
