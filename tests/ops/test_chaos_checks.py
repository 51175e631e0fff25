"""The chaos verdict says why a run is not at a durable wait: the failure that closed it (decoded
through the client's codec), or the failed workflow task a running one is stuck on. A worker-kills
run that ended FAILED was reported only as ``status FAILED``, with nothing left to find out why."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from chaos.checks import at_durable_wait
from tests.pairs import eventually


@activity.defn(name="chaos_checks_refused")
async def refused() -> None:
    raise ApplicationError("vendor said no (400)", type="vendor.invalid", non_retryable=True)


@workflow.defn(name="ChaosChecksFails")
class Fails:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(refused, start_to_close_timeout=timedelta(seconds=5))


@workflow.defn(name="ChaosChecksTaskFails")
class TaskFails:
    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("a bug in the workflow code")


async def test_the_verdict_names_the_failure_that_closed_a_run_or_holds_its_task(
    client: Client,
) -> None:
    queue = f"chaos-checks-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=[Fails, TaskFails],
        activities=[refused],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        failed = await client.start_workflow(Fails.run, id=f"fails-{queue}", task_queue=queue)
        with pytest.raises(WorkflowFailureError):
            await failed.result()
        ok, why = await at_durable_wait(client, failed.id)
        assert not ok
        assert why.startswith("status FAILED: ActivityError")
        assert "vendor said no (400)" in why

        stuck = await client.start_workflow(TaskFails.run, id=f"stuck-{queue}", task_queue=queue)
        found = await eventually(
            lambda: at_durable_wait(client, stuck.id),
            lambda r: "a bug in the workflow code" in r[1],
            "the failed workflow task in the verdict",
            within_s=20,
        )
        assert found[0] is False and found[1].startswith("workflow task pending: ")
        await stuck.terminate("test over")
