"""Vendor task queues: which activities go to which vendor's queue (that the routing keeps every
committed history replayable is the replay gate's test, tests/replay/test_replay.py; that routed
activities run on their vendor's queue, tests/limits/test_eager_routing.py)."""

from __future__ import annotations

from workflows.options import (
    BILLING,
    CRM,
    MULTI_VENDOR,
    SINGLE_VENDOR,
    activity_task_queue,
    vendor_sides,
)


def test_routing_table() -> None:
    vendors = {BILLING: "stripe", CRM: "hubspot"}
    assert activity_task_queue("retry_payment", "q", vendors) == "q.stripe"
    assert activity_task_queue("write_crm_audit", "q", vendors) == "q.hubspot"
    # both vendors, or no vendor: the main queue
    assert activity_task_queue("churn_score_customer", "q", vendors) is None
    assert activity_task_queue("decide_policy", "q", vendors) is None
    assert vendor_sides("churn_sweep_page") == (BILLING, CRM)
    assert not set(SINGLE_VENDOR) & set(MULTI_VENDOR)
