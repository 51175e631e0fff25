"""Vendor task queues: each vendor's activities run on ``{task_queue}.{vendor}``, polled with the
vendor's rate (``max_task_queue_activities_per_second``, enforced by the Temporal server across
every worker process) and a concurrency limit (activity slots per process).

Workflows stay as they are: a workflow interceptor sets the task queue of every activity that
calls one vendor (``workflows/options.py`` ``SINGLE_VENDOR``) when the workflow did not choose
one. The task queue of an activity command is not part of the determinism check, so histories
recorded before the routing replay unchanged (tests/replay/test_replay.py replays the
committed ones through the interceptor). Activities that call both vendors stay on the main
queue; all of them are paced per call inside the process (connectors/limits.py), and the main
queue's worker still registers every activity, so activities scheduled there before a deploy
still run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio import workflow
from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from activities.budget import Limits
from workflows.options import SINGLE_VENDOR, activity_task_queue, vendor_task_queue


def activity_name(fn: Callable[..., Any]) -> str:
    definition = getattr(fn, "__temporal_activity_definition", None)
    return definition.name if definition is not None else getattr(fn, "__name__", "")


class VendorRouting(Interceptor):
    """Schedules single-vendor activities on their vendor's task queue — except those of the
    ``eager`` workflow types, which stay on the workflow's own queue: an activity there is handed
    to this worker in the answer to the workflow task that scheduled it (eager dispatch) instead
    of waiting for a vendor queue's poller, about 5-30 ms per hop (issue 15: the failed payment's
    reads and its case write). Those calls are still paced in the process (connectors/limits.py,
    this process's share of the vendor's rate); only the server's cap across processes does not
    see them."""

    def __init__(
        self, task_queue: str, vendors: Mapping[str, str], eager: Collection[str] = ()
    ) -> None:
        self.task_queue = task_queue
        self.vendors = dict(vendors)
        self.eager = frozenset(eager)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        task_queue, vendors, eager = self.task_queue, self.vendors, self.eager

        class _Outbound(WorkflowOutboundInterceptor):
            def start_activity(self, input: StartActivityInput) -> Any:
                if input.task_queue is None and workflow.info().workflow_type not in eager:
                    input.task_queue = activity_task_queue(input.activity, task_queue, vendors)
                return super().start_activity(input)

        class _Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(_Outbound(outbound))

        return _Inbound


class WorkerGroup:
    """The main worker and the vendor queues' workers, run and stopped together (the same
    interface as one ``Worker`` for the worker's callers: ``async with``, run, shutdown)."""

    def __init__(
        self,
        main: Worker,
        vendor_workers: Sequence[Worker],
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.main = main
        self.vendor_workers = list(vendor_workers)
        #: undoes what building the group set in the process (its vendors' pacing), once stopped
        self.on_close = on_close

    @property
    def workers(self) -> list[Worker]:
        return [self.main, *self.vendor_workers]

    @property
    def task_queue(self) -> str:
        return self.main.task_queue

    @property
    def task_queues(self) -> list[str]:
        return [w.task_queue for w in self.workers]

    @property
    def is_running(self) -> bool:
        return self.main.is_running

    @property
    def client(self) -> Any:
        return self.main.client

    async def run(self) -> None:
        await asyncio.gather(*(w.run() for w in self.workers))

    async def shutdown(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers if w.is_running))

    async def __aenter__(self) -> WorkerGroup:
        started: list[Worker] = []
        try:
            for w in self.workers:
                await w.__aenter__()
                started.append(w)
        except BaseException:
            for w in reversed(started):
                await w.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await asyncio.gather(*(w.__aexit__(*exc) for w in reversed(self.workers)))
        finally:
            if self.on_close is not None:
                self.on_close()


def vendor_workers(
    client: Any,
    task_queue: str,
    activities: Sequence[Callable[..., Any]],
    vendors: Mapping[str, str],
    limits: Limits,
    interceptors: Sequence[Interceptor],
    threads: int,
    **worker_kwargs: Any,
) -> list[Worker]:
    """One worker per vendor of the deployment, polling ``{task_queue}.{vendor}`` with that
    vendor's rate and concurrency and only the activities that call it."""
    out: list[Worker] = []
    for side, vendor in vendors.items():
        mine = [fn for fn in activities if SINGLE_VENDOR.get(activity_name(fn)) == side]
        if not mine:
            continue
        slots = min(threads, limits.process_concurrency(vendor) or threads)
        out.append(
            Worker(
                client,
                task_queue=vendor_task_queue(task_queue, vendor),
                activities=mine,
                activity_executor=ThreadPoolExecutor(
                    slots, thread_name_prefix=f"activity-{vendor}"
                ),
                max_concurrent_activities=slots,
                max_task_queue_activities_per_second=limits.queue_rate(vendor),
                interceptors=list(interceptors),
                **worker_kwargs,
            )
        )
    return out
