"""Liveness and readiness over HTTP for processes that have no web server of their own (the worker).

``GET /healthz`` (liveness) answers 200 while the process and its event loop are alive — a
container ``HEALTHCHECK`` or a Kubernetes ``livenessProbe`` restarts it otherwise.
``GET /readyz`` (readiness) answers 200 only while the worker's pollers are seen by Temporal, and
503 with the reason otherwise (waiting for Temporal at start, server unreachable, pollers not
seen yet). Both bodies are small JSON objects. ``REVBRIDGE_HEALTH_PORT`` turns it on,
``REVBRIDGE_HEALTH_HOST`` picks the interface (default all, as a probe comes from outside the
container). docs/reliability.md lists the probes of every piece.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

log = logging.getLogger("revbridge.health")

ENV_HEALTH_PORT = "REVBRIDGE_HEALTH_PORT"
ENV_HEALTH_HOST = "REVBRIDGE_HEALTH_HOST"

Probe = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


class HealthServer:
    """A tiny HTTP/1.1 server (asyncio streams, no dependency) for ``/healthz`` and ``/readyz``."""

    def __init__(self, live: Probe, ready: Probe, host: str = "0.0.0.0", port: int = 0) -> None:
        self._live, self._ready = live, ready
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None

    async def start(self) -> HealthServer:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (line := await asyncio.wait_for(reader.readline(), 5)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                _ = line  # headers: nothing we need
            parts = request.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            if path == "/healthz":
                ok, body = await self._live()
            elif path == "/readyz":
                ok, body = await self._ready()
            else:
                ok, body = False, {"error": "not found"}
            status = (
                "200 OK"
                if ok
                else ("404 Not Found" if "error" in body else "503 Service Unavailable")
            )
            payload = json.dumps({"ok": ok, **body}).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def health_port_from_env(env: Mapping[str, str] = os.environ) -> tuple[str, int] | None:
    raw = env.get(ENV_HEALTH_PORT, "").strip()
    if not raw:
        return None
    return env.get(ENV_HEALTH_HOST, "0.0.0.0"), int(raw)


class WorkerProbe:
    """What the worker's ``/readyz`` reports: Temporal reachable, and this worker's own pollers
    (its client identity) recently seen by the server on its workflow and activity task queues.

    Checked in the background every ``every_s`` seconds, so a probe never waits on Temporal."""

    #: a poller whose last poll is older than this is not counted (a long poll lasts up to ~60 s)
    POLLER_FRESH_S = 70.0

    def __init__(self, task_queue: str, every_s: float = 3.0) -> None:
        self.task_queue = task_queue
        self.every_s = every_s
        self.client: Client | None = None
        self.state: dict[str, Any] = {"temporal": "waiting for the first connection"}
        self.ready = False
        self.started = time.time()
        self._task: asyncio.Task[None] | None = None

    def attach(self, client: Client) -> None:
        self.client = client
        self.state = {"temporal": "connected"}
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def live(self) -> tuple[bool, dict[str, Any]]:
        return True, {"uptime_s": round(time.time() - self.started, 1)}

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        return self.ready, dict(self.state)

    async def _loop(self) -> None:
        while True:
            try:
                await self.check()
            except Exception as exc:  # the probe must never kill the worker
                self.ready = False
                self.state = {"temporal": f"unreachable ({type(exc).__name__})"}
            await asyncio.sleep(self.every_s)

    async def check(self) -> None:
        assert self.client is not None
        client = self.client
        seen: dict[str, float | None] = {}
        for kind, queue_type in (
            ("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
            ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
        ):
            resp = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=self.task_queue),
                    task_queue_type=queue_type,
                ),
                retry=False,
                timeout=timedelta(seconds=2),
            )
            ages = [
                time.time() - p.last_access_time.seconds
                for p in resp.pollers
                if p.identity == client.identity
            ]
            seen[kind] = round(min(ages), 1) if ages else None
        fresh = all(age is not None and age < self.POLLER_FRESH_S for age in seen.values())
        self.ready = fresh
        self.state = {
            "temporal": "reachable",
            "task_queue": self.task_queue,
            "identity": client.identity,
            "pollers_last_seen_s": seen,
        }
        if not fresh:
            self.state["reason"] = "this worker's pollers are not seen by Temporal yet"
