"""The end-to-end floor: a workflow that runs N no-op activities one after another, and a worker
process for it (``python -c 'from bench.floor import main; main()' ADDRESS TASK_QUEUE``), so the
floor runs in its own process as RevBridge's worker does."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta

from temporalio import activity, workflow

WORKFLOW_TYPE = "BenchFloorWorkflow"


@activity.defn(name="bench_noop")
async def noop() -> None:
    return None


@workflow.defn(name=WORKFLOW_TYPE)
class FloorWorkflow:
    @workflow.run
    async def run(self, activities: int) -> int:
        for _ in range(activities):
            await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))
        return activities


async def serve(address: str, task_queue: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await Client.connect(address)
    async with Worker(client, task_queue=task_queue, workflows=[FloorWorkflow], activities=[noop]):
        await stop.wait()


def main() -> None:
    address, task_queue = sys.argv[1:3]
    asyncio.run(serve(address, task_queue))
