"""Vendor limits inside one worker process: call pacing and the daily allowances vendors report.

Across worker processes the pacing is Temporal's: each vendor's activities run on their own task
queue whose dispatch rate the server enforces (``workers/vendor_queues.py``). Inside a process
this module adds what the server cannot see:

- **Pacing** (:func:`pace`): a token bucket per vendor, called before every vendor HTTP request
  (an activity may make several: an invoice, its customer, its payments): the first few calls
  of a quiet spell go out at once, a steady stream is spaced, and no 1-second window holds more
  than the rate. Its rate is this process's share of the vendor's limit. A wait longer than :data:`MAX_PACE_WAIT_S` is
  not slept out in a thread: it becomes a RATE_LIMITED error whose ``retry_after`` Temporal
  honours.
- **Daily allowances** (:func:`observe`): what the vendors report about their daily budgets —
  Salesforce ``Sforce-Limit-Info: api-usage=N/M`` on every response, HubSpot
  ``X-HubSpot-RateLimit-Daily`` / ``-Daily-Remaining`` — kept per process (the latest figure a
  vendor gave is the org's, whichever process read it) and published to listeners (the worker's
  Prometheus gauge). ``activities/budget.py`` decides who may spend the last of it.
- **Retry context** (:func:`retry_attempt`): whether the running call is a retry of an activity
  attempt, so a write whose idempotency key may have expired at the vendor reads back before it
  re-sends (connectors/chargebee.py).

No Temporal imports here (connectors never import Temporal).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from connectors.base import ConnectorError, ErrorKind

#: a pacing wait longer than this is handed back to Temporal as a retry delay
MAX_PACE_WAIT_S = 5.0

_SFORCE_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


# --- pacing ---------------------------------------------------------------------------------------


#: calls a pacer lets out at once after a quiet spell: a hot-path activity's two or three
#: sequential reads (the invoice, then its subscription) go out back to back instead of one
#: spacing interval apart (at Chargebee's production share, 13.3/s, that was 75 ms before the
#: second read of every failed payment; issue 15)
BURST = 3
WINDOW_S = 1.0


class _Schedule:
    """Send times allowed by two rules at once: a token bucket (``rate`` per second, at most
    ``burst`` calls back to back after a quiet spell; GCRA form) and a sliding window (never more
    than ``rate`` calls, at least one, in any ``WINDOW_S``), so the burst never lets a 1-second
    window hold more than the strict spacing did."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.interval = 1.0 / rate_per_s
        self.tolerance = self.interval * (max(burst, 1) - 1) + 1e-9  # float rounding
        self.per_window = max(1, math.floor(rate_per_s * WINDOW_S + 1e-9))
        self._tat = 0.0  # theoretical arrival time of the next call at the sustained rate
        self._times: deque[float] = deque(maxlen=self.per_window)

    def earliest(self, now: float) -> float:
        at = max(now, self._tat - self.tolerance)
        if len(self._times) == self.per_window:
            at = max(at, self._times[0] + WINDOW_S + 1e-6)  # strictly past the window
        return at

    def take(self, at: float) -> None:
        self._tat = max(self._tat, at) + self.interval
        self._times.append(at)


class Pacer:
    """At most ``rate`` calls in any 1-second window, spaced ``1/rate`` apart in a steady stream,
    the first :data:`BURST` of a quiet spell back to back. Thread-safe; activities run on a thread
    pool.

    Two steps: a FIFO reservation of the next slot, then, when the caller wakes, the same rules
    over the calls actually sent — a process that was descheduled wakes all its late callers at
    once, and without the second step they would go out together."""

    def __init__(self, vendor: str, rate_per_s: float, burst: int = BURST) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate must be positive")
        self.vendor = vendor
        self.rate_per_s = rate_per_s
        # a burst is at most a quarter of a window's calls: at a few calls a second (HubSpot's 4
        # searches) three sent together arrive milliseconds apart, and the call a window after
        # them lands inside the vendor's window of the last (429 SECONDLY); those go strictly spaced
        burst = min(burst, max(1, math.floor(rate_per_s * WINDOW_S + 1e-9) // 4))
        self._reserved = _Schedule(rate_per_s, burst)
        self._sent = _Schedule(rate_per_s, burst)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()

    def reserve(self, max_wait_s: float = MAX_PACE_WAIT_S) -> float:
        """Reserve the next slot and return how long to wait for it; raise RATE_LIMITED (without
        reserving) when the slot is further away than ``max_wait_s``."""
        with self._lock:
            now = time.monotonic()
            at = self._reserved.earliest(now)
            wait = at - now
            if wait > max_wait_s:
                raise ConnectorError(
                    self.vendor,
                    ErrorKind.RATE_LIMITED,
                    "paced: this worker's share of the vendor's rate is in use",
                    code="paced",
                    retry_after=wait,
                )
            self._reserved.take(at)
            return wait

    def acquire(self, max_wait_s: float = MAX_PACE_WAIT_S) -> None:
        """Wait until this call may go out."""
        wait = self.reserve(max_wait_s)
        if wait > 0:
            time.sleep(wait)
        with self._send_lock:
            gap = self._sent.earliest(time.monotonic()) - time.monotonic()
            if gap > 0:
                time.sleep(gap)
            self._sent.take(time.monotonic())


_pacers: dict[str, Pacer] = {}
_pacers_lock = threading.Lock()


def configure_pacing(rates: Mapping[str, float | None]) -> None:
    """Set this process's call rate per vendor (calls/s; None: not paced). The last
    configuration wins, as with Temporal's task-queue rate."""
    with _pacers_lock:
        for vendor, rate in rates.items():
            if rate:
                current = _pacers.get(vendor)
                if current is None or current.rate_per_s != rate:
                    _pacers[vendor] = Pacer(vendor, rate)
            else:
                _pacers.pop(vendor, None)


def ensure_pacing(rates: Mapping[str, float]) -> None:
    """Pace each vendor at ``rate`` unless this process already configured it (a connector's
    safe default outside a worker: tests, the CLI, the harness; the worker's own
    configuration, made later, still wins)."""
    with _pacers_lock:
        for vendor, rate in rates.items():
            if rate and vendor not in _pacers:
                _pacers[vendor] = Pacer(vendor, rate)


def search_limit(vendor: str) -> str:
    """The name a vendor's search endpoints are paced under (``stripe.search``: 20/s,
    ``hubspot.search``: 4/s), on top of the vendor's own rate."""
    return f"{vendor}.search"


def pacing_rate(vendor: str) -> float | None:
    pacer = _pacers.get(vendor)
    return pacer.rate_per_s if pacer else None


def pace(vendor: str) -> None:
    """Wait for this process's next slot for ``vendor`` (no-op when the vendor is not paced)."""
    pacer = _pacers.get(vendor)
    if pacer is not None:
        pacer.acquire()


@contextlib.contextmanager
def unpaced(*vendors: str) -> Iterator[None]:
    """``vendors`` not paced in this process for the block, then as before: for what counts
    calls against a sandbox whose limits are off (the benchmarks' reads and their tests), which
    a worker running in the same process must not slow to its share of a production rate."""
    before = {vendor: pacing_rate(vendor) for vendor in vendors}
    configure_pacing(dict.fromkeys(vendors))
    try:
        yield
    finally:
        configure_pacing(before)


class PacedAdapter(HTTPAdapter):
    """A requests transport that paces every request and reads the vendor's allowance headers
    (Stripe's session; Salesforce's transport extends it)."""

    def __init__(self, vendor: str, timeout_s: float | None = None, pool_maxsize: int = 10) -> None:
        super().__init__(max_retries=0, pool_maxsize=pool_maxsize)
        self.vendor = vendor
        self.timeout_s = timeout_s

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None and self.timeout_s is not None:
            kwargs["timeout"] = self.timeout_s
        if "/search" in (request.path_url or ""):
            pace(search_limit(self.vendor))  # search endpoints have a lower limit of their own
        pace(self.vendor)
        response = super().send(request, **kwargs)
        observe_headers(self.vendor, response.headers)
        return response


def paced_session(
    vendor: str, timeout_s: float | None = None, pool_maxsize: int = 10
) -> requests.Session:
    """A keep-alive session whose requests are paced; ``pool_maxsize`` connections per host
    are kept open (as many as threads that call at once, so none is opened per request)."""
    session = requests.Session()
    adapter = PacedAdapter(vendor, timeout_s, pool_maxsize)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


# --- daily allowances -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Allowance:
    """A vendor's daily allowance as it last reported it."""

    vendor: str
    used: int
    limit: int
    #: when the allowance resets (None: a rolling window, e.g. Salesforce's 24 hours)
    resets_at: datetime | None
    seen_at: datetime

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    @property
    def fraction_left(self) -> float:
        return self.remaining / self.limit if self.limit > 0 else 1.0


Listener = Callable[[Allowance], None]
_allowances: dict[str, Allowance] = {}
_listeners: list[Listener] = []
_allowance_lock = threading.Lock()


def add_listener(listener: Listener) -> None:
    with _allowance_lock:
        if listener not in _listeners:
            _listeners.append(listener)


def observe(vendor: str, used: int, limit: int, resets_at: datetime | None = None) -> None:
    """Record a vendor's report of its daily allowance and tell the listeners."""
    if limit <= 0:
        return
    entry = Allowance(vendor, used, limit, resets_at, datetime.now(UTC))
    with _allowance_lock:
        _allowances[vendor] = entry
        listeners = list(_listeners)
    for listener in listeners:
        with contextlib.suppress(Exception):  # a gauge never fails a vendor call
            listener(entry)


def allowance(vendor: str) -> Allowance | None:
    return _allowances.get(vendor)


def allowances() -> dict[str, Allowance]:
    with _allowance_lock:
        return dict(_allowances)


def forget(vendor: str | None = None) -> None:
    """Drop what is known (tests; a new day)."""
    with _allowance_lock:
        if vendor is None:
            _allowances.clear()
        else:
            _allowances.pop(vendor, None)


def next_utc_midnight(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


def observe_headers(vendor: str, headers: Mapping[str, str] | None) -> None:
    """Read a response's allowance headers, whichever vendor's they are."""
    if not headers:
        return
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    info = lower.get("sforce-limit-info")
    if info:
        match = _SFORCE_USAGE.search(info)
        if match:
            # a rolling 24-hour total: no fixed reset
            observe(vendor, int(match.group(1)), int(match.group(2)))
        return
    daily, left = (
        lower.get("x-hubspot-ratelimit-daily"),
        lower.get("x-hubspot-ratelimit-daily-remaining"),
    )
    if daily and left:
        try:
            limit, remaining = int(daily), int(left)
        except ValueError:
            return
        # resets at midnight in the portal's time zone; UTC midnight is the assumption
        observe(vendor, limit - remaining, limit, next_utc_midnight())


# --- the running attempt --------------------------------------------------------------------------

#: 0: not inside an activity attempt (a direct call: whether an earlier call wrote is unknown)
_attempt: contextvars.ContextVar[int] = contextvars.ContextVar("revbridge_attempt", default=0)


@contextlib.contextmanager
def attempt(number: int) -> Iterator[None]:
    """Mark the vendor calls made inside as belonging to activity attempt ``number``."""
    token = _attempt.set(number)
    try:
        yield
    finally:
        _attempt.reset(token)


def retry_attempt() -> bool:
    """Whether the calls being made are a retry (an earlier attempt may have committed)."""
    return _attempt.get() > 1


def first_attempt() -> bool:
    """Whether the calls run in an activity's first attempt: a write keyed to that activity
    alone cannot have been made before (no earlier attempt exists). False outside one."""
    return _attempt.get() == 1
