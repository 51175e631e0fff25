"""The Stripe client as RevBridge calls it: one ``StripeClient`` per connector with
``max_network_retries=0`` on the process's one paced keep-alive HTTP client, lists and event
reads, and Stripe's errors classified (rate limits with their wait, key failures for doctor)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import stripe

from connectors import limits
from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.timeouts import call_timeout
from domain.models import (
    NoteTarget,
)
from domain.preflight import Check, CheckStatus
from domain.settings import StripeSettings

T = TypeVar("T")
DEFAULT_RETRY_AFTER_S = 2.0
#: Stripe's documented rates (billing-apis.md §1f) at policies/limits.yaml's 0.8 share: the
#: pacing a connector uses until the worker configures its own
_DEFAULT_RATES = {
    "test": {"stripe": 20.0, "stripe.search": 16.0},
    "live": {"stripe": 80.0, "stripe.search": 16.0},
}
#: the HTTP client every StripeBilling of this process shares, per timeout (keep-alive: one TCP
#: connection per calling thread instead of one per request, and the CA bundle loaded once)
_http_clients: dict[float, stripe.RequestsClient] = {}
_http_lock = threading.Lock()
_POOL_SIZE = 32  # connections kept open: at least the worker's activity threads


def shared_http_client(timeout_s: float) -> stripe.RequestsClient:
    """The process's one keep-alive HTTP client for the ``stripe`` SDK (a paced
    ``requests.Session``: connectors/limits.py); the session is thread-safe and shared."""
    with _http_lock:
        client = _http_clients.get(timeout_s)
        if client is None:
            session = limits.paced_session("stripe", pool_maxsize=_POOL_SIZE)
            client = _http_clients[timeout_s] = stripe.RequestsClient(
                timeout=timeout_s, session=session
            )
        return client


def key_mode(api_key: str) -> str | None:
    """``test`` or ``live`` from a secret (``sk_``) or restricted (``rk_``) key; None otherwise."""
    for mode in ("test", "live"):
        if api_key.startswith((f"sk_{mode}_", f"rk_{mode}_")):
            return mode
    return None


class StripeClientBase:
    """One configured ``StripeClient`` (no SDK retries, the process's paced keep-alive HTTP
    client) and the one way to call it: every ``StripeError`` classified."""

    name = "stripe"

    def __init__(self, settings: StripeSettings, timeout_s: float = 20.0) -> None:
        # below the activity's start-to-close (connectors/timeouts.py)
        timeout_s = self.call_timeout_s = call_timeout(timeout_s)
        base_addresses: dict[str, str] = {}
        if settings.api_url:
            base_addresses["api"] = settings.api_url.rstrip("/")
        api_key = settings.api_key.get_secret_value()
        self.mode = key_mode(api_key)
        # paced below the account's limit even outside a worker (which sets its own share)
        limits.ensure_pacing(_DEFAULT_RATES[self.mode or "test"])
        self._client = stripe.StripeClient(
            api_key,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            # Temporal owns retries: the client's own would reuse its key but hide the failure.
            max_network_retries=0,
            # one keep-alive client per process, every request paced and its headers read
            http_client=shared_http_client(timeout_s),
        )

    @property
    def client(self) -> stripe.StripeClient:
        """The configured official client (the demo and tests drive the sandbox with it)."""
        return self._client

    def _service(self, target: NoteTarget) -> Any:
        if target is NoteTarget.INVOICE:
            return self._client.v1.invoices
        return self._client.v1.customers

    def _call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except stripe.StripeError as exc:
            raise classify(exc, what) from None

    def _list(self, service: Any, params: dict[str, Any], what: str) -> list[dict[str, Any]]:
        """One list page as plain dicts (Stripe's order: newest first)."""
        page = self._call(lambda: service.list(params), what)
        return [obj.to_dict() for obj in page.data]

    def _events_since(self, types: list[str], since: datetime, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` events of ``types`` created at or after ``since``, oldest first
        (Stripe lists newest first and keeps events for 30 days)."""
        params: dict[str, Any] = {
            "types": types,
            "created": {"gte": int(since.timestamp())},
            "limit": min(limit, 100),
        }
        events: list[dict[str, Any]] = []
        try:
            for evt in self._client.v1.events.list(params).auto_paging_iter():  # type: ignore[arg-type]
                events.append(evt.to_dict())
                if len(events) >= limit:
                    break
        except stripe.StripeError as exc:
            raise classify(exc, "events") from None
        return list(reversed(events))


def _error_code(exc: stripe.StripeError) -> str | None:
    if exc.code:
        return exc.code
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    err = body.get("error")
    return err.get("code") if isinstance(err, dict) else None


def _header(exc: stripe.StripeError, name: str) -> str | None:
    for key, value in (exc.headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _retry_after(exc: stripe.StripeError) -> float:
    try:
        value = float(_header(exc, "retry-after") or "")
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
    return value if value >= 0 else DEFAULT_RETRY_AFTER_S


def _key_failure(exc: stripe.StripeError) -> Check:
    if isinstance(exc, stripe.AuthenticationError):
        detail, fix = (
            "Stripe refused the key",
            "set STRIPE_API_KEY to a valid secret or restricted key",
        )
    elif isinstance(exc, stripe.PermissionError):
        detail = "the restricted key may not read customers"
        fix = "grant the key write access to Customers, Invoices, Subscriptions, Coupons and read to Events"
    else:
        detail = f"Stripe could not be reached ({classify(exc, 'customers')})"
        fix = "check the network path to api.stripe.com (or STRIPE_API_URL)"
    return Check(
        system="stripe", name="credentials", status=CheckStatus.FAIL, detail=detail, fix=fix
    )


def classify(exc: stripe.StripeError, what: str) -> ConnectorError:
    """A Stripe client error in RevBridge's vocabulary (retryable, rate limited or permanent)."""
    status = exc.http_status
    code = _error_code(exc)
    lines = (exc.user_message or "").strip().splitlines()
    message = lines[0] if lines else type(exc).__name__
    if isinstance(exc, stripe.APIConnectionError):  # refused, reset, timed out: outcome unknown
        return ConnectorError(
            "stripe", ErrorKind.RETRYABLE, f"network: {message}", status=status, code=code
        )
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        return ConnectorError(
            "stripe",
            ErrorKind.RATE_LIMITED,
            "rate limited",
            status=status,
            code=code or "rate_limit",
            retry_after=_retry_after(exc),
        )
    if status == 409 or code == "idempotency_key_in_use":
        # The same key is still being processed: try again once the first request finished.
        return ConnectorError(
            "stripe", ErrorKind.RETRYABLE, f"{code}: {message}", status=status, code=code
        )
    if isinstance(exc, stripe.IdempotencyError):
        # Same key, other parameters or endpoint: every retry would get the same answer.
        return ConnectorError(
            "stripe",
            ErrorKind.PERMANENT,
            f"idempotency_error: {message}",
            status=status,
            code="idempotency_error",
        )
    if status == 404 and code == "resource_missing":
        return NotFound("stripe", what, status)
    if status is None or status >= 500 or status == 408:
        return ConnectorError(
            "stripe", ErrorKind.RETRYABLE, f"server error: {message}", status=status, code=code
        )
    return ConnectorError(
        "stripe", ErrorKind.PERMANENT, f"{code or status}: {message}", status=status, code=code
    )
