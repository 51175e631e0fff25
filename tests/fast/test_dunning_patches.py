"""Every patch a dunning run asks is recorded in its first workflow task (``dunning-patches-first``).

Under load, runs whose later patches (the invoice re-read before a customer-facing step, the
drafting seam, ...) were asked deep in the run failed to replay — on a worker restart, or for a
query after the run left the worker's cache — with "Non-deprecated patch marker encountered for
change dunning-reread-invoice, but there is no corresponding change command" (seen in the full
suite and the worker-kill chaos scenario, never on an idle machine). A patch asked in the first
task, before any activity or timer exists, has one place in every history. Runs recorded before
keep asking each patch where they always did."""

from __future__ import annotations

import json
import os
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tests.fast.fakes import Fakes
from tests.fast.test_dunning import Run, dunning, dunning_fakes
from workflows.dunning.workflow import EARLY_PATCHES, PATCHES_FIRST

HISTORIES = Path(__file__).parent.parent / "histories"


def patch_markers(history) -> list[tuple[int, str]]:  # noqa: ANN001
    """(workflow task number, patch ID) of every patch marker, in order."""
    task, out = 0, []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            task += 1
        if e.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        attrs = e.marker_recorded_event_attributes
        if attrs.marker_name == "core_patch":
            data = json.loads(attrs.details["patch-data"].payloads[0].data)
            out.append((task, data["id"]))
    return out


async def test_a_new_run_records_every_patch_in_its_first_task(client: Client) -> None:
    run = Run()
    fakes: Fakes = dunning_fakes(run, retry_succeeds=True)
    async with dunning(client, run, fakes) as handle:
        result = await handle.result()
        history = await handle.fetch_history()
    assert result.outcome == "recovered"  # the whole playbook ran: every later patch was asked
    markers = patch_markers(history)
    ids = [pid for _, pid in markers]
    assert ids[: 2 + len(EARLY_PATCHES)][1:] == [PATCHES_FIRST, *EARLY_PATCHES]
    assert len(ids) == len(set(ids))  # each once
    assert {task for task, _ in markers} == {1}  # all in the first workflow task
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1":
        (HISTORIES / "DunningWorkflow__patches_first_task.json").write_text(history.to_json())
