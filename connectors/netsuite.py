"""NetSuite (SuiteTalk REST web services) on ``httpx``: approved revenue journal entries (issue 20).

Not an ``ErpSystem`` protocol yet: NetSuite is the one ERP. What it offers the activities:

- ``post_journal_entry(entry) -> str``: the entry's internal ID. **Exactly once by external ID**
  (erp-support-email-apis.md §1.6: synchronous REST has no idempotency key; Oracle's answer is
  external IDs plus upsert). ``domain.revenue`` derives ``external_id`` from the month, currency
  and content, so the same entry always has the same one. The call first reads
  ``journalEntry/eid:<external_id>`` (a retry whose first attempt committed — even one that
  timed out — finds it and writes nothing, which also survives the period closing in between),
  and otherwise ``PUT journalEntry/eid:<external_id>`` (upsert: a concurrent or replayed
  attempt re-applies the same entry instead of adding a second), then reads the internal ID back.
- ``find_entries(month)``: RevBridge's entries for a month, by SuiteQL over ``transaction``
  (external IDs ``rb-rev-<month>-…``), paged with ``limit``/``offset`` until ``hasMore`` is false.
- ``preflight()``: the credentials work, the subsidiary exists, and every account of
  ``policies/revenue.yaml`` exists, is active and has the right type (deferred revenue:
  ``DeferRevenue``; revenue: ``Income``).

Auth: **TBA** (OAuth 1.0a, HMAC-SHA256, realm = account ID) signed by Authlib's RFC 5849 client
(its base string and encoding; Authlib ships HMAC-SHA1 only, so HMAC-SHA256 is registered the
way Authlib documents, over Authlib's base string), with the JSON body's ``oauth_body_hash``; or
**OAuth 2.0 client credentials** (a PS256/ES256 JWT assertion signed with the certificate's
private key, ``kid`` = certificate ID; the bearer token cached until a minute before it
expires, fetched again once on a 401). Nothing secret is logged or put into an error.

Limits: NetSuite counts concurrent requests per account (shared with every other
integration); this process keeps at most ``concurrency`` in flight, and a 429
``CONCURRENCY_LIMIT_EXCEEDED`` (slots free within moments) is retried here twice after a short
wait, then handed to Temporal as RATE_LIMITED. Every other failure is one ``ConnectorError``:
timeouts, network errors and 5xx retryable; 4xx permanent with NetSuite's ``o:errorCode`` and
detail (an unbalanced entry, an unknown account, a closed period).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jwt
from authlib.oauth1 import ClientAuth
from authlib.oauth1.rfc5849.signature import generate_signature_base_string
from authlib.oauth1.rfc5849.util import escape

from connectors import limits
from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.timeouts import call_timeout
from domain.models import Frozen
from domain.preflight import Check, CheckStatus
from domain.revenue import Accounts, JournalEntry
from domain.settings import NetSuiteSettings, SettingsError

VENDOR = "netsuite"
REST = "/services/rest"
RECORD = f"{REST}/record/v1"
TOKEN_PATH = f"{REST}/auth/oauth2/v1/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: waits before re-sending a request NetSuite refused for concurrency (then Temporal's turn)
CONCURRENCY_WAITS_S = (0.25, 0.75)
#: what Temporal waits after a concurrency refusal outlasting those (NetSuite sends no Retry-After)
CONCURRENCY_RETRY_AFTER_S = 2.0
TOKEN_MARGIN_S = 60.0
PAGE_SIZE = 1000
#: the external IDs domain.revenue gives entries: rb-rev-<YYYY-MM>-<currency>-<digest>
EXTERNAL_ID_PREFIX = "rb-rev-"
_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_ACCOUNT_NUMBER = re.compile(r"^[A-Za-z0-9_.-]{1,60}$")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
#: currencies whose minor unit is not a hundredth (ISO 4217)
_EXPONENT = {"JPY": 0, "KRW": 0, "CLP": 0, "VND": 0, "ISK": 0, "HUF": 2, "BHD": 3, "KWD": 3,
             "OMR": 3, "JOD": 3, "TND": 3}  # fmt: skip


class PostedEntry(Frozen):
    """A journal entry found in NetSuite (``find_entries``)."""

    internal_id: str
    external_id: str
    tran_date: date | None = None
    memo: str = ""


def default_host(account_id: str) -> str:
    """``123456_SB1`` → ``123456-sb1.suitetalk.api.netsuite.com`` (the realm keeps ``_SB1``)."""
    return f"{account_id.lower().replace('_', '-')}.suitetalk.api.netsuite.com"


def amount(minor: int, currency: str) -> float:
    """Minor units as the decimal amount NetSuite takes (exact for any realistic amount)."""
    return float(Decimal(minor).scaleb(-_EXPONENT.get(currency.upper(), 2)))


def _sign_hmac_sha256(client: ClientAuth, request: Any) -> str:
    """RFC 5849 §3.4.2 with SHA-256 over Authlib's own base string and key encoding."""
    base = generate_signature_base_string(request)
    key = f"{escape(client.client_secret or '')}&{escape(client.token_secret or '')}"
    digest = hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class _TbaClientAuth(ClientAuth):
    # a copy, so registering HMAC-SHA256 leaves Authlib's class table alone
    SIGNATURE_METHODS = {**ClientAuth.SIGNATURE_METHODS, "HMAC-SHA256": _sign_hmac_sha256}


class _TbaAuth(httpx.Auth):
    """Signs each request (and each re-send: a fresh nonce and timestamp) with TBA."""

    requires_request_body = True

    def __init__(self, s: NetSuiteSettings) -> None:
        assert s.consumer_key and s.consumer_secret and s.token_id and s.token_secret
        self._client = _TbaClientAuth(
            s.consumer_key.get_secret_value(),
            client_secret=s.consumer_secret.get_secret_value(),
            token=s.token_id.get_secret_value(),
            token_secret=s.token_secret.get_secret_value(),
            signature_method="HMAC-SHA256",
            realm=s.account_id,
            # sign a JSON body too (oauth_body_hash), as NetSuite's clients do since 2021.1
            force_include_body=True,
        )

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        headers = {"Content-Type": request.headers.get("content-type", "")}
        _, signed, _ = self._client.prepare(
            request.method, str(request.url), headers, request.content
        )
        request.headers["Authorization"] = signed["Authorization"]
        yield request


def auth_mode(s: NetSuiteSettings) -> str:
    """``tba`` or ``m2m``, or SettingsError naming what is missing."""
    if s.consumer_key and s.consumer_secret and s.token_id and s.token_secret:
        return "tba"
    if s.client_id and s.certificate_id and s.private_key_file:
        return "m2m"
    raise SettingsError(
        "NetSuite needs TBA (NETSUITE_CONSUMER_KEY, NETSUITE_CONSUMER_SECRET, NETSUITE_TOKEN_ID, "
        "NETSUITE_TOKEN_SECRET) or OAuth 2.0 (NETSUITE_CLIENT_ID, NETSUITE_CERTIFICATE_ID, "
        "NETSUITE_PRIVATE_KEY_FILE)"
    )


class NetSuiteErp:
    name = VENDOR

    def __init__(
        self,
        settings: NetSuiteSettings,
        *,
        accounts: Accounts | None = None,
        timeout_s: float = 20.0,
        page_size: int = PAGE_SIZE,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self.mode = auth_mode(settings)
        self.accounts = accounts
        self.page_size = page_size
        base = (settings.api_url or f"https://{default_host(settings.account_id)}").rstrip("/")
        self.base_url = base
        self._http = httpx.Client(
            base_url=base,
            timeout=call_timeout(timeout_s),
            headers={"Accept": "application/json"},
            transport=transport,
        )
        self._slots = threading.BoundedSemaphore(max(1, settings.concurrency))
        self._lock = threading.Lock()
        self._tba = _TbaAuth(settings) if self.mode == "tba" else None
        self._token: str | None = None
        self._token_expires = 0.0
        self._account_ids: dict[str, str] = {}
        self._currency_ids: dict[str, str] = {}

    def close(self) -> None:
        self._http.close()

    # --- auth --------------------------------------------------------------------------------

    def _assertion(self) -> str:
        s = self._settings
        assert s.private_key_file and s.client_id
        try:
            key = Path(s.private_key_file).read_bytes()
        except OSError as exc:
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                f"cannot read NETSUITE_PRIVATE_KEY_FILE ({exc.strerror})",
                code="auth_config",
            ) from None
        alg = "ES256" if b"EC PRIVATE KEY" in key else "PS256"
        now = int(time.time())
        claims = {
            "iss": s.client_id,
            "scope": ["rest_webservices"],
            "aud": self.base_url + TOKEN_PATH,
            "iat": now,
            "exp": now + 3000,  # NetSuite requires exp < iat + 60 min
        }
        try:
            return jwt.encode(
                claims, key, algorithm=alg, headers={"kid": s.certificate_id, "typ": "JWT"}
            )
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                f"NETSUITE_PRIVATE_KEY_FILE is not a usable private key ({type(exc).__name__})",
                code="auth_config",
            ) from None

    def _fetch_token(self) -> str:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self._assertion(),
        }
        try:
            resp = self._http.post(TOKEN_PATH, data=form)
        except httpx.TimeoutException as exc:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"token timeout: {type(exc).__name__}"
            ) from None
        except httpx.HTTPError as exc:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"token network: {type(exc).__name__}"
            ) from None
        if resp.status_code >= 500 or resp.status_code == 429:
            raise ConnectorError(
                VENDOR,
                ErrorKind.RATE_LIMITED if resp.status_code == 429 else ErrorKind.RETRYABLE,
                f"token endpoint HTTP {resp.status_code}",
                status=resp.status_code,
                retry_after=CONCURRENCY_RETRY_AFTER_S if resp.status_code == 429 else None,
            )
        if resp.status_code != 200:
            code = _json(resp).get("error") if isinstance(_json(resp), dict) else None
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                f"the OAuth 2.0 client-credentials grant was refused ({code or resp.status_code}): "
                "check NETSUITE_CLIENT_ID, NETSUITE_CERTIFICATE_ID and the key's mapping",
                status=resp.status_code,
                code="auth_failed",
            )
        body = resp.json()
        self._token = str(body["access_token"])
        self._token_expires = (
            time.monotonic() + float(body.get("expires_in") or 3600) - TOKEN_MARGIN_S
        )
        return self._token

    def _bearer(self, refresh: bool) -> str:
        with self._lock:
            if refresh or self._token is None or time.monotonic() >= self._token_expires:
                return self._fetch_token()
            return self._token

    # --- transport and errors --------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        not_found_ok: bool = False,
    ) -> httpx.Response:
        hdrs = dict(headers or {})
        if json is not None:
            hdrs["Content-Type"] = "application/json"
        refreshed = False
        waits = iter(CONCURRENCY_WAITS_S)
        while True:
            auth: httpx.Auth | None = self._tba
            if self.mode == "m2m":
                hdrs["Authorization"] = f"Bearer {self._bearer(refresh=refreshed)}"
            with self._slots:
                limits.pace(VENDOR)
                try:
                    resp = self._http.request(
                        method, path, json=json, params=params, headers=hdrs, auth=auth
                    )
                except httpx.TimeoutException as exc:
                    raise ConnectorError(
                        VENDOR, ErrorKind.RETRYABLE, f"{what}: timeout ({type(exc).__name__})"
                    ) from None
                except httpx.HTTPError as exc:
                    raise ConnectorError(
                        VENDOR, ErrorKind.RETRYABLE, f"{what}: network ({type(exc).__name__})"
                    ) from None
            if resp.status_code == 401 and self.mode == "m2m" and not refreshed:
                refreshed = True  # a token expired or revoked mid-run: fetch one again, once
                continue
            if resp.status_code == 429:
                wait = next(waits, None)
                if wait is not None:
                    time.sleep(wait)
                    continue
            if resp.status_code == 404 and not_found_ok:
                return resp
            if resp.is_success:
                return resp
            raise self._error(resp, what)

    def _error(self, resp: httpx.Response, what: str) -> ConnectorError:
        status = resp.status_code
        body = _json(resp)
        details = body.get("o:errorDetails") if isinstance(body, dict) else None
        first = details[0] if isinstance(details, list) and details else {}
        code = str(first.get("o:errorCode") or "") or None
        detail = " ".join(str(first.get("detail") or "").split())[:300]
        where = f" at {first['o:errorPath']}" if first.get("o:errorPath") else ""
        if status == 429:
            return ConnectorError(
                VENDOR,
                ErrorKind.RATE_LIMITED,
                f"{what}: the account's concurrency limit is reached",
                status=429,
                code=code or "CONCURRENCY_LIMIT_EXCEEDED",
                retry_after=CONCURRENCY_RETRY_AFTER_S,
            )
        if status == 401:
            return ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                f"{what}: NetSuite refused the credentials ({code or 'HTTP 401'}); check "
                "NETSUITE_ACCOUNT_ID and the token or client, and the Login Audit Trail",
                status=401,
                code="auth_failed",
            )
        if status == 404:
            return NotFound(VENDOR, what)
        if status >= 500 or status in (408,):
            return ConnectorError(
                VENDOR,
                ErrorKind.RETRYABLE,
                f"{what}: HTTP {status} {code or ''}".rstrip(),
                status=status,
                code=code,
            )
        return ConnectorError(
            VENDOR,
            ErrorKind.PERMANENT,
            f"{what} refused ({code or status}{where}): {detail or 'no detail'}",
            status=status,
            code=code,
        )

    def _suiteql(self, q: str, what: str) -> Iterator[dict[str, Any]]:
        """Every row of ``q``, page by page. SuiteQL over REST takes no bind parameters: every
        literal callers put in a query is matched by a strict pattern first (account numbers,
        currency codes, months) or has its quotes doubled (``_quote``)."""
        offset = 0
        while True:
            resp = self._request(
                "POST",
                f"{REST}/query/v1/suiteql",
                what=what,
                json={"q": q},
                params={"limit": self.page_size, "offset": offset},
                headers={"Prefer": "transient"},
            )
            page = _json(resp)
            items = page.get("items") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise ConnectorError(
                    VENDOR, ErrorKind.RETRYABLE, f"{what}: SuiteQL answered without items"
                )
            yield from items
            if not page.get("hasMore"):
                return
            offset += self.page_size

    # --- lookups -----------------------------------------------------------------------------

    def _account_row(self, number: str) -> dict[str, Any] | None:
        if not _ACCOUNT_NUMBER.match(number):
            raise ConnectorError(
                VENDOR, ErrorKind.PERMANENT, f"{number!r} is not an account number", code="config"
            )
        rows = list(
            self._suiteql(
                "SELECT id, acctnumber, accttype, isinactive FROM account "  # noqa: S608 (literals checked, see _suiteql)
                f"WHERE acctnumber = '{number}'",
                f"account {number} lookup",
            )
        )
        return rows[0] if rows else None

    def _account_id(self, number: str) -> str:
        if number not in self._account_ids:
            row = self._account_row(number)
            if row is None or row.get("isinactive") == "T":
                raise ConnectorError(
                    VENDOR,
                    ErrorKind.PERMANENT,
                    f"account {number} does not exist or is inactive in NetSuite "
                    "(policies/revenue.yaml names it)",
                    code="unknown_account",
                )
            self._account_ids[number] = str(row["id"])
        return self._account_ids[number]

    def _currency_id(self, code: str) -> str:
        code = code.upper()
        if not re.fullmatch(r"[A-Z]{3}", code):
            raise ConnectorError(VENDOR, ErrorKind.PERMANENT, f"{code!r} is not a currency code")
        if code not in self._currency_ids:
            rows = list(
                self._suiteql(
                    f"SELECT id, symbol FROM currency WHERE symbol = '{code}'",  # noqa: S608 (literals checked, see _suiteql)
                    f"currency {code} lookup",
                )
            )
            if not rows:
                raise ConnectorError(
                    VENDOR,
                    ErrorKind.PERMANENT,
                    f"currency {code} is not enabled in NetSuite",
                    code="unknown_currency",
                )
            self._currency_ids[code] = str(rows[0]["id"])
        return self._currency_ids[code]

    # --- journal entries -----------------------------------------------------------------------

    def _body(self, entry: JournalEntry) -> dict[str, Any]:
        return {
            "externalId": entry.external_id,
            "subsidiary": {"id": self._settings.subsidiary_id},
            "currency": {"id": self._currency_id(entry.currency)},
            "tranDate": entry.date.isoformat(),
            "memo": entry.memo,
            "line": {
                "items": [
                    {
                        "account": {"id": self._account_id(line.account)},
                        **(
                            {"debit": amount(line.debit, entry.currency)}
                            if line.debit
                            else {"credit": amount(line.credit, entry.currency)}
                        ),
                        "memo": line.memo,
                    }
                    for line in entry.lines
                ]
            },
        }

    def _existing_id(self, external_id: str) -> str | None:
        resp = self._request(
            "GET",
            f"{RECORD}/journalEntry/eid:{external_id}",
            what=f"journal entry {external_id} read-back",
            params={"fields": "id"},
            not_found_ok=True,
        )
        if resp.status_code == 404:
            return None
        found = _json(resp)
        return str(found["id"]) if isinstance(found, dict) and found.get("id") else None

    def post_journal_entry(self, entry: JournalEntry) -> str:
        """Post ``entry`` once; its NetSuite internal ID (the same on every retry)."""
        ext = entry.external_id
        if not _EXTERNAL_ID.match(ext):
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                "an external ID may hold only letters, digits, _ and -",
                code="bad_external_id",
            )
        existing = self._existing_id(ext)
        if existing is not None:
            return existing
        what = f"journal entry {ext}"
        resp = self._request(
            "PUT",
            f"{RECORD}/journalEntry/eid:{ext}",
            what=what,
            json=self._body(entry),
            # a field NetSuite does not know is an error, never silently dropped
            headers={"X-NetSuite-PropertyNameValidation": "Error"},
        )
        location = resp.headers.get("location", "")
        if location.rstrip("/").rsplit("/", 1)[-1].isdigit():
            return location.rstrip("/").rsplit("/", 1)[-1]
        posted = self._existing_id(ext)
        if posted is None:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"{what}: accepted but not readable yet"
            )
        return posted

    def find_entries(self, month: str) -> list[PostedEntry]:
        """RevBridge's journal entries dated in ``month`` (``YYYY-MM``), by SuiteQL."""
        if not _MONTH.match(month):
            raise ValueError(f"month must be YYYY-MM, not {month!r}")
        rows = self._suiteql(
            "SELECT id, externalid, trandate, memo FROM transaction WHERE type = 'Journal' "  # noqa: S608 (literals checked, see _suiteql)
            f"AND externalid LIKE '{EXTERNAL_ID_PREFIX}{month}-%' ORDER BY id",
            f"journal entries of {month}",
        )
        return [
            PostedEntry(
                internal_id=str(r["id"]),
                external_id=str(r["externalid"]),
                tran_date=_date(r.get("trandate")),
                memo=str(r.get("memo") or ""),
            )
            for r in rows
        ]

    # --- preflight -----------------------------------------------------------------------------

    def preflight(self) -> list[Check]:
        how = (
            f"TBA, account {self._settings.account_id}"
            if self.mode == "tba"
            else f"OAuth 2.0 client credentials, account {self._settings.account_id}"
        )
        sub = self._settings.subsidiary_id
        try:
            rows = list(
                self._suiteql(
                    f"SELECT id, name, isinactive FROM subsidiary WHERE id = '{_quote(sub)}'",  # noqa: S608 (literals checked, see _suiteql)
                    "credentials check",
                )
            )
        except ConnectorError as exc:
            return [
                Check(
                    system=VENDOR,
                    name="credentials",
                    status=CheckStatus.FAIL,
                    detail=str(exc),
                    fix="check NETSUITE_ACCOUNT_ID and the TBA token (or OAuth 2.0 client) "
                    "and its role's REST web services and SuiteAnalytics permissions",
                )
            ]
        checks = [Check(system=VENDOR, name="credentials", status=CheckStatus.OK, detail=how)]
        if rows and rows[0].get("isinactive") != "T":
            checks.append(
                Check(
                    system=VENDOR,
                    name=f"subsidiary:{sub}",
                    status=CheckStatus.OK,
                    detail=str(rows[0].get("name") or ""),
                )
            )
        else:
            checks.append(
                Check(
                    system=VENDOR,
                    name=f"subsidiary:{sub}",
                    status=CheckStatus.FAIL,
                    detail="no active subsidiary with this internal ID",
                    fix="set NETSUITE_SUBSIDIARY_ID to the subsidiary revenue posts to",
                )
            )
        if self.accounts is None:
            checks.append(
                Check(
                    system=VENDOR,
                    name="accounts",
                    status=CheckStatus.SKIP,
                    detail="no revenue accounts given (policies/revenue.yaml)",
                )
            )
            return checks
        wanted = {self.accounts.deferred_revenue: "DeferRevenue", self.accounts.revenue: "Income"}
        for number in self.accounts.products.values():
            wanted.setdefault(number, "Income")
        for number, kind in wanted.items():
            checks.append(self._account_check(number, kind))
        return checks

    def _account_check(self, number: str, kind: str) -> Check:
        name = f"account:{number}"
        fix = f"create account {number} ({kind}) in NetSuite, or correct policies/revenue.yaml"
        try:
            row = self._account_row(number)
        except ConnectorError as exc:
            return Check(
                system=VENDOR, name=name, status=CheckStatus.FAIL, detail=str(exc), fix=fix
            )
        if row is None:
            return Check(
                system=VENDOR,
                name=name,
                status=CheckStatus.FAIL,
                detail="no such account number",
                fix=fix,
            )
        if row.get("isinactive") == "T":
            return Check(
                system=VENDOR,
                name=name,
                status=CheckStatus.FAIL,
                detail="the account is inactive",
                fix=f"reactivate account {number} in NetSuite, or correct policies/revenue.yaml",
            )
        if row.get("accttype") != kind:
            return Check(
                system=VENDOR,
                name=name,
                status=CheckStatus.FAIL,
                detail=f"type {row.get('accttype')}, revenue postings need {kind}",
                fix=fix,
            )
        return Check(system=VENDOR, name=name, status=CheckStatus.OK, detail=f"{kind}")


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _quote(value: str) -> str:
    return value.replace("'", "''")


def _date(value: Any) -> date | None:
    """SuiteQL dates come in the account's format (M/D/YYYY by default), or ISO."""
    if not value:
        return None
    text = str(value)
    for fmt in ("%m/%d/%Y", "%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None
