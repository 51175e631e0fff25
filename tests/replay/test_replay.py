"""The determinism gate: every committed history replays against the current workflow code.

Histories are written by the workflow tests when REVBRIDGE_WRITE_HISTORIES=1 (`make histories`).
A change to a workflow's command sequence that breaks one of them needs `workflow.patched`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from infra.codec import data_converter
from workers.main import EAGER_WORKFLOWS, WORKFLOWS
from workers.vendor_queues import VendorRouting
from workflows.options import BILLING, CRM

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


def test_every_workflow_type_has_a_committed_history() -> None:
    covered = {path.name.split("__")[0] for path in HISTORIES}
    assert {wf.__temporal_workflow_definition.name for wf in WORKFLOWS} <= covered  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays(path: Path) -> None:
    """Replayed as the worker runs it: with its vendor routing (workers/vendor_queues.py), which
    moves single-vendor activities to their vendor's queue — except the dunning run's, kept on its
    own for eager dispatch. Histories recorded before or without the routing replay too: an
    activity command's task queue is not part of the determinism check."""
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=data_converter(),
        interceptors=[
            VendorRouting("revbridge", {BILLING: "chargebee", CRM: "salesforce"}, EAGER_WORKFLOWS)
        ],
    )
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await replayer.replay_workflow(history)
