"""`revbridge setup temporal` against a fresh dev server: the dry run prints exactly what the real
run then changes, a second real run changes nothing, and a bad address is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.testing import WorkflowEnvironment

from cli.stack import temporal_binary
from domain.redelivery import REDELIVERY_WINDOWS, REQUIRED_RETENTION
from domain.temporal import SEARCH_ATTRIBUTES
from infra.temporal_setup import Target, days
from sandbox.framework import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
async def bare_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server as `temporal server start-dev` makes it: no custom search attributes, the
    default namespace's one-day retention."""
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=str(temporal_binary()))
    try:
        yield env
    finally:
        await env.shutdown()


def setup_temporal(address: str, *flags: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "REVBRIDGE_"))}
    env |= {"TEMPORAL_ADDRESS": address, "TEMPORAL_NAMESPACE": "default", "PYTHONPATH": str(ROOT)}
    env |= extra
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "cli.main", "setup", "temporal", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


async def test_dry_run_then_real_run_then_nothing_to_change(
    bare_server: WorkflowEnvironment,
) -> None:
    client = bare_server.client
    address = client.service_client.config.target_host
    attrs = sorted(SEARCH_ATTRIBUTES.items())
    header = f"Temporal {address}, namespace default: connected (plaintext, no credentials)"
    longest = max(REDELIVERY_WINDOWS.values(), key=lambda w: w.window)
    retention = (
        f"raise the retention of namespace default from 1 day to {days(REQUIRED_RETENTION)} "
        f"({longest.vendor} redelivers for up to {days(longest.window)}; closed runs must "
        "outlive it, plus 3 days margin)"
    )

    dry = setup_temporal(address, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        header,
        *[
            f"  would register search attribute {n} ({k}) in namespace default"
            for n, k in SEARCH_ATTRIBUTES.items()
        ],
        f"  would {retention}",
        f"dry run: {len(attrs) + 1} change(s) planned, nothing changed",
    ]
    # the dry run changed nothing
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert not set(SEARCH_ATTRIBUTES) & set(listed.custom_attributes)

    real = setup_temporal(address)
    assert real.returncode == 0, real.stderr
    assert real.stdout.splitlines() == [
        header,
        *[
            f"  registered search attribute {n} ({k}) in namespace default"
            for n, k in SEARCH_ATTRIBUTES.items()
        ],
        f"  raised the retention of namespace default from 1 day to {days(REQUIRED_RETENTION)}",
        f"{len(attrs) + 1} change(s) made",
    ]
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace="default")
    )
    assert set(SEARCH_ATTRIBUTES) <= set(listed.custom_attributes)
    desc = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace="default")
    )
    assert desc.config.workflow_execution_retention_ttl.ToTimedelta() == REQUIRED_RETENTION
    # Chargebee, the longest window of the vendors RevBridge runs today, is covered with margin
    assert timedelta(days=3, hours=6, minutes=38) + timedelta(days=3) <= REQUIRED_RETENTION

    for flags in ((), ("--dry-run",)):
        again = setup_temporal(address, *flags)
        assert again.returncode == 0, again.stderr
        lines = again.stdout.splitlines()
        assert lines[0] == header
        assert lines[-1] == "up to date: nothing to change"
        assert not any("would" in line or "registered " in line for line in lines[1:])


def test_unreachable_temporal_is_one_line() -> None:
    run = setup_temporal(f"127.0.0.1:{free_port()}", "--dry-run")
    assert run.returncode == 2
    [line] = run.stderr.strip().splitlines()
    assert line.startswith("revbridge setup: cannot connect to Temporal at 127.0.0.1:")
    assert line.endswith("(plaintext, no credentials): connection refused")
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("env", "auth"),
    [
        ({}, "plaintext, no credentials"),
        ({"TEMPORAL_API_KEY": "k-123"}, "API key over TLS"),
        ({"TEMPORAL_TLS": "true"}, "TLS, no client credentials"),
        ({"TEMPORAL_TLS_CLIENT_CERT_DATA": "c", "TEMPORAL_TLS_CLIENT_KEY_DATA": "k"}, "mTLS"),
    ],
)
def test_env_config_decides_how_setup_connects(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], auth: str
) -> None:
    for key in list(os.environ):
        if key.startswith("TEMPORAL_"):
            monkeypatch.delenv(key)
    for key, value in {"TEMPORAL_ADDRESS": "temporal.example:7233", **env}.items():
        monkeypatch.setenv(key, value)
    target = Target.from_env()
    assert (target.address, target.namespace, target.auth) == (
        "temporal.example:7233",
        "default",
        auth,
    )
    assert "k-123" not in repr(target)


def test_refusals_are_one_line_without_the_secret(bare_server: WorkflowEnvironment) -> None:
    address = bare_server.client.service_client.config.target_host
    # an API key means TLS; the dev server speaks plaintext
    run = setup_temporal(address, "--dry-run", TEMPORAL_API_KEY="k-secret-123")
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"revbridge setup: cannot connect to Temporal at {address} (API key over TLS): "
        "TLS handshake failed (is the server plaintext?): check TEMPORAL_TLS*"
    )
    run = setup_temporal(address, "--dry-run", TEMPORAL_NAMESPACE="nope")
    assert run.returncode == 2
    assert run.stderr.strip() == f"revbridge setup: namespace nope does not exist at {address}"
