"""A real dunning run while the CRM is down for six hours (time-skipping server): the run does
not fail — its CRM writes wait — and once Salesforce is back the case and the audit entries are
written exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta

import httpx
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.budget import Limits
from domain.dunning import DunningStatus
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.limits.conftest import HTTP_TIMEOUT_S, Sandboxes
from tests.pairs import Pair, eventually, pair_settings
from workers.main import build_worker

INITECH = DEMO_CUSTOMERS[2]


async def test_a_dunning_run_waits_out_a_six_hour_crm_outage(
    time_env: WorkflowEnvironment, sandboxes: Sandboxes
) -> None:
    uid = uuid.uuid4().hex[:8]
    queue = f"limits-dunning-{uid}"
    settings = pair_settings(sandboxes.urls, "chargebee", "salesforce", queue).model_copy(
        update={"http_timeout_s": HTTP_TIMEOUT_S}
    )
    pair = Pair.build(settings, sandboxes.urls, webhook_url="http://unused")
    ids = pair.seed(INITECH, uid)
    sf = sandboxes.urls["salesforce"]
    httpx.post(
        f"{sf}/_sandbox/faults", json={"status": 503, "path": "/services/.*", "times": -1}
    ).raise_for_status()
    try:
        async with build_worker(
            time_env.client, pair.billing, pair.crm, task_queue=queue, limits=Limits()
        ):
            handle = await pair.start_directly(time_env.client, ids, f"ev_{uid}", task_queue=queue)
            await eventually(
                lambda: asyncio.to_thread(
                    lambda: httpx.get(f"{sf}/_sandbox/faults").json()["faults"][0]["hits"]
                ),
                lambda hits: hits >= 2,
                "Salesforce refusing the run's calls",
                within_s=60,
            )
            await time_env.sleep(timedelta(hours=6))
            desc = await handle.describe()
            assert desc.status == WorkflowExecutionStatus.RUNNING  # waiting, not failed
            httpx.delete(f"{sf}/_sandbox/faults").raise_for_status()
            await time_env.sleep(timedelta(minutes=10))  # the next retry, at most 5 min away
            status = await eventually(
                lambda: handle.query("status", result_type=DunningStatus),
                lambda s: s.case_id is not None,
                "the case written after the outage",
                within_s=60,
            )
            desc = await handle.describe()
            assert desc.status in (
                WorkflowExecutionStatus.RUNNING,
                WorkflowExecutionStatus.COMPLETED,
            )
            elapsed = (await time_env.get_current_time()) - desc.start_time
            assert elapsed >= timedelta(hours=6)
            # the run would wait weeks for its next step: a run left open on the shared
            # time-skipping server without its worker stalls every later test's clock
            if desc.status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")
    finally:
        httpx.delete(f"{sf}/_sandbox/faults").raise_for_status()
    assert len(pair.cases(ids["invoice"])) == 1
    audit = pair.audit(ids["invoice"])
    assert audit, "no audit entry written after the outage"
    assert Counter(a["action"] for a in audit)["create_case"] == 1
    texts = Counter(a["text"] for a in audit)
    assert all(n == 1 for n in texts.values()), texts
    assert status.case_id == pair.cases(ids["invoice"])[0].get("id", status.case_id)
