"""What every benchmark shares: a fresh dev server (the pinned binary, load-run dynamic config), the
Chargebee and Salesforce sandboxes in a background thread, settings pointing at them, RevBridge's
own processes as subprocesses, and small statistics helpers."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cli.config import (
    BasicCreds,
    SandboxCfg,
    SandboxVendorCreds,
    StackConfig,
    TemporalCfg,
    WebhooksCfg,
    WorkerCfg,
)
from cli.stack import temporal_binary
from domain.settings import Settings
from domain.temporal import ALL_SEARCH_ATTRIBUTE_KEYS
from infra.codec import data_converter
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.mailbox import MailboxEmulator
from sandbox.salesforce import SalesforceEmulator
from tests.pairs import CB_KEY, SF_ID, SF_SECRET, WEBHOOK_PASSWORD, WEBHOOK_USER, pair_settings

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
#: the pair's settings name every vendor; the benchmarks run Chargebee × Salesforce only, so the
#: other two point at the discard port (nothing should ever call them)
UNUSED_PORT = 9
#: the Chargebee site the benchmarks model: Enterprise, 3,500 requests a minute
CHARGEBEE_PER_MINUTE = 3500
DEV_SERVER_ARGS = [
    "--dynamic-config-value",
    "history.transferProcessorMaxPollRPS=1000",
    "--dynamic-config-value",
    "frontend.namespaceCount=10000",
]


@dataclass
class Stack:
    env: WorkflowEnvironment
    chargebee: ChargebeeEmulator
    salesforce: SalesforceEmulator
    sandbox: ServerThread
    logs: Path
    #: the mailbox's SMTP port: day 0 of the playbook emails SMB customers
    smtp_port: int

    @property
    def client(self) -> Client:
        return self.env.client

    @property
    def temporal_address(self) -> str:
        return self.client.service_client.config.target_host

    @property
    def urls(self) -> dict[str, str]:
        unused = f"http://{HOST}:{UNUSED_PORT}"
        return {"stripe": unused, "hubspot": unused, **self.sandbox.urls}

    def settings(self, task_queue: str) -> Settings:
        return pair_settings(self.urls, "chargebee", "salesforce", task_queue)

    def stack_config(self, task_queue: str, webhook_port: int) -> StackConfig:
        """The local stack's shape, pointed at this run's server and sandboxes."""
        ip, port = self.temporal_address.rsplit(":", 1)
        ports = {"stripe": UNUSED_PORT, "hubspot": UNUSED_PORT}
        ports |= {em.name: p for em, p in self.sandbox.ports.items()}
        return StackConfig(
            temporal=TemporalCfg(ip=ip, port=int(port)),
            sandbox=SandboxCfg(
                host=HOST,
                ports=ports,
                smtp_port=self.smtp_port,
                chargebee=SandboxVendorCreds(site="acme-test", api_key=CB_KEY),
                salesforce=SandboxVendorCreds(client_id=SF_ID, client_secret=SF_SECRET),
            ),
            webhooks=WebhooksCfg(
                host=HOST,
                port=webhook_port,
                chargebee=BasicCreds(username=WEBHOOK_USER, password=WEBHOOK_PASSWORD),
            ),
            worker=WorkerCfg(task_queues=[task_queue], http_timeout_s=10),
        )

    def server_pid(self) -> int | None:
        """The dev server is our child process (the SDK does not expose its pid)."""
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                comm, rest = stat.read_text().rsplit(")", 1)
                if comm.endswith("(temporal") and int(rest.split()[1]) == os.getpid():
                    return int(stat.parent.name)
        return None


@contextlib.asynccontextmanager
async def stack(logs: Path) -> AsyncIterator[Stack]:
    """``logs``: an existing folder for the subprocesses' output."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        search_attributes=ALL_SEARCH_ATTRIBUTE_KEYS,
        data_converter=data_converter(),
        dev_server_extra_args=DEV_SERVER_ARGS,
    )
    try:
        # an Enterprise site (3,500 requests/min), as the worker's pacing is told (flows.py's
        # limits file): a test site's 150/min would make the vendor, not RevBridge, the subject
        cb = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=CHARGEBEE_PER_MINUTE)
        sf = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
        mb = MailboxEmulator()
        smtp_port = mb.start_smtp(HOST)
        try:
            with ServerThread({cb: 0, sf: 0, mb: 0}, host=HOST) as thread:
                yield Stack(env, cb, sf, thread, logs, smtp_port)
        finally:
            mb.stop_smtp()
    finally:
        await env.shutdown()


# --- subprocesses ------------------------------------------------------------------------------


class Service:
    """One RevBridge process (``python -m cli.main worker|webhooks``, or a floor worker)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            [sys.executable, *args],
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{tail}")

    def peak_rss_mb(self) -> float | None:
        """VmHWM: the process's peak resident set so far."""
        with contextlib.suppress(OSError):
            return vm_hwm_mb(self.proc.pid)
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()


def vm_hwm_mb(pid: int) -> float | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid or os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds each named process spends between ``start()`` and ``stop()``."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        self.used = {n: cpu_seconds(p) - self._start[n] for n, p in self.pids.items()}
        return self.used


async def wait_until(
    check: Callable[[], Awaitable[bool]], within_s: float, what: str, every_s: float = 0.1
) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(every_s)


async def wait_for_http(url: str, service: Service, within_s: float = 120.0) -> None:
    async with httpx.AsyncClient(timeout=2) as http:

        async def up() -> bool:
            service.check_alive()
            try:
                return (await http.get(url)).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(up, within_s, f"{service.name} at {url}", every_s=0.2)


async def wait_for_pollers(client: Client, task_queue: str, service: Service) -> None:
    """Until a worker polls the task queue's workflow tasks."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    async def polling() -> bool:
        service.check_alive()
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        return bool(resp.pollers)

    await wait_until(polling, 60.0, f"{service.name} polling {task_queue}", every_s=0.2)


async def bounded(concurrency: int, jobs: Iterable[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run jobs with at most ``concurrency`` in flight; results in job order."""
    queue = list(enumerate(jobs))
    results: list[Any] = [None] * len(queue)
    it = iter(queue)

    async def lane() -> None:
        for i, job in it:
            results[i] = await job()

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return results


# --- statistics --------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), in the values' unit."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
