"""The churn intervention's CSM note through the drafting seam (issue 22), on the time-skipping
server over fake activities: a model's note that passed containment becomes the task's text; a
refused one leaves the rules text and is audited on both systems; a worker without the drafting
activity still opens the task with the rules text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from domain.drafts import draft_sha256
from tests.fast.test_churn import Customer, churn_fakes, intervention

HISTORIES = Path(__file__).parent.parent / "histories"
NOTE = "Risk summary: two failed payments in the last 90 days.\nRecommended: call the admin."


async def keep_history(handle: WorkflowHandle, name: str) -> None:
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1":
        history = await handle.fetch_history()
        (HISTORIES / f"ChurnInterventionWorkflow__drafting_{name}.json").write_text(
            history.to_json()
        )


def model_note(i: dict[str, Any]) -> dict[str, Any]:
    return {
        "subject": i["subject"],
        "body": NOTE,
        "variant": "llm",
        "sha256": draft_sha256(i["subject"], NOTE),
    }


def refused_note(i: dict[str, Any]) -> dict[str, Any]:
    return {
        "subject": i["subject"],
        "body": i["template"],
        "variant": "template",
        "refusals": ["percent_not_approved: 50%", "other_customer: company 'Globex Corp'"],
    }


async def test_a_contained_model_note_becomes_the_csm_task(client: Client) -> None:
    c = Customer()
    fakes = churn_fakes(c.scored(60), c.scored(60)).on("draft_csm_outreach", model_note)
    async with intervention(client, c, fakes) as handle:
        await handle.result()
        await keep_history(handle, "model_note")
    (asked,) = fakes.inputs("draft_csm_outreach")
    assert asked["score"] == 60 and asked["account_name"] == "Initech"
    assert asked["template"].startswith("Hi — reaching out to Initech")
    (task,) = fakes.inputs("upsert_crm_task")
    assert task["draft"]["description"].startswith(NOTE)
    assert not [
        i for i in fakes.inputs("write_crm_audit") if i["entry"]["action"] == "draft_refused"
    ]


async def test_a_refused_note_leaves_the_rules_text_and_is_audited_on_both_sides(
    client: Client,
) -> None:
    c = Customer()
    fakes = churn_fakes(c.scored(60), c.scored(60)).on("draft_csm_outreach", refused_note)
    async with intervention(client, c, fakes) as handle:
        await handle.result()
        await keep_history(handle, "refused_note")
    (asked,) = fakes.inputs("draft_csm_outreach")
    (task,) = fakes.inputs("upsert_crm_task")
    assert task["draft"]["description"].startswith(asked["template"])
    crm = [
        i["entry"]
        for i in fakes.inputs("write_crm_audit")
        if i["entry"]["action"] == "draft_refused"
    ]
    notes = [
        i["entry"]
        for i in fakes.inputs("add_billing_note")
        if i["entry"]["action"] == "draft_refused"
    ]
    assert len(crm) == 1 and len(notes) == 1
    assert "percent_not_approved" in crm[0]["summary"] and crm[0]["decision"] == "deny"


async def test_a_worker_without_the_drafting_activity_still_opens_the_task(client: Client) -> None:
    c = Customer()
    fakes = churn_fakes(c.scored(60), c.scored(60))  # draft_csm_outreach unanswered: it fails
    async with intervention(client, c, fakes) as handle:
        await handle.result()
    (task,) = fakes.inputs("upsert_crm_task")
    assert task["draft"]["description"].startswith("Hi — reaching out to Initech")


async def test_the_csm_note_is_asked_in_the_billing_customers_language(client: Client) -> None:
    """The score carries the billing customer's locale; the note is drafted in it (the drafter
    writes English where policy does not list the language, and when none is known)."""
    c = Customer()
    french = {**c.scored(60), "language": "fr"}
    fakes = churn_fakes(french, french).on("draft_csm_outreach", model_note)
    async with intervention(client, c, fakes) as handle:
        await handle.result()
    (asked,) = fakes.inputs("draft_csm_outreach")
    assert asked["language"] == "fr"

    c = Customer()
    fakes = churn_fakes(c.scored(60), c.scored(60)).on("draft_csm_outreach", model_note)
    async with intervention(client, c, fakes) as handle:
        await handle.result()
    (asked,) = fakes.inputs("draft_csm_outreach")
    assert asked["language"] == "en"
