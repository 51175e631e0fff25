"""The scheduled sweep over a small seeded book (Stripe × Salesforce sandboxes of its own, so the
sweep walks exactly this book), and the sweep's Temporal Schedule. The 1,000-customer soak is
``make bench`` (bench/churn_soak.py), which runs the same sweep_book and check.

Retention offers are forbidden by an extra policy, so no intervention waits for a person and every
per-customer run finishes after a short follow-up: the test can wait for every intervention.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.testing import WorkflowEnvironment

from bench import churn_soak
from domain.churn import (
    SWEEP_WORKFLOW_TYPE,
    WORKFLOW_TYPE,
)
from workers.churn_schedule import SweepSchedule, ensure_churn_schedule

HISTORIES = Path(__file__).parent.parent / "histories"
#: a small book: the sweep's paging, continue-as-new, scoring and fan-out, in seconds. The soak
#: over the issue's 1,000-customer book is ``make bench`` (bench/churn_soak.py).
N, PAGE_SIZE, PAGES_PER_RUN = 60, 20, 2


@pytest.fixture(scope="module")
def own_sandboxes() -> Iterator[dict[str, str]]:
    with churn_soak.own_sandboxes() as urls:
        yield urls


@pytest.mark.timeout(int(churn_soak.budget_s(N)) + 120)
async def test_a_sweep_over_a_seeded_book_scores_everyone(
    temporal_env: WorkflowEnvironment, own_sandboxes: dict[str, str], tmp_path: Path
) -> None:
    client = temporal_env.client
    policies = churn_soak.no_offer_policies(tmp_path / "policies")
    swept = await churn_soak.sweep_book(
        client, own_sandboxes, policies, N, page_size=PAGE_SIZE, pages_per_run=PAGES_PER_RUN
    )
    print(
        f"swept {N} customers, {len(swept.interventions)} interventions, in {swept.elapsed_s:.0f} s"
    )
    # paged in 3 pages over 2 runs (one continue-as-new); every account scored; the at-risk ones
    # got an intervention that ran to its outcome; offers blocked; the sweep's own audit entries
    assert churn_soak.check(swept, N, PAGE_SIZE, PAGES_PER_RUN) == []
    assert (swept.result.pages, swept.result.runs) == (3, 2)
    # low risk: the sweep wrote those scores itself, through the gate, audited under its own
    # workflow ID (a page's low-risk scores at a time)
    low = [cid for cid, score in swept.scores.items() if score < 50]
    assert low and 0 < len(swept.audit) <= swept.result.pages

    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1":
        sweep = swept.sweep
        first = client.get_workflow_handle(sweep.id, run_id=sweep.first_execution_run_id)
        (HISTORIES / f"{SWEEP_WORKFLOW_TYPE}__continued_as_new.json").write_text(
            (await first.fetch_history()).to_json()
        )
        (HISTORIES / f"{SWEEP_WORKFLOW_TYPE}__finished.json").write_text(
            (await sweep.fetch_history()).to_json()
        )


async def test_the_sweep_schedule_is_created_once_and_updated_in_place(client: Client) -> None:
    spec = SweepSchedule(
        billing="chargebee", task_queue="nowhere", schedule_id=f"churn-sweep-{uuid.uuid4().hex[:8]}"
    )
    try:
        assert await ensure_churn_schedule(client, spec) == "created"
        handle = client.get_schedule_handle(spec.schedule_id)
        await handle.pause(note="maintenance")
        moved = SweepSchedule(
            billing="chargebee", task_queue="nowhere", hour_utc=5, schedule_id=spec.schedule_id
        )
        assert await ensure_churn_schedule(client, moved) == "updated"
        desc = await handle.describe()
        assert desc.schedule.spec.calendars[0].hour[0].start == 5
        assert desc.schedule.state.paused  # the operator's pause survives a deploy
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == SWEEP_WORKFLOW_TYPE
        assert action.task_queue == "nowhere"
        assert desc.schedule.policy.overlap.name == "SKIP"
        assert WORKFLOW_TYPE  # the per-customer type the sweep fans out to
    finally:
        await client.get_schedule_handle(spec.schedule_id).delete()
