"""Starting without Temporal: the worker and the webhook service wait for it, or stop at once.

``connect_with_retry`` is the one start-up path both processes use (issue 25):

- a *transient* failure — connection refused, DNS failure, a timeout (TLS handshake included), the
  frontend answering ``Unavailable`` — is retried with capped exponential back-off and full
  jitter, one log line per attempt::

      waiting for Temporal at 127.0.0.1:7233 (attempt 7, next in 10 s): connection refused

  forever by default, or until ``REVBRIDGE_TEMPORAL_WAIT_S`` seconds (``--wait-for-temporal``)
  have passed;
- a *permanent* failure — credentials refused, unknown namespace, a custom search attribute not
  registered, TLS material that cannot work — raises :class:`StartupError` on the first attempt:
  one line naming the cause, never a retry loop on something a person must fix.

After a successful connect the SDK's own client and pollers reconnect by themselves (verified by
tests/ops: a server SIGKILLed and restarted under load), so nothing here runs after start-up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

log = logging.getLogger("revbridge.startup")

ENV_WAIT = "REVBRIDGE_TEMPORAL_WAIT_S"

#: checks after connecting answer within this, or count as a transient failure
CHECK_TIMEOUT = timedelta(seconds=5)
#: how long missing search attributes may take to appear before they are a person's problem
SEARCH_ATTRIBUTE_GRACE_S = 30.0


class StartupError(Exception):
    """A failure a person must fix (or a configured wait that ran out): one line, no trace."""


class MissingSearchAttributes(StartupError):
    """Permanent — unless a set-up step is registering them right now (``revbridge setup
    temporal`` after a fresh server starts): waited for ``SEARCH_ATTRIBUTE_GRACE_S`` first."""


@dataclass(frozen=True)
class Backoff:
    """Capped exponential back-off with full jitter: attempt n waits a random time in
    ``[base/2, base]`` where ``base = min(cap, initial * factor**(n-1))``."""

    initial_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 15.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        base = min(self.cap_s, self.initial_s * self.factor ** max(0, attempt - 1))
        return (rng or random).uniform(base / 2, base)


# --- classification ----------------------------------------------------------------------------------

_TRANSIENT_CODES = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.ABORTED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.INTERNAL,
    RPCStatusCode.UNKNOWN,
}
_PERMANENT_CODES = {
    RPCStatusCode.UNAUTHENTICATED: "credentials refused (Unauthenticated)",
    RPCStatusCode.PERMISSION_DENIED: "access denied (PermissionDenied)",
    RPCStatusCode.NOT_FOUND: "not found",
    RPCStatusCode.INVALID_ARGUMENT: "request rejected (InvalidArgument)",
    RPCStatusCode.UNIMPLEMENTED: "not a Temporal frontend (Unimplemented)",
}
# what the SDK's connect error text says (it is a RuntimeError carrying the Rust error's Debug form)
_CODE_IN_TEXT = re.compile(r"code: (\w+)")
_TEXT_CODES = {
    "Unauthenticated": RPCStatusCode.UNAUTHENTICATED,
    "PermissionDenied": RPCStatusCode.PERMISSION_DENIED,
    "NotFound": RPCStatusCode.NOT_FOUND,
    "InvalidArgument": RPCStatusCode.INVALID_ARGUMENT,
    "Unimplemented": RPCStatusCode.UNIMPLEMENTED,
    "Unavailable": RPCStatusCode.UNAVAILABLE,
    "DeadlineExceeded": RPCStatusCode.DEADLINE_EXCEEDED,
}
# TLS that can never work (a plaintext server, an untrusted or malformed certificate)
_TLS_PERMANENT = (
    "InvalidContentType",
    "InvalidCertificate",
    "UnknownIssuer",
    "BadCertificate",
    "CertificateRequired",
    "NotValidForName",
    "certificate",
    "PEM",
)


@dataclass(frozen=True)
class Failure:
    transient: bool
    reason: str  # short, lower-case cause for the log line / the exit line; never a secret


def classify(exc: BaseException) -> Failure:
    """Whether a connect or start-up check failure is worth waiting out."""
    if isinstance(exc, StartupError):
        return Failure(False, str(exc))
    if isinstance(exc, RPCError):
        return _by_code(exc.status, exc.message)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Failure(True, "timed out")
    if isinstance(exc, ConnectionError):
        return Failure(True, type(exc).__name__)
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        return Failure(False, f"cannot read TLS/config file: {exc.strerror} ({exc.filename})")
    text = str(exc)
    if isinstance(exc, RuntimeError) and "client connect" in text:
        found = _CODE_IN_TEXT.search(text)
        if found and found.group(1) in _TEXT_CODES:
            msg = re.search(r'message: "([^"]*)"', text)
            return _by_code(_TEXT_CODES[found.group(1)], msg.group(1) if msg else "")
        low = text.lower()
        if "connection refused" in low:
            return Failure(True, "connection refused")
        if "dns error" in low or "lookup address" in low:
            return Failure(True, "DNS lookup failed")
        if "timed out" in low or "timeout" in low or "deadline" in low:
            return Failure(True, "timed out")
        if any(marker in text for marker in _TLS_PERMANENT):
            kind = next(m for m in _TLS_PERMANENT if m in text)
            return Failure(False, f"TLS handshake failed ({kind}): check TEMPORAL_TLS* settings")
        if "reset" in low or "broken pipe" in low or "connection" in low or "transport" in low:
            return Failure(True, "connection failed")
        return Failure(True, text.removeprefix("Failed client connect: ")[:120])
    if isinstance(exc, ValueError | TypeError | KeyError):
        # env-config that cannot be used (a malformed profile, TLS options that do not fit)
        return Failure(False, f"bad Temporal client configuration: {type(exc).__name__}: {exc}")
    return Failure(True, f"{type(exc).__name__}: {str(exc)[:120]}")


def _by_code(code: RPCStatusCode, message: str) -> Failure:
    if code in _PERMANENT_CODES:
        what = _PERMANENT_CODES[code]
        return Failure(False, f"{what}: {message}" if message else what)
    if code in _TRANSIENT_CODES:
        return Failure(True, f"{code.name.lower()}: {message}"[:160] if message else code.name)
    return Failure(False, f"{code.name}: {message}")


# --- checks after connecting -------------------------------------------------------------------------


async def check_namespace(client: Client) -> None:
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace), timeout=CHECK_TIMEOUT
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise StartupError(
                f"namespace {client.namespace!r} does not exist on this Temporal server"
            ) from None
        raise


async def check_search_attributes(client: Client, required: Iterable[str]) -> None:
    """Every custom search attribute RevBridge writes must be registered, or each start fails."""
    try:
        resp = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace), timeout=CHECK_TIMEOUT
        )
    except RPCError as exc:
        if exc.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
            # some deployments (scoped API keys) cannot list them: say so, do not guess
            log.warning("cannot verify search attributes (%s); continuing", exc.status.name)
            return
        raise
    missing = sorted(set(required) - set(resp.custom_attributes))
    if missing:
        raise MissingSearchAttributes(
            f"namespace {client.namespace!r} lacks the search attribute(s) {', '.join(missing)}: "
            "register them (`revbridge setup temporal`)"
        )


# --- the loop ----------------------------------------------------------------------------------------


def wait_limit_from_env(env: Mapping[str, str] = os.environ) -> float | None:
    """``REVBRIDGE_TEMPORAL_WAIT_S``: seconds to wait for Temporal at start; unset or 0: forever."""
    raw = env.get(ENV_WAIT, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise StartupError(f"{ENV_WAIT} must be a number of seconds") from None
    return value if value > 0 else None


async def connect_with_retry(
    connect: Callable[[], Awaitable[Client]],
    address: str,
    *,
    search_attributes: Iterable[str] = (),
    wait_limit_s: float | None = None,
    backoff: Backoff = Backoff(),
    stop: asyncio.Event | None = None,
    after_connect: Callable[[Client], Awaitable[None]] | None = None,
    logger: logging.Logger = log,
) -> Client | None:
    """Connect and check the namespace (and search attributes); retry what is transient.

    ``after_connect(client)`` runs inside the same retry (e.g. ensuring schedules): a transient
    failure there is waited out like a refused connection.

    Returns the client, or None when ``stop`` was set while waiting. Raises
    :class:`StartupError` on a permanent failure or when ``wait_limit_s`` ran out."""
    required = tuple(search_attributes)
    started = time.monotonic()
    attempt = 0
    missing_since: float | None = None
    while True:
        attempt += 1
        try:
            client = await connect()
            await check_namespace(client)
            if required:
                await check_search_attributes(client, required)
            if after_connect is not None:
                await after_connect(client)
            if attempt > 1:
                logger.warning(
                    "connected to Temporal at %s after %d attempts (%.0f s)",
                    address,
                    attempt,
                    time.monotonic() - started,
                )
            return client
        except Exception as exc:  # classified below: the trace is never the message
            failure = classify(exc)
            delay = backoff.delay(attempt)
            if isinstance(exc, MissingSearchAttributes):
                missing_since = missing_since or time.monotonic()
                if time.monotonic() - missing_since < SEARCH_ATTRIBUTE_GRACE_S:
                    failure, delay = Failure(True, str(exc).split(":")[0]), min(delay, 2.0)
            if not failure.transient:
                raise StartupError(f"Temporal at {address}: {failure.reason}") from None
            waited = time.monotonic() - started
            if wait_limit_s is not None and waited >= wait_limit_s:
                raise StartupError(
                    f"Temporal at {address} still unreachable after {waited:.0f} s "
                    f"({attempt} attempts, limit {wait_limit_s:g} s): {failure.reason}"
                ) from None
            if wait_limit_s is not None:
                delay = min(delay, wait_limit_s - waited)  # one last attempt at the limit
            logger.warning(
                "waiting for Temporal at %s (attempt %d, next in %s s): %s",
                address,
                attempt,
                f"{delay:.0f}" if delay >= 1 else f"{delay:.1f}",
                failure.reason,
            )
        if stop is None:
            await asyncio.sleep(delay)
        else:
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return None
            except TimeoutError:
                pass


async def connect_temporal(
    *,
    stop: asyncio.Event | None = None,
    wait_limit_s: float | None = None,
    search_attributes: Iterable[str] = (),
    after_connect: Callable[[Client], Awaitable[None]] | None = None,
    **connect_kwargs: Any,
) -> Client | None:
    """:func:`connect_with_retry` with the process's env-config connection
    (``infra.connection.client_connect_kwargs``) plus ``connect_kwargs`` (interceptors, runtime)."""
    from infra.connection import client_connect_kwargs

    try:
        kwargs = {**client_connect_kwargs(), **connect_kwargs}
    except Exception as exc:  # a malformed profile or TLS file: a person must fix it
        raise StartupError(f"Temporal client configuration: {classify(exc).reason}") from None
    return await connect_with_retry(
        lambda: Client.connect(**kwargs),
        str(kwargs.get("target_host")),
        search_attributes=search_attributes,
        wait_limit_s=wait_limit_s,
        stop=stop,
        after_connect=after_connect,
    )


async def preflight(search_attributes: Iterable[str] = ()) -> None:
    """One quick attempt with the env-config connection and no extras, before a process imports
    its heavy parts (the worker: every vendor SDK and workflow, seconds on a busy host): a
    permanent failure raises :class:`StartupError` at once; success or a transient failure
    returns (the real start-up connects again, or waits the failure out and says so)."""
    from infra.connection import client_connect_kwargs

    address = "?"
    try:
        kwargs = client_connect_kwargs()
        address = str(kwargs.get("target_host"))
        client = await Client.connect(**kwargs, connect_timeout=timedelta(seconds=5))
        await check_namespace(client)
        required = tuple(search_attributes)
        if required:
            await check_search_attributes(client, required)
    except MissingSearchAttributes:
        return  # maybe being registered right now: the real start-up gives it a grace period
    except Exception as exc:
        failure = classify(exc)
        if not failure.transient:
            raise StartupError(f"Temporal at {address}: {failure.reason}") from None
