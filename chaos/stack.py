"""A local RevBridge stack as separate processes that a test or a chaos scenario can kill.

The stack file is a copy of ``temporal-dev.yaml`` with free ports and a database in the run's own
folder; each piece runs exactly as an operator would start it (``revbridge worker|webhooks|
sandbox --config …``, ``temporal server start-dev`` from the pinned wheel), logs to its own file,
and can be SIGKILLed and started again. Workers expose their probes on a health port of their own
(``REVBRIDGE_HEALTH_PORT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from cli.config import StackConfig
from cli.setup_temporal import ensure_stack_temporal
from cli.stack import temporal_ready, temporal_server_args
from infra.codec import data_converter
from sandbox.framework import free_port

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
#: variables of the caller's environment a piece must not inherit (the stack file decides them)
_SCRUB = ("TEMPORAL_", "REVBRIDGE_", "CHARGEBEE_", "STRIPE_", "HUBSPOT_", "SALESFORCE_", "SMTP_")


def write_stack_file(
    folder: Path, billing: str, crm: str, http_timeout_s: float | None = None
) -> Path:
    """``temporal-dev.yaml`` with free ports, this folder's database and the pair
    (``http_timeout_s``: the vendor clients' timeout, short so a commit-then-timeout fault is
    seen quickly)."""
    cfg = yaml.safe_load((ROOT / "temporal-dev.yaml").read_text())
    if http_timeout_s is not None:
        cfg.setdefault("worker", {})["http_timeout_s"] = http_timeout_s
    cfg["temporal"]["port"] = free_port()
    cfg["temporal"]["ui_port"] = free_port()
    cfg["temporal"]["db_file"] = "temporal.db"
    cfg["sandbox"]["ports"] = {name: free_port() for name in cfg["sandbox"]["ports"]}
    cfg["sandbox"]["smtp_port"] = free_port()
    cfg["webhooks"]["port"] = free_port()
    cfg["pair"] = {"billing": billing, "crm": crm}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "temporal-dev.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    return {**env, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **extra}


@dataclass
class Piece:
    """One process of the stack: started, killed and started again with the same arguments."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=clean_env)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    health_url: str | None = None

    def start(self) -> Piece:
        assert not self.alive, f"{self.name} is already running"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own binaries and modules
                self.args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=ROOT,
                start_new_session=True,
            )
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def last_line(self) -> str:
        lines = self.text().strip().splitlines()
        return lines[-1] if lines else "(no output)"


class LocalStack:
    """Temporal + sandbox + ``workers`` workers + ``webhooks`` webhook services, as processes."""

    def __init__(
        self, folder: Path, billing: str = "chargebee", crm: str = "salesforce", *, workers: int = 1,
        webhooks: int = 1, http_timeout_s: float | None = None,
    ) -> None:  # fmt: skip
        self.folder = folder
        self.config_path = write_stack_file(folder, billing, crm, http_timeout_s)
        self.cfg = StackConfig.load(self.config_path)
        self.billing, self.crm = billing, crm
        logs = folder / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        pair_env = {"REVBRIDGE_BILLING": billing, "REVBRIDGE_CRM": crm}
        self.temporal = Piece(
            "temporal", temporal_server_args(self.cfg, ui=False), logs / "temporal.log"
        )
        self.sandbox = Piece(
            "sandbox", self._revbridge("sandbox"), logs / "sandbox.log", clean_env(**pair_env)
        )
        self.workers: list[Piece] = []
        for i in range(workers):
            port = free_port()
            env = clean_env(**pair_env, REVBRIDGE_HEALTH_PORT=str(port), REVBRIDGE_HEALTH_HOST=HOST)
            w = Piece(f"worker{i + 1}", self._revbridge("worker"), logs / f"worker{i + 1}.log", env)
            w.health_url = f"http://{HOST}:{port}"
            self.workers.append(w)
        self.webhooks: list[Piece] = []
        for i in range(webhooks):
            # one instance listens on the stack file's port; more get ports of their own (behind
            # the round-robin proxy, which then takes the stack file's port: chaos/proxy.py)
            port = self.cfg.webhooks.port if webhooks == 1 else free_port()
            wh = Piece(
                f"webhooks{i + 1}",
                [*self._revbridge("webhooks"), "--port", str(port)],
                logs / f"webhooks{i + 1}.log",
                clean_env(**pair_env),
            )
            wh.health_url = f"http://{HOST}:{port}"
            self.webhooks.append(wh)

    def _revbridge(self, command: str) -> list[str]:
        return [sys.executable, "-m", "cli.main", command, "--config", str(self.config_path)]

    @property
    def pieces(self) -> list[Piece]:
        return [self.temporal, self.sandbox, *self.webhooks, *self.workers]

    @property
    def webhook_url(self) -> str:
        """Where vendors deliver: the one webhook service, or the proxy in front of several."""
        return self.cfg.webhooks.url

    def service_env(self) -> dict[str, str]:
        return self.cfg.service_env()

    async def client(self) -> Client:
        return await Client.connect(
            self.cfg.temporal.address,
            namespace=self.cfg.temporal.namespace,
            data_converter=data_converter(),
        )

    # --- health ------------------------------------------------------------------------------------

    async def temporal_up(self) -> bool:
        return await temporal_ready(self.cfg)

    def sandbox_up(self) -> bool:
        return all(
            _get(self.cfg.sandbox.url(v) + "/_sandbox/health") == 200
            for v in self.cfg.sandbox.ports
        )

    @staticmethod
    def ready(piece: Piece) -> bool:
        assert piece.health_url
        return _get(piece.health_url + "/readyz") == 200

    async def worker_polling_pid(self, pid: int, within_s: float = 10.0) -> bool:
        return await self.worker_polling(None, within_s, pid=pid)

    async def worker_polling(
        self, piece: Piece | None = None, within_s: float = 10.0, pid: int | None = None
    ) -> bool:
        """Some worker (or any, when ``piece`` is None) polls the task queue: the server saw a
        poll from it within the last ``within_s`` seconds."""
        try:
            client = await Client.connect(
                self.cfg.temporal.address, namespace=self.cfg.temporal.namespace
            )
            resp = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self.cfg.temporal.namespace,
                    task_queue=TaskQueue(name=self.cfg.worker.task_queues[0]),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
        except Exception:
            return False
        now = time.time()
        fresh = [p for p in resp.pollers if now - p.last_access_time.seconds < within_s]
        pid = piece.pid if piece is not None else pid
        if pid is None:
            return bool(fresh)
        return any(p.identity.startswith(f"{pid}@") for p in fresh)

    async def wait_until(
        self, what: str, check: Callable[[], Awaitable[bool] | bool], within_s: float = 60.0,
        watch: list[Piece] | None = None,
    ) -> float:  # fmt: skip
        """Seconds until ``check`` holds; fails if it does not within ``within_s`` or a watched
        piece exits meanwhile."""
        began = time.monotonic()
        while True:
            result = check()
            if isinstance(result, Awaitable):
                result = await result
            if result:
                return time.monotonic() - began
            for piece in watch or ():
                if not piece.alive:
                    raise AssertionError(
                        f"{piece.name} exited while waiting for {what}: {piece.last_line()}"
                    )
            if time.monotonic() - began > within_s:
                raise AssertionError(f"{what} not within {within_s:.0f} s")
            await asyncio.sleep(0.2)

    # --- life cycle --------------------------------------------------------------------------------

    async def start_temporal(self) -> None:
        """Start the dev server and set it up like any cluster (search attributes, retention:
        ``revbridge setup temporal``), as ``revbridge dev`` does."""
        self.temporal.start()
        await self.wait_until("temporal", self.temporal_up, 60, [self.temporal])
        await ensure_stack_temporal(self.cfg)

    async def start(self) -> LocalStack:
        self.sandbox.start()
        for piece in [*self.webhooks, *self.workers]:
            piece.start()
        await self.start_temporal()
        await self.wait_until("sandbox", self.sandbox_up, 30, [self.sandbox])
        for piece in [*self.webhooks, *self.workers]:
            await self.wait_until(f"{piece.name} ready", lambda p=piece: self.ready(p), 60, [piece])
        return self

    def stop(self) -> None:
        for piece in reversed(self.pieces):
            piece.stop()

    async def __aenter__(self) -> LocalStack:
        try:
            return await self.start()
        except BaseException:
            self.stop()
            raise

    async def __aexit__(self, *exc: Any) -> None:
        self.stop()


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2.0).status_code
    except httpx.HTTPError:
        return None
