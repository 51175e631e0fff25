"""infra/startup.py without processes: what is waited out, what stops at once, the log line, the
back-off, the configured limit, and the grace for search attributes being registered."""

from __future__ import annotations

import logging
import random
from types import SimpleNamespace
from typing import Any

import pytest
from temporalio.service import RPCError, RPCStatusCode

from infra import startup
from infra.startup import Backoff, StartupError, classify, connect_with_retry

REFUSED = RuntimeError(
    "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
    'ConnectError(ConnectError("tcp connect error", 127.0.0.1:7233, Os { code: 111, kind: '
    'ConnectionRefused, message: "Connection refused" })))'
)
DNS = RuntimeError(
    "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
    'ConnectError(ConnectError("dns error", Custom { kind: Uncategorized, error: "failed to '
    'lookup address information: Name or service not known" })))'
)
UNAUTHENTICATED = RuntimeError(
    "Failed client connect: `get_system_info` call error after connection: Status { code: "
    'Unauthenticated, message: "Request unauthorized.", metadata: MetadataMap { headers: {} }, '
    "source: None }"
)
PLAINTEXT = RuntimeError(
    "Failed client connect: Server connection error: tonic::transport::Error(Transport, "
    "ConnectError(Custom { kind: InvalidData, error: InvalidMessage(InvalidContentType) }))"
)


@pytest.mark.parametrize(
    ("exc", "transient", "reason"),
    [
        (REFUSED, True, "connection refused"),
        (DNS, True, "DNS lookup failed"),
        (TimeoutError(), True, "timed out"),
        (RPCError("down", RPCStatusCode.UNAVAILABLE, b""), True, "unavailable: down"),
        (UNAUTHENTICATED, False, "credentials refused (Unauthenticated): Request unauthorized."),
        (RPCError("no", RPCStatusCode.PERMISSION_DENIED, b""), False, "access denied"),
        (PLAINTEXT, False, "TLS handshake failed (InvalidContentType)"),
        (FileNotFoundError(2, "No such file", "/etc/tls/client.pem"), False, "cannot read"),
    ],
)
def test_classify(exc: BaseException, transient: bool, reason: str) -> None:
    failure = classify(exc)
    assert failure.transient is transient
    assert failure.reason.startswith(reason), failure.reason


def test_backoff_is_capped_exponential_with_jitter() -> None:
    b, rng = Backoff(initial_s=0.5, factor=2, cap_s=15), random.Random(1)
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (6, 15.0), (30, 15.0)]:
        for _ in range(20):
            assert base / 2 <= b.delay(attempt, rng) <= base


class FakeClient:
    def __init__(self, namespace: str = "default", attributes: tuple[str, ...] = ()) -> None:
        self.namespace = namespace
        self.attributes = set(attributes)
        missing_ns = namespace != "default"

        async def describe_namespace(req: Any, timeout: Any = None) -> None:
            if missing_ns:
                raise RPCError("not found", RPCStatusCode.NOT_FOUND, b"")

        async def list_search_attributes(req: Any, timeout: Any = None) -> Any:
            return SimpleNamespace(custom_attributes={a: 1 for a in self.attributes})

        self.workflow_service = SimpleNamespace(describe_namespace=describe_namespace)
        self.operator_service = SimpleNamespace(list_search_attributes=list_search_attributes)


FAST = Backoff(initial_s=0.01, cap_s=0.02)


async def test_transient_failures_are_waited_out_with_one_line_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = [REFUSED, REFUSED, DNS]
    client = FakeClient()

    async def connect() -> Any:
        if failures:
            raise failures.pop(0)
        return client

    with caplog.at_level(logging.WARNING, logger="revbridge.startup"):
        got = await connect_with_retry(connect, "127.0.0.1:7233", backoff=FAST)  # type: ignore[arg-type]
    assert got is client
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("waiting for Temporal at 127.0.0.1:7233 (attempt 1, next in ")
    assert lines[0].endswith("s): connection refused")
    assert lines[2].endswith("DNS lookup failed")
    assert lines[3].startswith("connected to Temporal at 127.0.0.1:7233 after 4 attempts")


async def test_permanent_failures_stop_at_the_first_attempt() -> None:
    calls = 0

    async def connect() -> Any:
        nonlocal calls
        calls += 1
        raise UNAUTHENTICATED

    with pytest.raises(StartupError, match=r"^Temporal at h:1: credentials refused"):
        await connect_with_retry(connect, "h:1", backoff=FAST)  # type: ignore[arg-type]
    assert calls == 1

    async def unknown_namespace() -> Any:
        return FakeClient(namespace="prod")

    with pytest.raises(StartupError, match="namespace 'prod' does not exist"):
        await connect_with_retry(unknown_namespace, "h:1", backoff=FAST)  # type: ignore[arg-type]


async def test_a_configured_limit_ends_the_wait() -> None:
    async def connect() -> Any:
        raise REFUSED

    with pytest.raises(StartupError, match=r"still unreachable after .* limit 0.1 s\): connection"):
        await connect_with_retry(connect, "h:1", wait_limit_s=0.1, backoff=FAST)  # type: ignore[arg-type]


async def test_missing_search_attributes_get_a_grace_then_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(startup, "SEARCH_ATTRIBUTE_GRACE_S", 0.2)
    client = FakeClient()

    async def connect() -> Any:
        return client

    with pytest.raises(StartupError, match="lacks the search attribute.*RevBridgeUseCase"):
        await connect_with_retry(  # type: ignore[arg-type]
            connect, "h:1", search_attributes=["RevBridgeUseCase"], backoff=FAST
        )
    # registered while waiting (revbridge setup temporal right after the server came up): fine
    seen = 0

    async def registered_later() -> Any:
        nonlocal seen
        seen += 1
        if seen == 3:
            client.attributes.add("RevBridgeUseCase")
        return client

    got = await connect_with_retry(  # type: ignore[arg-type]
        registered_later, "h:1", search_attributes=["RevBridgeUseCase"], backoff=FAST
    )
    assert got is client
