"""``revbridge setup temporal``: make a namespace ready for RevBridge, idempotently.

Three things, in order:

1. **connect** the way every RevBridge process does (env-config: ``TEMPORAL_ADDRESS``,
   ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS*``, ``TEMPORAL_PROFILE``), and
   describe the namespace — a wrong address, credentials or namespace stop here with one line;
2. **search attributes**: register those of ``domain.temporal.SEARCH_ATTRIBUTES`` that are missing
   (one already registered with another type cannot be changed: that is an error, not a change);
3. **retention**: closed runs must outlive the longest vendor redelivery window
   (``domain.redelivery``), or a late redelivery would start a finished run again; a shorter
   retention is raised to ``REQUIRED_RETENTION`` (never lowered).

:func:`plan` only reads; :func:`apply` makes the planned changes. ``--dry-run`` prints the plan's
lines; a run on a namespace that is already set up plans, and so changes, nothing. On Temporal
Cloud the frontend API may refuse (2) and (3): the error names the ``tcld`` command instead.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, UpdateNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.redelivery import LONGEST_WINDOW, MARGIN, REDELIVERY_WINDOWS, REQUIRED_RETENTION
from domain.temporal import SEARCH_ATTRIBUTES
from infra.connection import LOCAL_DEFAULT, client_connect_kwargs

CALL_TIMEOUT = timedelta(seconds=10)


class SetupError(Exception):
    """Something a person must fix (or do by hand, on Temporal Cloud): one line."""


def days(td: timedelta) -> str:
    """``7 days``, ``1 day``, ``3 days 6 h 38 min``: how retention and windows are printed."""
    whole, rest = divmod(td, timedelta(days=1))
    text = f"{whole} day" + ("s" if whole != 1 else "")
    hours, rest = divmod(rest, timedelta(hours=1))
    minutes = rest // timedelta(minutes=1)
    if hours:
        text += f" {hours} h"
    if minutes:
        text += f" {minutes} min"
    return text


def longest_vendor() -> str:
    w = max(REDELIVERY_WINDOWS.values(), key=lambda w: w.window)
    return f"{w.vendor} redelivers for up to {days(w.window)}"


@dataclass(frozen=True)
class Target:
    """Where setup connects: the address, namespace and how it authenticates (never the secret)."""

    address: str
    namespace: str
    auth: str
    connect_kwargs: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_env(cls, default_address: str | None = None) -> Target:
        kwargs = client_connect_kwargs(default_address or LOCAL_DEFAULT)
        tls = kwargs.get("tls")
        if kwargs.get("api_key"):
            auth = "API key over TLS" if tls is not False else "API key"
        elif tls is not None and getattr(tls, "client_cert", None):
            auth = "mTLS"
        elif tls:
            auth = "TLS, no client credentials"
        else:
            auth = "plaintext, no credentials"
        return cls(kwargs["target_host"], kwargs["namespace"], auth, kwargs)

    async def connect(self) -> Client:
        try:
            return await Client.connect(**self.connect_kwargs)
        except Exception as exc:
            # temporalio 1.35: exiting right after a failed connect aborts the interpreter about
            # half the time (its runtime thread still finishing); give it a moment first
            await asyncio.sleep(0.05)
            raise SetupError(
                f"cannot connect to Temporal at {self.address} ({self.auth}): {_reason(exc)}"
            ) from None


@dataclass
class Plan:
    target: Target
    #: name → type, as the server names them (Keyword, Double, …)
    missing_attributes: dict[str, str]
    present_attributes: dict[str, str]
    retention: timedelta
    required_retention: timedelta = REQUIRED_RETENTION

    @property
    def raise_retention(self) -> bool:
        return self.retention < self.required_retention

    def changes(self) -> list[str]:
        """One line per change, in the order :func:`apply` makes them (infinitive: 'register …')."""
        lines = [
            f"register search attribute {name} ({kind}) in namespace {self.target.namespace}"
            for name, kind in self.missing_attributes.items()
        ]
        if self.raise_retention:
            lines.append(
                f"raise the retention of namespace {self.target.namespace} from "
                f"{days(self.retention)} to {days(self.required_retention)} "
                f"({longest_vendor()}; closed runs must outlive it, plus {days(MARGIN)} margin)"
            )
        return lines

    def state(self) -> list[str]:
        """What is already right (printed when nothing needs changing)."""
        lines = []
        if self.present_attributes:
            lines.append(
                f"search attributes registered: {', '.join(sorted(self.present_attributes))}"
            )
        if not self.raise_retention:
            lines.append(
                f"retention {days(self.retention)} ≥ {days(self.required_retention)} needed "
                f"(longest vendor redelivery window {days(LONGEST_WINDOW)} + {days(MARGIN)} margin)"
            )
        return lines


def _type_name(value: int) -> str:
    return IndexedValueType.Name(value).removeprefix("INDEXED_VALUE_TYPE_").title().replace("_", "")


def _type_value(kind: str) -> int:
    snake = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(kind)).upper()
    return IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{snake}")


_CONNECT_ERRORS = {
    "connection refused": "connection refused",
    "dns error": "DNS lookup failed",
    "failed to lookup address": "DNS lookup failed",
    "timed out": "timed out",
    "deadline": "timed out",
    "certificate": "TLS handshake failed (certificate): check TEMPORAL_TLS*",
    "privatekeyparseerror": "the TLS client key cannot be parsed: check TEMPORAL_TLS_CLIENT_KEY*",
    "invalidcontenttype": "TLS handshake failed (is the server plaintext?): check TEMPORAL_TLS*",
}


def _reason(exc: BaseException) -> str:
    """A short cause, never the SDK's multi-line debug text (nor any credential)."""
    if isinstance(exc, RPCError):
        return f"{exc.status.name} {exc.message}".strip()[:200]
    text = str(exc)
    low = text.lower()
    for marker, reason in _CONNECT_ERRORS.items():
        if marker in low:
            return reason
    first = text.removeprefix("Failed client connect: ").splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:160]


async def plan(
    client: Client, target: Target, wanted: Mapping[str, str] = SEARCH_ATTRIBUTES
) -> Plan:
    """Read the namespace and say what :func:`apply` would change. Reads only."""
    ns = target.namespace
    try:
        desc = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=ns), timeout=CALL_TIMEOUT
        )
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=ns), timeout=CALL_TIMEOUT
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise SetupError(f"namespace {ns} does not exist at {target.address}") from None
        raise SetupError(f"Temporal at {target.address} ({target.auth}): {_reason(exc)}") from None
    existing = {name: _type_name(v) for name, v in listed.custom_attributes.items()}
    for name, kind in wanted.items():
        if name in existing and existing[name] != kind:
            raise SetupError(
                f"search attribute {name} is registered as {existing[name]} in namespace {ns}, "
                f"RevBridge needs {kind}: a type cannot be changed in place (remove it first)"
            )
    return Plan(
        target=target,
        missing_attributes={n: k for n, k in wanted.items() if n not in existing},
        present_attributes={n: k for n, k in wanted.items() if n in existing},
        retention=desc.config.workflow_execution_retention_ttl.ToTimedelta(),
    )


async def apply(client: Client, p: Plan) -> list[str]:
    """Make the planned changes; returns one past-tense line per change made."""
    ns, done = p.target.namespace, []
    if p.missing_attributes:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=ns,
                    search_attributes={n: _type_value(k) for n, k in p.missing_attributes.items()},
                ),
                timeout=CALL_TIMEOUT,
            )
        except RPCError as exc:
            adds = " ".join(
                f"--name {n} --type {k}" for n, k in sorted(p.missing_attributes.items())
            )
            raise SetupError(
                f"Temporal refused to register search attributes ({_reason(exc)}); on Temporal "
                f"Cloud: tcld namespace search-attributes add --namespace {ns} {adds}"
            ) from None
        done += [
            f"registered search attribute {n} ({k}) in namespace {ns}"
            for n, k in p.missing_attributes.items()
        ]
    if p.raise_retention:
        seconds = int(p.required_retention.total_seconds())
        try:
            await client.workflow_service.update_namespace(
                UpdateNamespaceRequest(
                    namespace=ns,
                    config=NamespaceConfig(
                        workflow_execution_retention_ttl=Duration(seconds=seconds)
                    ),
                ),
                timeout=CALL_TIMEOUT,
            )
        except RPCError as exc:
            raise SetupError(
                f"Temporal refused to raise the retention of {ns} to "
                f"{days(p.required_retention)} ({_reason(exc)}); on Temporal Cloud: tcld namespace "
                f"retention set --namespace {ns} --retention-days "
                f"{p.required_retention // timedelta(days=1)}"
            ) from None
        done.append(
            f"raised the retention of namespace {ns} from {days(p.retention)} to "
            f"{days(p.required_retention)}"
        )
    return done


async def setup(target: Target, dry_run: bool = False) -> tuple[Plan, list[str]]:
    """Connect, plan, and (unless ``dry_run``) apply. Returns the plan and the lines applied."""
    client = await target.connect()
    try:
        p = await plan(client, target)
        return p, ([] if dry_run or not p.changes() else await apply(client, p))
    finally:
        # temporalio 1.35: a process that exits while the client's runtime threads are still
        # finishing can abort in interpreter shutdown; let go of the client while the loop runs
        del client
        gc.collect()
        await asyncio.sleep(0.05)


def report(p: Plan, applied: list[str], dry_run: bool) -> list[str]:
    """What ``revbridge setup temporal`` prints, line by line."""
    lines = [
        f"Temporal {p.target.address}, namespace {p.target.namespace}: connected ({p.target.auth})"
    ]
    changes = p.changes()
    if not changes:
        lines += [f"  {line}" for line in p.state()]
        lines.append("up to date: nothing to change")
    elif dry_run:
        lines += [f"  would {line}" for line in changes]
        lines.append(f"dry run: {len(changes)} change(s) planned, nothing changed")
    else:
        lines += [f"  {line}" for line in applied]
        lines.append(f"{len(applied)} change(s) made")
    return lines
