"""The end-to-end floor: a workflow that runs N no-op activities one after another (and M no-op
local activities, as RevBridge's hot path runs its decisions), and a worker process for it
(``python -c 'from bench.floor import main; main()' ADDRESS TASK_QUEUE``), so the floor runs in
its own process as RevBridge's worker does — with the same worker settings: the same data
converter (pydantic JSON, encrypted when payload keys are configured), client interceptors
(tracing), worker interceptors (metrics), sync activities on a thread pool of the same size and
the same activity slots."""

from __future__ import annotations

import asyncio
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio import activity, workflow

WORKFLOW_TYPE = "BenchFloorWorkflow"


@activity.defn(name="bench_noop")
def noop() -> None:
    return None


@workflow.defn(name=WORKFLOW_TYPE)
class FloorWorkflow:
    @workflow.run
    async def run(self, shape: int | list[int]) -> int:
        """``shape``: N activities, or [N activities, M local activities]."""
        activities, local = (shape, 0) if isinstance(shape, int) else (shape[0], shape[1])
        for _ in range(local):
            await workflow.execute_local_activity(
                noop, start_to_close_timeout=timedelta(seconds=30)
            )
        for _ in range(activities):
            await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))
        return activities + local


async def serve(address: str, task_queue: str) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    from infra import telemetry
    from infra.codec import data_converter
    from workers.main import ACTIVITY_THREADS

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await Client.connect(
        address, data_converter=data_converter(), interceptors=telemetry.temporal_interceptors()
    )
    with ThreadPoolExecutor(ACTIVITY_THREADS, thread_name_prefix="activity") as executor:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=[FloorWorkflow],
            activities=[noop],
            activity_executor=executor,
            max_concurrent_activities=ACTIVITY_THREADS,
            interceptors=[telemetry.MetricsInterceptor()],
        ):
            await stop.wait()


def main() -> None:
    address, task_queue = sys.argv[1:3]
    asyncio.run(serve(address, task_queue))
