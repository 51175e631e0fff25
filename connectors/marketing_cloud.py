"""Salesforce Marketing Cloud as the email channel: the Transactional Messaging (TM) API on
``httpx`` (erp-support-email-apis.md §3; no maintained Python client speaks TM, §3.0).

The same interface as :class:`connectors.email.SmtpMailer`: ``send(Email) -> str`` (the message
key) and ``preflight()``. Chosen per deployment with ``REVBRIDGE_EMAIL_CHANNEL=marketing-cloud``
(``connectors/registry.py``).

- **Auth**: OAuth 2.0 client credentials, ``POST {auth_url}v2/token`` (JSON). The token is cached
  and fetched again 2 minutes before ``expires_in`` runs out, and once on a ``401`` (an expired
  or revoked token); the REST base is the answer's ``rest_instance_url`` (normalised: a scheme
  and a trailing ``/``), never configured separately.
- **Exactly once**: the activity's idempotency key is the TM ``messageKey`` (percent-encoded as
  one path segment; a key over TM's 100 characters is hashed to one that fits). Marketing Cloud
  refuses a key reused within 2 days (``109110 MCMS_UTM_Validation_DuplicateMessageKey``) and
  sends nothing the second time, so a retried send after a committed-then-timed-out call is one
  email: 109110 is taken as "already accepted" and confirmed by reading the status.
- **Status**: TM sends are asynchronous (a 202 only says the request was well-formed). ``send``
  polls ``GET /messaging/v1/email/messages/{key}`` until ``EmailSent`` (done) or
  ``EmailNotSent`` (PERMANENT, with the subscriber status code and message: Held, Unsubscribed,
  …), for at most ``status_wait_s``; still ``EmailQueued`` then is RETRYABLE (the retry re-posts
  the same key, which sends nothing new, and reads the status again).
- **Errors**: one ``ConnectorError`` each, with Marketing Cloud's ``errorcode`` (either spelling,
  ``errorcode``/``errorCode``) as the code: 429 (50100, ``Retry-After``) is waited out here when
  short (at most twice, 5 s each), else RATE_LIMITED with the wait; 50200 (blocked, no
  Retry-After) RATE_LIMITED; 503 and 5xx, timeouts and network errors RETRYABLE; a validation
  error (400, ``MCMS_UTM_*``), a missing scope (403) or refused credentials PERMANENT. No address,
  token or secret goes into an error or a log line.
- Keep-alive under 4 s: TM closes idle connections after 5 s (§3.6).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from connectors.base import ConnectorError, ErrorKind
from connectors.email import Email
from connectors.timeouts import call_timeout
from domain.preflight import Check, CheckStatus
from domain.settings import MarketingCloudSettings

VENDOR = "marketing_cloud"
MESSAGES = "messaging/v1/email/messages"
DEFINITIONS = "messaging/v1/email/definitions"
SENT = "TransactionalSendEvents.EmailSent"
NOT_SENT = "TransactionalSendEvents.EmailNotSent"
QUEUED = "TransactionalSendEvents.EmailQueued"
DUPLICATE_KEY = 109110
#: fetch a new token this long before the old one expires (pysfmc: 120 s; FuelSDK: 300 s)
TOKEN_MARGIN_S = 120.0
#: 429s with a short Retry-After waited out in the call: how many, and the longest wait
INLINE_429_RETRIES = 2
INLINE_429_MAX_S = 5.0
#: waits between status reads while a message is queued
POLL_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0)
MAX_KEY = 100


class MarketingCloudMailer:
    name = "marketing-cloud"

    def __init__(
        self,
        settings: MarketingCloudSettings,
        *,
        timeout_s: float | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        auth = settings.auth_url.strip()
        if "://" not in auth:
            auth = "https://" + auth
        self.auth_url = auth if auth.endswith("/") else auth + "/"
        self.client_id = settings.client_id
        self._secret = settings.client_secret
        self.account_id = settings.account_id
        self.definition_key = settings.definition_key
        self.status_wait_s = settings.status_wait_s
        self.call_timeout_s = call_timeout(timeout_s or settings.timeout_s)
        self.http = httpx.Client(
            timeout=self.call_timeout_s,
            limits=httpx.Limits(keepalive_expiry=4.0),
            transport=transport,
        )
        self._sleep = sleep
        self._lock = threading.Lock()
        self._token: str | None = None
        self._scope: tuple[str, ...] = ()
        self._rest: str | None = None
        self._expires_at = 0.0

    def close(self) -> None:
        self.http.close()

    # --- keys ------------------------------------------------------------------------------------

    @staticmethod
    def message_key(key: str) -> str:
        """The TM message key of an idempotency key: itself when it fits (RevBridge's are 43
        characters), else a digest of it (stable, so a retry has the same key)."""
        if 0 < len(key) <= MAX_KEY:
            return key
        return "rb-" + hashlib.sha256(key.encode()).hexdigest()[:40]

    # --- sending ---------------------------------------------------------------------------------

    def send(self, email: Email) -> str:
        """Send one message through the send definition; returns its message key once Marketing
        Cloud reports it sent. Idempotent by ``email.key`` (see module)."""
        key = self.message_key(email.key)
        body = {
            "definitionKey": self.definition_key,
            "recipient": {
                "contactKey": email.to,
                "to": email.to,
                "attributes": {"Subject": email.subject, "Body": email.body},
            },
        }
        resp = self._call("POST", f"{MESSAGES}/{quote(key, safe='')}", json=body)
        self._accepted(resp, key)
        return self.wait_sent(key)

    def _accepted(self, resp: httpx.Response, key: str) -> None:
        """Raise unless the send was queued now or under this key before (109110)."""
        if resp.status_code in (202, 400):
            data = _json(resp)
            items = data.get("responses") if isinstance(data.get("responses"), list) else []
            item = next(
                (i for i in items if isinstance(i, dict) and i.get("messageKey") == key),
                items[0] if items and isinstance(items[0], dict) else {},
            )
            code = _code(item) or (0 if resp.status_code == 202 and items else _code(data))
            if DUPLICATE_KEY in (code, _code(data)):
                return  # accepted before (a retry after a lost answer): nothing was sent again
            if resp.status_code == 202 and not code:
                return
            message = str(item.get("message") or data.get("message") or "send refused")
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                f"send refused ({code}): {message.split(':', 1)[0]}",
                status=resp.status_code,
                code=str(code),
            )
        raise self._error(resp, "send")

    def wait_sent(self, key: str) -> str:
        """Poll the message's status until Sent (its key) or NotSent (PERMANENT); RETRYABLE when
        it is still queued after ``status_wait_s``."""
        deadline = time.monotonic() + self.status_wait_s
        path = f"{MESSAGES}/{quote(key, safe='')}"
        for n in range(10_000):
            resp = self._call("GET", path)
            if resp.status_code == 200:
                data = _json(resp)
                kind = data.get("eventCategoryType")
                if kind == SENT:
                    return key
                if kind == NOT_SENT:
                    info = data.get("info") if isinstance(data.get("info"), dict) else {}
                    code = info.get("statusCode")
                    raise ConnectorError(
                        VENDOR,
                        ErrorKind.PERMANENT,
                        f"not sent: {info.get('statusMessage', 'EmailNotSent')} ({code})",
                        status=200,
                        code=f"not_sent_{code}",
                    )
            elif resp.status_code != 404:  # 404: the status is not readable yet
                raise self._error(resp, "status")
            if time.monotonic() >= deadline:
                break
            self._sleep(min(POLL_S[min(n, len(POLL_S) - 1)], max(0.0, deadline - time.monotonic())))
        raise ConnectorError(
            VENDOR,
            ErrorKind.RETRYABLE,
            f"the message is still queued after {self.status_wait_s:g} s",
            code="queued",
            retry_after=10.0,
        )

    # --- HTTP ------------------------------------------------------------------------------------

    def _access(self, *, fresh: bool = False) -> tuple[str, str]:
        with self._lock:
            if fresh or self._token is None or time.monotonic() >= self._expires_at:
                self._fetch_token()
            assert self._token is not None and self._rest is not None
            return self._token, self._rest

    def _fetch_token(self) -> None:
        body: dict[str, Any] = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._secret.get_secret_value(),
        }
        if self.account_id:
            body["account_id"] = self.account_id
        try:
            resp = self.http.post(self.auth_url + "v2/token", json=body)
        except httpx.TimeoutException:
            raise _transport("timeout", "the auth host") from None
        except httpx.HTTPError as exc:
            raise _transport(type(exc).__name__, "the auth host") from None
        if resp.status_code != 200:
            data = _json(resp)
            error = str(data.get("error") or resp.status_code)
            if resp.status_code in (400, 401, 403):
                raise ConnectorError(
                    VENDOR,
                    ErrorKind.PERMANENT,
                    f"the auth host refused the API integration's credentials ({error})",
                    status=resp.status_code,
                    code=error,
                )
            raise self._error(resp, "token")
        data = _json(resp)
        token, rest = data.get("access_token"), data.get("rest_instance_url")
        if not isinstance(token, str) or not isinstance(rest, str) or not rest:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, "the token answer has no access_token or REST URL"
            )
        rest = rest if "://" in rest else "https://" + rest
        self._rest = rest if rest.endswith("/") else rest + "/"
        self._token = token
        self._scope = tuple(str(data.get("scope") or "").split())
        expires_in = float(data.get("expires_in") or 1079)
        self._expires_at = time.monotonic() + max(0.0, expires_in - TOKEN_MARGIN_S)

    def _call(self, method: str, path: str, json: Any = None) -> httpx.Response:
        """One REST call: the cached token (a new one once on 401), short 429s waited out."""
        refreshed = False
        waited = 0
        while True:
            token, rest = self._access()
            try:
                resp = self.http.request(
                    method,
                    rest + path,
                    json=json,
                    headers={"Authorization": f"Bearer {token}"},
                )
            except httpx.TimeoutException:
                raise _transport("timeout", "the TM API") from None
            except httpx.HTTPError as exc:
                raise _transport(type(exc).__name__, "the TM API") from None
            if resp.status_code == 401 and not refreshed:
                refreshed = True
                with self._lock:
                    if self._token == token:
                        self._token = None  # expired or revoked: the next _access fetches one
                continue
            if resp.status_code == 429:
                wait = _retry_after(resp)
                if wait is not None and wait <= INLINE_429_MAX_S and waited < INLINE_429_RETRIES:
                    waited += 1
                    self._sleep(wait)
                    continue
            return resp

    def _error(self, resp: httpx.Response, what: str) -> ConnectorError:
        data = _json(resp)
        code = _code(data)
        message = str(data.get("message") or data.get("error") or f"HTTP {resp.status_code}")
        message = message.split(":", 1)[0][:120]
        status = resp.status_code
        if status == 429:
            wait = _retry_after(resp)
            return ConnectorError(
                VENDOR,
                ErrorKind.RATE_LIMITED,
                f"{what}: rate limited ({code}): {message}",
                status=status,
                code=str(code or 50100),
                retry_after=wait if wait is not None else 60.0,
            )
        if status >= 500 or status in (408,):
            return ConnectorError(
                VENDOR,
                ErrorKind.RETRYABLE,
                f"{what}: HTTP {status} ({code}): {message}",
                status=status,
                code=str(code or status),
                retry_after=_retry_after(resp),
            )
        if status == 401:
            message = "not authorized after a fresh token: check the integration's access"
        elif status == 403:
            message = "the API integration lacks a scope (email_send, email_read)"
        return ConnectorError(
            VENDOR,
            ErrorKind.PERMANENT,
            f"{what}: HTTP {status} ({code}): {message}",
            status=status,
            code=str(code or status),
        )

    # --- preflight (revbridge doctor) ------------------------------------------------------------

    def preflight(self) -> list[Check]:
        """The auth host accepts the credentials, the token carries the scopes sending needs,
        and the send definition exists and is active. Nothing is sent."""
        try:
            self._access(fresh=True)
        except ConnectorError as exc:
            return [
                _check(
                    "token",
                    CheckStatus.FAIL,
                    str(exc).removeprefix(f"{VENDOR}: "),
                    "check MARKETING_CLOUD_AUTH_URL / _CLIENT_ID / _CLIENT_SECRET / _ACCOUNT_ID",
                ),
                _check("scopes", CheckStatus.SKIP, "not checked: no token"),
                _check("definition", CheckStatus.SKIP, "not checked: no token"),
            ]
        checks = [_check("token", CheckStatus.OK, f"token from {self.auth_url}")]
        missing = [s for s in ("email_send", "email_read") if s not in self._scope]
        checks.append(
            _check(
                "scopes",
                CheckStatus.FAIL if missing else CheckStatus.OK,
                f"missing {', '.join(missing)}" if missing else "email_send, email_read",
                "give the API integration the Email Send and Read permissions" if missing else "",
            )
        )
        try:
            resp = self._call("GET", f"{DEFINITIONS}/{quote(self.definition_key, safe='')}")
        except ConnectorError as exc:
            checks.append(_check("definition", CheckStatus.FAIL, str(exc)[:200]))
            return checks
        if resp.status_code == 404:
            checks.append(
                _check(
                    "definition",
                    CheckStatus.FAIL,
                    f"no send definition {self.definition_key}",
                    "create a transactional send definition with that key whose content uses "
                    "%%Subject%% and %%Body%% (docs/channels.md), or set "
                    "MARKETING_CLOUD_DEFINITION_KEY",
                )
            )
        elif resp.status_code != 200:
            checks.append(
                _check("definition", CheckStatus.FAIL, str(self._error(resp, "definition")))
            )
        else:
            status = str(_json(resp).get("status", "")).capitalize()
            checks.append(
                _check(
                    "definition",
                    CheckStatus.OK if status == "Active" else CheckStatus.FAIL,
                    f"{self.definition_key} is {status or 'of unknown status'}",
                    ""
                    if status == "Active"
                    else "activate the send definition: an inactive one queues, never sends",
                )
            )
        return checks


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _code(data: dict[str, Any]) -> int:
    value = data.get("errorcode", data.get("errorCode"))
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def _retry_after(resp: httpx.Response) -> float | None:
    raw = resp.headers.get("retry-after")
    if raw is None:
        raw = _json(resp).get("retryAfter")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _transport(kind: str, where: str) -> ConnectorError:
    # the server may or may not have the request: a retry with the same message key is safe
    return ConnectorError(VENDOR, ErrorKind.RETRYABLE, f"{kind} talking to {where}", code=kind)


def _check(name: str, status: CheckStatus, detail: str, fix: str = "") -> Check:
    return Check(system="marketing-cloud", name=name, status=status, detail=detail, fix=fix)
