"""Issue 25: `revbridge dev` restarts a piece that dies (here a SIGKILLed worker), says so, and the
stack serves again; Ctrl-C still stops everything."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaos.checks import at_durable_wait
from chaos.stack import ROOT, LocalStack, clean_env
from chaos.vendor import World, book

pytestmark = pytest.mark.timeout(150)


def _pids_of(config: Path, command: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"cli.main" in argv and command.encode() in argv and str(config).encode() in argv:
            found.append(int(entry.name))
    return found


async def test_dev_restarts_a_sigkilled_worker_and_the_stack_serves_again(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path)  # only for its stack file, health checks and clients
    out = tmp_path / "dev.out"
    with out.open("wb") as sink:
        dev = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "cli.main", "dev", "--headless", "--config", str(stack.config_path)],
            cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=clean_env(), start_new_session=True,
        )  # fmt: skip
    try:
        await stack.wait_until("dev ready", lambda: b"Ready." in out.read_bytes(), 90)
        [worker_pid] = _pids_of(stack.config_path, "worker")
        os.kill(worker_pid, signal.SIGKILL)
        await stack.wait_until(
            "restart printed", lambda: b"worker restarted" in out.read_bytes(), 30
        )
        text = out.read_text()
        assert "worker exited unexpectedly (killed by SIGKILL); last log line:" in text
        [new_pid] = _pids_of(stack.config_path, "worker")
        assert new_pid != worker_pid
        assert dev.poll() is None
        took = await stack.wait_until(
            "new worker polling", lambda: stack.worker_polling_pid(new_pid), 30
        )
        assert took < 30
        # serving again: a failed payment goes vendor → webhooks → Temporal → the new worker
        world = World(stack.service_env())
        [ids] = await asyncio.to_thread(world.seed, book(1, "dev"), str(int(time.time())))
        await world.decline(ids["invoice"])
        client = await stack.client()
        wf = f"dunning:chargebee:{ids['invoice']}"
        await stack.wait_until("run at its durable wait", lambda: _waiting(client, wf), 60)
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            code = dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dev.kill()
            raise
    assert code == 0, out.read_text()[-1000:]
    assert "Stopping" in out.read_text()
    assert not _pids_of(stack.config_path, "worker") and not _pids_of(stack.config_path, "webhooks")


async def _waiting(client, wf: str) -> bool:  # noqa: ANN001
    return (await at_durable_wait(client, wf))[0]
