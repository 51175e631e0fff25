"""Vendor task queues: the routing keeps every committed history replayable, and routed
activities really run on their vendor's queue."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from infra.codec import data_converter
from workers.main import WORKFLOWS
from workers.vendor_queues import VendorRouting
from workflows.options import (
    BILLING,
    CRM,
    MULTI_VENDOR,
    SINGLE_VENDOR,
    activity_task_queue,
    vendor_sides,
)

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_committed_history_replays_with_vendor_routing(path: Path) -> None:
    """The histories were recorded with every activity on the main queue; a worker that routes
    vendor activities to vendor queues replays them without a determinism error (the task queue
    of an activity command is not part of the determinism check)."""
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=data_converter(),
        interceptors=[VendorRouting("revbridge", {BILLING: "chargebee", CRM: "salesforce"})],
    )
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await replayer.replay_workflow(history)


def test_routing_table() -> None:
    vendors = {BILLING: "stripe", CRM: "hubspot"}
    assert activity_task_queue("retry_payment", "q", vendors) == "q.stripe"
    assert activity_task_queue("write_crm_audit", "q", vendors) == "q.hubspot"
    # both vendors, or no vendor: the main queue
    assert activity_task_queue("churn_score_customer", "q", vendors) is None
    assert activity_task_queue("decide_policy", "q", vendors) is None
    assert vendor_sides("churn_sweep_page") == (BILLING, CRM)
    assert not set(SINGLE_VENDOR) & set(MULTI_VENDOR)
