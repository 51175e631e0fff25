"""Issue 25 with real processes: the worker and the webhook service start before Temporal and
wait for it; a permanent Temporal error stops them at once with one line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc
import httpx
import pytest

from chaos.stack import ROOT, LocalStack, clean_env
from sandbox.framework import free_port
from tests.webhooks.helpers import basic, payment_failed

pytestmark = pytest.mark.timeout(150)


async def test_worker_and_webhooks_wait_for_a_server_started_20_s_later(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path)
    worker, webhooks = stack.workers[0], stack.webhooks[0]
    try:
        worker.start()
        webhooks.start()
        await stack.wait_until("webhooks liveness", lambda: _get(webhooks, "/healthz") == 200, 30)
        await stack.wait_until("worker liveness", lambda: _get(worker, "/healthz") == 200, 30)
        # while Temporal is away: not ready, and events are refused with 503 + Retry-After
        assert _get(webhooks, "/readyz") == 503 and _get(worker, "/readyz") == 503
        creds = stack.cfg.webhooks.chargebee
        resp = httpx.post(
            f"{webhooks.health_url}/webhooks/chargebee",
            content=payment_failed("INV-early", customer_id="cust-early"),
            headers=basic(creds.username, creds.password),
        )
        assert resp.status_code == 503 and resp.headers["retry-after"].isdigit()
        await asyncio.sleep(20 - 2)  # the server comes 20 s after the pieces
        assert worker.alive and webhooks.alive
        await stack.start_temporal()  # the server, set up as `revbridge setup temporal` does
        # ready soon after the server, by themselves (no restart: starts == 1 below); the bound
        # is generous, a loaded machine is no failure of theirs (the backoff caps at 15 s)
        await stack.wait_until(
            "webhooks ready", lambda: _get(webhooks, "/readyz") == 200, 45, [webhooks]
        )
        await stack.wait_until("worker ready", lambda: _get(worker, "/readyz") == 200, 45, [worker])
        assert await stack.worker_polling(worker)
        # serving: the event refused earlier is accepted when the vendor redelivers it
        resp = httpx.post(
            f"{webhooks.health_url}/webhooks/chargebee",
            content=payment_failed("INV-early", customer_id="cust-early"),
            headers=basic(creds.username, creds.password),
        )
        assert resp.status_code in (200, 202), resp.text
        assert worker.starts == 1 and webhooks.starts == 1 and worker.alive and webhooks.alive
        for piece in (worker, webhooks):
            waits = [ln for ln in piece.text().splitlines() if "waiting for Temporal at" in ln]
            assert waits, piece.text()[-500:]
            assert (
                f"waiting for Temporal at {stack.cfg.temporal.address} (attempt 1, next in"
                in waits[0]
            )
            assert waits[0].endswith("connection refused")
            assert "Traceback" not in piece.text()
    finally:
        stack.stop()


def _get(piece, path: str) -> int | None:  # noqa: ANN001
    try:
        return httpx.get(piece.health_url + path, timeout=2).status_code
    except httpx.HTTPError:
        return None


def _revbridge(command: str, env: dict[str, str], timeout: float = 15) -> tuple[int, str, float]:
    began = time.monotonic()
    run = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "cli.main", command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(
            REVBRIDGE_BILLING="chargebee", REVBRIDGE_CRM="salesforce", **_vendor_env(), **env
        ),
    )
    return run.returncode, run.stderr, time.monotonic() - began


def _vendor_env() -> dict[str, str]:
    return {
        "CHARGEBEE_SITE": "acme-test",
        "CHARGEBEE_API_KEY": "test_chargebee_key",
        "CHARGEBEE_API_URL": "http://127.0.0.1:9",
        "SALESFORCE_TOKEN_URL": "http://127.0.0.1:9/services/oauth2/token",
        "SALESFORCE_CLIENT_ID": "x",
        "SALESFORCE_CLIENT_SECRET": "y",
        "CHARGEBEE_WEBHOOK_USERNAME": "u",
        "CHARGEBEE_WEBHOOK_PASSWORD": "p",
        "REVBRIDGE_HEALTH_PORT": str(free_port()),
        "REVBRIDGE_HEALTH_HOST": "127.0.0.1",
    }


class _Unauthenticated(grpc.GenericRpcHandler):
    """A frontend that refuses every call's credentials, as Temporal Cloud does a bad API key."""

    def service(self, handler_call_details):  # noqa: ANN001, ANN201
        def refuse(request, context):  # noqa: ANN001, ANN202
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "Request unauthorized.")

        return grpc.unary_unary_rpc_method_handler(refuse)


@pytest.mark.parametrize("command", ["worker", "webhooks"])
def test_a_bad_api_key_exits_at_once_with_one_line(command: str) -> None:
    # "at once": on the first refusal, not after a retry loop — one line and no "waiting for
    # Temporal" attempts prove it (a wall-clock bound here failed on a loaded machine); a process
    # that kept waiting would hit _revbridge's timeout
    port = free_port()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers([_Unauthenticated()])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        env = {
            "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
            "TEMPORAL_API_KEY": "not-a-key",
            "TEMPORAL_TLS": "false",
        }
        code, stderr, took = _revbridge(command, env)
    finally:
        server.stop(0)
    assert code != 0, (code, took, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "credentials refused (Unauthenticated)" in lines[0]
    assert "not-a-key" not in stderr


async def test_an_unknown_namespace_exits_at_once_with_one_line(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path)
    try:
        await stack.start_temporal()
        env = {"TEMPORAL_ADDRESS": stack.cfg.temporal.address, "TEMPORAL_NAMESPACE": "no-such-ns"}
        for command in ("worker", "webhooks"):
            code, stderr, took = await asyncio.to_thread(_revbridge, command, env)
            assert code != 0, (command, code, took, stderr)
            lines = stderr.strip().splitlines()
            assert len(lines) == 1, stderr
            assert "namespace 'no-such-ns' does not exist" in lines[0]
    finally:
        stack.stop()
