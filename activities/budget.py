"""Vendor budgets: the limits the worker paces at (``policies/limits.yaml``) and the policy for the
last part of a daily allowance.

The allowance figures come from the vendors' own headers (``connectors/limits.py``). When one
of the vendors an activity calls has less than ``reserve`` (20 %) of its daily allowance left,
only activities of the ``critical_workflows`` (customer-facing and money-related: dunning,
quote-to-cash, support context) proceed; any other activity — the churn sweep, the
interventions it starts, the quote-to-cash catch-up — fails its attempt with a retryable
``budget.reserved`` error whose ``next_retry_delay`` is the time to the allowance's reset (or an
hour for Salesforce's rolling 24-hour window). The run is not failed: it waits.

A figure older than ``stale_after_s`` (an hour; or past its reset) counts as unknown, so a waiting
activity's next attempt goes through once and its call refreshes the figure — otherwise, with
only deferred work left, nobody would ever call the vendor to see that the allowance recovered.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from activities.policy import DEFAULT_POLICY_DIR
from connectors import limits as vendor_limits
from connectors.limits import Allowance

LIMITS_FILE = "limits.yaml"
ENV_LIMITS_FILE = "REVBRIDGE_LIMITS_FILE"
ENV_WORKER_PROCESSES = "REVBRIDGE_WORKER_PROCESSES"
BUDGET_ERROR = "budget.reserved"
#: a deferred activity re-checks a rolling allowance this often (``recheck_s``)
RECHECK_S = 3600.0
#: an allowance figure older than this is not trusted to hold work back (``stale_after_s``)
STALE_AFTER_S = 3600.0


@dataclass(frozen=True)
class VendorLimit:
    per_second: float | None = None
    concurrency: int | None = None


@dataclass(frozen=True)
class Limits:
    pace: float = 0.8
    reserve: float = 0.2
    worker_processes: int = 1
    critical_workflows: frozenset[str] = frozenset()
    vendors: Mapping[str, VendorLimit] = field(default_factory=dict)
    recheck_s: float = RECHECK_S
    stale_after_s: float = STALE_AFTER_S

    def queue_rate(self, vendor: str) -> float | None:
        """Activity starts per second on the vendor's task queue, across all processes."""
        limit = self.vendors.get(vendor)
        if limit is None or not limit.per_second:
            return None
        return limit.per_second * self.pace

    def process_rate(self, vendor: str) -> float | None:
        """Calls per second this process may make (its share of the paced rate)."""
        rate = self.queue_rate(vendor)
        return rate / max(self.worker_processes, 1) if rate else None

    def process_rates(self, vendors: Iterable[str]) -> dict[str, float | None]:
        """This process's pacing for the deployment's vendors and their sub-limits
        (``hubspot.search``), by the names connectors/limits.py paces under."""
        names = set(vendors)
        return {
            name: self.process_rate(name)
            for name in {*names, *(n for n in self.vendors if n.split(".")[0] in names)}
        }

    def process_concurrency(self, vendor: str) -> int | None:
        limit = self.vendors.get(vendor)
        if limit is None or not limit.concurrency:
            return None
        return max(1, math.floor(limit.concurrency / max(self.worker_processes, 1)))


def limits_path(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get(ENV_LIMITS_FILE) or DEFAULT_POLICY_DIR / LIMITS_FILE)


def load_limits(path: Path | None = None, env: Mapping[str, str] = os.environ) -> Limits:
    """``policies/limits.yaml`` (or ``REVBRIDGE_LIMITS_FILE``); a missing file means no limits."""
    path = path or limits_path(env)
    try:
        raw: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raw = {}
    vendors = {
        str(name): VendorLimit(
            per_second=float(spec["per_second"]) if spec.get("per_second") else None,
            concurrency=int(spec["concurrency"]) if spec.get("concurrency") else None,
        )
        for name, spec in (raw.get("vendors") or {}).items()
        if isinstance(spec, dict)
    }
    processes = int(env.get(ENV_WORKER_PROCESSES) or raw.get("worker_processes") or 1)
    return Limits(
        pace=float(raw.get("pace", 0.8)),
        reserve=float(raw.get("reserve", 0.2)),
        worker_processes=max(processes, 1),
        critical_workflows=frozenset(raw.get("critical_workflows") or ()),
        vendors=vendors,
        recheck_s=float(raw.get("recheck_s", RECHECK_S)),
        stale_after_s=float(raw.get("stale_after_s", STALE_AFTER_S)),
    )


class BudgetGate:
    """Decides whether an activity may call vendors whose allowance is in its reserve. Re-reads
    the limits file when it changes (the reserve and the critical list need no restart)."""

    def __init__(self, path: Path | None = None, limits: Limits | None = None) -> None:
        self._path = path
        self._fixed = limits
        self._cache: tuple[float, Limits] | None = None
        self._lock = threading.Lock()

    def limits(self) -> Limits:
        if self._fixed is not None:
            return self._fixed
        path = self._path or limits_path()
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            mtime = -1.0
        with self._lock:
            if self._cache is None or self._cache[0] != mtime:
                self._cache = (mtime, load_limits(path))
            return self._cache[1]

    def waiting_for(
        self, workflow_type: str | None, vendors: Iterable[str], now: datetime | None = None
    ) -> tuple[Allowance, timedelta] | None:
        """The allowance that holds this work back and how long to wait, or None to proceed."""
        limits = self.limits()
        if workflow_type in limits.critical_workflows:
            return None
        now = now or datetime.now(UTC)
        for vendor in vendors:
            entry = vendor_limits.allowance(vendor)
            if entry is None or entry.fraction_left > limits.reserve:
                continue
            if now - entry.seen_at > timedelta(seconds=limits.stale_after_s):
                continue  # let this attempt through: its call refreshes the figure
            if entry.resets_at is not None:
                if entry.resets_at <= now:
                    continue
                delay = entry.resets_at - now
            else:
                delay = timedelta(seconds=limits.recheck_s)
            return entry, max(delay, timedelta(seconds=1))
        return None

    def check(self, workflow_type: str | None, vendors: Iterable[str]) -> None:
        held = self.waiting_for(workflow_type, vendors)
        if held is None:
            return
        entry, delay = held
        raise ApplicationError(
            f"budget: {entry.vendor} has {entry.remaining}/{entry.limit} of its daily allowance "
            f"left, kept for customer-facing work; {workflow_type or 'this work'} waits "
            f"{int(delay.total_seconds())} s",
            type=BUDGET_ERROR,
            next_retry_delay=delay,
        )


class BudgetInterceptor(Interceptor):
    """Checks the budget before every activity that calls vendors. ``vendors_of`` names the
    vendors an activity type calls (the worker knows its billing platform and CRM)."""

    def __init__(self, gate: BudgetGate, vendors_of: Callable[[str], tuple[str, ...]]) -> None:
        self.gate = gate
        self.vendors_of = vendors_of

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BudgetActivityInbound(next, self)


class _BudgetActivityInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, owner: BudgetInterceptor) -> None:
        super().__init__(next)
        self._owner = owner

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        vendors = self._owner.vendors_of(info.activity_type)
        if vendors:
            self._owner.gate.check(info.workflow_type, vendors)
        return await super().execute_activity(input)
