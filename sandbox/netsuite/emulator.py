"""``NetSuiteEmulator``: a NetSuite account's REST web services for revenue postings.

Served under ``/services/rest`` (erp-support-email-apis.md §1, its emulator checklist):

- ``POST /record/v1/journalEntry``: 204, empty body, ``Location: <origin>/services/rest/record/
  v1/journalEntry/<id>``. An ``externalId`` already used answers 400 (duplicate).
- ``PUT /record/v1/journalEntry/eid:<externalId>``: upsert (create if absent, replace if
  present), 204; ``Location`` only when ``upsert_location`` (UNVERIFIED whether NetSuite sends one).
- ``GET /record/v1/journalEntry/<id | eid:X>`` (``expandSubResources=true`` for ``line.items``);
  ``GET /record/v1/{account,subsidiary,currency,accountingPeriod}/<id>``.
- ``POST /query/v1/suiteql?limit=&offset=`` with ``Prefer: transient`` and ``{"q": ...}``
  (:mod:`sandbox.netsuite.suiteql`; tables ``account``, ``subsidiary``, ``currency``,
  ``accountingperiod``, ``transaction``): the collection envelope ``links, count, hasMore,
  items, offset, totalResults``; ``limit`` ≤ 1000, ``offset`` a multiple of it, 100,000 rows at most.
- ``OPTIONS /services/rest/*`` (connection check) and ``POST /auth/oauth2/v1/token``.

Journal entries are validated as NetSuite does: subsidiary, currency and each line's account
must exist (400 ``INVALID_CONTENT`` with ``o:errorPath``), a line has exactly one of debit and
credit, debits equal credits (400 ``USER_ERROR``; REST's exact wording for an unbalanced entry
is UNVERIFIED, SOAP's code is ``JE_AMOUNTS_MUST_BALANCE``), and the date's accounting period
must be open. Every request is checked (:mod:`sandbox.netsuite.auth`) and counted against the
account's concurrency limit (default 15): one more in flight answers 429
``CONCURRENCY_LIMIT_EXCEEDED``. With ``X-NetSuite-PropertyNameValidation: error`` an unknown
body field is a 400.

Scenario controls (no auth, never in the ledger): ``POST /_sandbox/seed`` ``{"accounts",
"currencies", "subsidiaries", "closed_periods": ["YYYY-MM"], "journal_entries": [body...]}``,
``POST /_sandbox/netsuite/concurrency`` ``{"limit"?, "hold_s"?}`` (``hold_s`` keeps every
request in flight that long, to reach the limit), ``GET /_sandbox/netsuite/journal_entries``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.framework import Emulator, json_body

from . import suiteql
from .auth import Authenticator, M2mClient, TbaCredentials
from .errors import (
    NetSuiteError,
    for_status,
    invalid_value,
    not_found,
    user_error,
)

REST = "/services/rest"
RECORD = f"{REST}/record/v1"
TOKEN_PATH = f"{REST}/auth/oauth2/v1/token"
RESOURCE = "application/vnd.oracle.resource+json"
MAX_PAGE = 1000
MAX_RESULTS = 100_000

#: the fields a journalEntry body may carry (the REST API Browser's schema, §1.3.1)
JE_FIELDS = {
    "externalId", "subsidiary", "currency", "tranDate", "postingPeriod", "memo", "approved",
    "exchangeRate", "class", "department", "location", "reversalDate", "tranId", "line",
}  # fmt: skip
LINE_FIELDS = {
    "account", "debit", "credit", "memo", "entity", "department", "class", "location",
    "startDate", "endDate", "scheduleType", "revenueRecognitionRule", "eliminate", "line",
}  # fmt: skip

DEFAULT_ACCOUNTS: tuple[dict[str, Any], ...] = (
    {"id": "119", "acctnumber": "1100", "name": "Accounts Receivable", "accttype": "AcctRec"},
    {"id": "250", "acctnumber": "2400", "name": "Deferred Revenue", "accttype": "DeferRevenue"},
    {"id": "54", "acctnumber": "4000", "name": "Subscription Revenue", "accttype": "Income"},
    {
        "id": "55",
        "acctnumber": "4100",
        "name": "Professional Services Revenue",
        "accttype": "Income",
    },
)
DEFAULT_CURRENCIES: tuple[dict[str, Any], ...] = (
    {"id": "1", "symbol": "USD", "name": "US Dollar"},
    {"id": "2", "symbol": "GBP", "name": "British pound"},
    {"id": "3", "symbol": "CAD", "name": "Canadian Dollar"},
    {"id": "4", "symbol": "EUR", "name": "Euro"},
)
DEFAULT_SUBSIDIARIES: tuple[dict[str, Any], ...] = ({"id": "1", "name": "Parent Company"},)


def _tf(flag: bool) -> str:
    return "T" if flag else "F"


def _us_date(d: date) -> str:
    """SuiteQL answers dates in the account's date format (default M/D/YYYY)."""
    return f"{d.month}/{d.day}/{d.year}"


def _ref_id(value: Any) -> str | None:
    if isinstance(value, Mapping) and value.get("id") is not None:
        return str(value["id"])
    return None


class Call:
    def __init__(self, request: Request, body: bytes) -> None:
        self.request = request
        self.raw = body
        self.path = dict(request.path_params)
        self.query = dict(request.query_params)
        self.origin = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"

    def json(self) -> Any:
        try:
            return json_body(self.raw)
        except ValueError as exc:
            raise NetSuiteError(400, "INVALID_CONTENT", f"Invalid JSON: {exc}") from None


class NetSuiteEmulator(Emulator):
    """One NetSuite account. ``account_id`` is the realm (``1234567_SB1``); ``tba`` the
    integration's and token's four secrets; ``m2m`` the client-credentials mappings."""

    name = "netsuite"

    def __init__(
        self,
        account_id: str = "1234567_SB1",
        tba: Iterable[TbaCredentials] = (),
        m2m: Iterable[M2mClient] = (),
        concurrency_limit: int = 15,
        require_transient: bool = True,
        upsert_location: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account_id = account_id
        self._tba = list(tba)
        self._m2m = list(m2m)
        self._concurrency_default = concurrency_limit
        self.require_transient = require_transient
        self.upsert_location = upsert_location
        self.clock = clock
        super().__init__()

    # --- framework hooks ---------------------------------------------------------------------

    def reset_state(self) -> None:
        self.auth = Authenticator(self.account_id, self._tba, self._m2m, clock=self.clock)
        self.concurrency_limit = self._concurrency_default
        self.hold_s = 0.0
        self.in_flight = 0
        self.accounts: dict[str, dict[str, Any]] = {}
        self.currencies: dict[str, dict[str, Any]] = {}
        self.subsidiaries: dict[str, dict[str, Any]] = {}
        self.periods: dict[str, dict[str, Any]] = {}
        self.entries: dict[str, dict[str, Any]] = {}
        self.by_external: dict[str, str] = {}
        self._next_id = 1001
        for a in DEFAULT_ACCOUNTS:
            self._add_account(a)
        for c in DEFAULT_CURRENCIES:
            self.currencies[c["id"]] = {"isinactive": "F", **c}
        for s in DEFAULT_SUBSIDIARIES:
            self.subsidiaries[s["id"]] = {"isinactive": "F", **s}
        self._make_periods(2024, 2028)

    def error_response(self, status: int, message: str) -> Response:
        return for_status(status, message).response()

    def seed(self, data: Mapping[str, Any]) -> dict[str, Any]:
        for a in data.get("accounts", []):
            self._add_account(a)
        for c in data.get("currencies", []):
            self.currencies[str(c["id"])] = {"isinactive": "F", **c, "id": str(c["id"])}
        for s in data.get("subsidiaries", []):
            self.subsidiaries[str(s["id"])] = {"isinactive": "F", **s, "id": str(s["id"])}
        for month in data.get("closed_periods", []):
            period = next(p for p in self.periods.values() if p["month"] == month)
            period["closed"] = "T"
        created = []
        for body in data.get("journal_entries", []):
            created.append(self._store_entry(self._validate_entry(body), None))
        return {"journal_entries": created}

    def _add_account(self, a: Mapping[str, Any]) -> None:
        row = {
            "id": str(a["id"]),
            "acctnumber": str(a["acctnumber"]),
            "accountsearchdisplayname": f"{a['acctnumber']} {a.get('name', '')}".strip(),
            "accttype": a.get("accttype", "Income"),
            "isinactive": a.get("isinactive", "F"),
        }
        self.accounts[row["id"]] = row

    def _make_periods(self, first_year: int, last_year: int) -> None:
        pid = 1
        for year in range(first_year, last_year + 1):
            for month in range(1, 13):
                start = date(year, month, 1)
                end = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
                self.periods[str(pid)] = {
                    "id": str(pid),
                    "periodname": start.strftime("%b %Y"),
                    "month": f"{year:04d}-{month:02d}",
                    "startdate": start,
                    "enddate": end,
                    "closed": "F",
                    "isyear": "F",
                    "isquarter": "F",
                    "isposting": "T",
                }
                pid += 1

    # --- routes -------------------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        r = self._route
        return [
            Route(TOKEN_PATH, self._token, methods=["POST"]),
            r("POST", f"{RECORD}/journalEntry", self._create),
            r("PUT", f"{RECORD}/journalEntry/{{id}}", self._upsert),
            r("GET", f"{RECORD}/journalEntry/{{id}}", self._get_entry),
            r("GET", f"{RECORD}/{{kind}}/{{id}}", self._get_lookup),
            r("POST", f"{REST}/query/v1/suiteql", self._suiteql),
            r("OPTIONS", f"{REST}/{{rest:path}}", self._options),
            Route("/_sandbox/netsuite/concurrency", self._set_concurrency, methods=["POST"]),
            Route("/_sandbox/netsuite/journal_entries", self._list_entries, methods=["GET"]),
        ]

    def _route(
        self, method: str, path: str, handler: Callable[[Call], Awaitable[Response]]
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            call = Call(request, body)
            with self.lock:
                self.in_flight += 1
                over = self.in_flight > self.concurrency_limit
            try:
                if over:
                    raise for_status(429, "")
                if self.hold_s:
                    await asyncio.sleep(self.hold_s)
                with self.lock:
                    self.auth.check(
                        request.method,
                        call.origin,
                        request.url.path,
                        request.url.query,
                        request.headers,
                        body,
                    )
                return await handler(call)
            except NetSuiteError as exc:
                return exc.response()
            finally:
                with self.lock:
                    self.in_flight -= 1

        return Route(path, endpoint, methods=[method])

    async def _token(self, request: Request) -> Response:
        body = await request.body()
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        origin = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
        try:
            with self.lock:
                answer = self.auth.issue_token(form, origin + TOKEN_PATH)
        except NetSuiteError as exc:
            return JSONResponse({"error": exc.code}, status_code=400)
        return JSONResponse(answer)

    async def _set_concurrency(self, request: Request) -> Response:
        spec = await request.json()
        with self.lock:
            if "limit" in spec:
                self.concurrency_limit = int(spec["limit"])
            if "hold_s" in spec:
                self.hold_s = float(spec["hold_s"])
        return JSONResponse({"limit": self.concurrency_limit, "hold_s": self.hold_s})

    async def _list_entries(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse(
                {"journal_entries": [self._public(e) for e in self.entries.values()]}
            )

    async def _options(self, call: Call) -> Response:
        return Response(status_code=204, headers={"Allow": "GET, POST, PUT, PATCH, DELETE"})

    # --- journal entries -----------------------------------------------------------------------

    async def _create(self, call: Call) -> Response:
        body = call.json()
        self._check_property_names(call, body)
        with self.lock:
            entry = self._validate_entry(body)
            ext = entry.get("externalId")
            if ext and ext in self.by_external:
                raise user_error(
                    f"A record with the external ID {ext} already exists.", path="externalId"
                )
            new_id = self._store_entry(entry, None)
        return Response(
            status_code=204, headers={"Location": f"{call.origin}{RECORD}/journalEntry/{new_id}"}
        )

    async def _upsert(self, call: Call) -> Response:
        ident = call.path["id"]
        if not ident.startswith("eid:"):
            raise NetSuiteError(
                405,
                "INVALID_METHOD",
                "PUT is supported only with an external ID (eid:...); use PATCH to update.",
            )
        ext = ident[4:]
        if not ext or not all(ch.isalnum() or ch in "_-" for ch in ext):
            raise invalid_value(ext, "externalId", "externalId")
        body = call.json()
        self._check_property_names(call, body)
        if isinstance(body, dict) and body.get("externalId") not in (None, ext):
            raise invalid_value(body["externalId"], "externalId", "externalId")
        with self.lock:
            entry = self._validate_entry(
                {**(body if isinstance(body, dict) else {}), "externalId": ext}
            )
            existing = self.by_external.get(ext)
            if (
                existing is not None
                and self._period_of(self.entries[existing]["tranDate"])["closed"] == "T"
            ):
                raise self._closed_period_error()
            new_id = self._store_entry(entry, existing)
        headers = {}
        if self.upsert_location:
            headers["Location"] = f"{call.origin}{RECORD}/journalEntry/{new_id}"
        return Response(status_code=204, headers=headers)

    async def _get_entry(self, call: Call) -> Response:
        with self.lock:
            entry = self._find_entry(call.path["id"])
            expand = call.query.get("expandSubResources", "").lower() == "true"
            return self._resource(self._public(entry, call.origin, expand))

    def _find_entry(self, ident: str) -> dict[str, Any]:
        if ident.startswith("eid:"):
            internal = self.by_external.get(ident[4:])
        else:
            internal = ident if ident in self.entries else None
        if internal is None:
            raise not_found("journalEntry", ident)
        return self.entries[internal]

    def _check_property_names(self, call: Call, body: Any) -> None:
        mode = call.request.headers.get("x-netsuite-propertynamevalidation", "warning").lower()
        if mode != "error" or not isinstance(body, dict):
            return
        unknown = sorted(set(body) - JE_FIELDS)
        items = (body.get("line") or {}).get("items") if isinstance(body.get("line"), dict) else []
        for i, item in enumerate(items or []):
            if isinstance(item, dict):
                unknown += [f"line.items[{i}].{k}" for k in sorted(set(item) - LINE_FIELDS)]
        if unknown:
            raise NetSuiteError(
                400,
                "NONEXISTENT_FIELD",
                f"Error while accessing a resource. The field {unknown[0]} does not exist "
                "on record journalEntry.",
                path=unknown[0],
            )

    def _period_of(self, d: date) -> dict[str, Any]:
        for p in self.periods.values():
            if p["startdate"] <= d <= p["enddate"]:
                return p
        raise user_error(f"No accounting period is set up for the date {d.isoformat()}.")

    def _closed_period_error(self) -> NetSuiteError:
        # REST's exact wording for a closed period is UNVERIFIED (§1.3.6); SOAP's codes are
        # INVALID_ACCT_PRD / INVALID_PERIOD
        return user_error(
            "The accounting period of this transaction is closed. You cannot post to it.",
            path="postingPeriod",
        )

    def _validate_entry(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise NetSuiteError(400, "INVALID_CONTENT", "The request body must be a JSON object.")
        sub = _ref_id(body.get("subsidiary"))
        if sub is None:
            raise user_error("Please enter value(s) for: Subsidiary", path="subsidiary")
        if sub not in self.subsidiaries or self.subsidiaries[sub]["isinactive"] == "T":
            raise invalid_value(sub, "subsidiary", "subsidiary")
        cur = _ref_id(body.get("currency"))
        if cur is None:
            raise user_error("Please enter value(s) for: Currency", path="currency")
        if cur not in self.currencies:
            raise invalid_value(cur, "currency", "currency")
        try:
            tran_date = date.fromisoformat(str(body.get("tranDate")))
        except ValueError:
            raise NetSuiteError(
                400,
                "INVALID_PARAMETER",
                f"Error while accessing a resource. Unparseable date: {body.get('tranDate')}",
                path="tranDate",
            ) from None
        period = self._period_of(tran_date)
        if body.get("postingPeriod") is not None:
            pid = _ref_id(body["postingPeriod"])
            if pid not in self.periods:
                raise invalid_value(pid, "postingPeriod", "postingPeriod")
            period = self.periods[pid]
        if period["closed"] == "T":
            raise self._closed_period_error()
        line = body.get("line")
        items = line.get("items") if isinstance(line, dict) else None
        if not isinstance(items, list) or not items:
            raise user_error("You must enter at least one line item for this transaction.")
        lines = []
        debits = credits = Decimal(0)
        for i, item in enumerate(items):
            where = f"line.items[{i}]"
            if not isinstance(item, dict):
                raise NetSuiteError(
                    400, "INVALID_CONTENT", f"{where} must be an object", path=where
                )
            acct = _ref_id(item.get("account"))
            if acct is None:
                raise user_error("Please enter value(s) for: Account", path=f"{where}.account")
            if acct not in self.accounts or self.accounts[acct]["isinactive"] == "T":
                raise invalid_value(acct, "account", f"{where}.account")
            amounts = {}
            for side in ("debit", "credit"):
                raw = item.get(side)
                if raw is None:
                    continue
                try:
                    value = Decimal(str(raw)).quantize(Decimal("0.01"), ROUND_HALF_UP)
                except InvalidOperation:
                    raise invalid_value(raw, side, f"{where}.{side}") from None
                if value < 0:
                    raise invalid_value(raw, side, f"{where}.{side}")
                if value:
                    amounts[side] = value
            if len(amounts) != 1:
                raise user_error(
                    "Each journal line must have either a debit or a credit amount, not both.",
                    path=where,
                )
            debits += amounts.get("debit", Decimal(0))
            credits += amounts.get("credit", Decimal(0))
            lines.append(
                {
                    "account": acct,
                    **{k: str(v) for k, v in amounts.items()},
                    "memo": str(item.get("memo") or ""),
                }
            )
        if debits != credits:
            raise user_error(
                "The transaction is not in balance: the total of debit lines "
                f"({debits}) must equal the total of credit lines ({credits}).",
                path="line",
            )
        return {
            "externalId": body.get("externalId"),
            "subsidiary": sub,
            "currency": cur,
            "tranDate": tran_date,
            "postingPeriod": period["id"],
            "memo": str(body.get("memo") or ""),
            "lines": lines,
        }

    def _store_entry(self, entry: dict[str, Any], replace: str | None) -> str:
        now = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if replace is not None:
            old = self.entries[replace]
            self.entries[replace] = {**old, **entry, "lastModifiedDate": now}
            return replace
        new_id = str(self._next_id)
        self._next_id += 1
        self.entries[new_id] = {
            **entry,
            "id": new_id,
            "tranId": f"JE{new_id}",
            "createdDate": now,
            "lastModifiedDate": now,
        }
        if entry.get("externalId"):
            self.by_external[entry["externalId"]] = new_id
        return new_id

    def _public(self, e: dict[str, Any], origin: str = "", expand: bool = True) -> dict[str, Any]:
        self_href = f"{origin}{RECORD}/journalEntry/{e['id']}"
        period = self.periods[e["postingPeriod"]]

        def ref(kind: str, ident: str, name: str) -> dict[str, Any]:
            href = f"{origin}{RECORD}/{kind}/{ident}"
            return {"links": [{"rel": "self", "href": href}], "id": ident, "refName": name}

        line: dict[str, Any] = {"links": [{"rel": "self", "href": f"{self_href}/line"}]}
        if expand:
            line["items"] = [
                {
                    "links": [],
                    "line": i,
                    "account": ref(
                        "account",
                        item["account"],
                        self.accounts[item["account"]]["accountsearchdisplayname"],
                    ),
                    **{k: float(item[k]) for k in ("debit", "credit") if k in item},
                    "memo": item["memo"],
                }
                for i, item in enumerate(e["lines"])
            ]
            line["totalResults"] = len(e["lines"])
        out = {
            "links": [{"rel": "self", "href": self_href}],
            "id": e["id"],
            "tranId": e["tranId"],
            "tranDate": e["tranDate"].isoformat(),
            "memo": e["memo"],
            "subsidiary": ref(
                "subsidiary", e["subsidiary"], self.subsidiaries[e["subsidiary"]]["name"]
            ),
            "currency": ref("currency", e["currency"], self.currencies[e["currency"]]["symbol"]),
            "postingPeriod": ref("accountingPeriod", period["id"], period["periodname"]),
            "approved": True,
            "createdDate": e["createdDate"],
            "lastModifiedDate": e["lastModifiedDate"],
            "line": line,
        }
        if e.get("externalId"):
            out["externalId"] = e["externalId"]
        return out

    # --- lookups and SuiteQL -------------------------------------------------------------------

    async def _get_lookup(self, call: Call) -> Response:
        kind, ident = call.path["kind"], call.path["id"]
        with self.lock:
            table = {
                "account": self.accounts,
                "subsidiary": self.subsidiaries,
                "currency": self.currencies,
                "accountingPeriod": self.periods,
            }.get(kind)
            if table is None:
                raise NetSuiteError(
                    404, "NONEXISTENT_RECORD_TYPE", f"Record type '{kind}' does not exist."
                )
            row = table.get(ident)
            if row is None:
                raise not_found(kind, ident)
            out = {"links": [{"rel": "self", "href": f"{call.origin}{RECORD}/{kind}/{ident}"}]}
            for k, v in row.items():
                out[k] = v.isoformat() if isinstance(v, date) else v
            return self._resource(out)

    def _tables(self) -> dict[str, list[dict[str, Any]]]:
        periods = [
            {
                **{k: v for k, v in p.items() if k != "month"},
                "startdate": _us_date(p["startdate"]),
                "enddate": _us_date(p["enddate"]),
            }
            for p in self.periods.values()
        ]
        transactions = [
            {
                "id": e["id"],
                "tranid": e["tranId"],
                "externalid": e.get("externalId"),
                "type": "Journal",
                "trandate": _us_date(e["tranDate"]),
                "memo": e["memo"],
                "currency": e["currency"],
                "subsidiary": e["subsidiary"],
                "postingperiod": e["postingPeriod"],
            }
            for e in self.entries.values()
        ]
        return {
            "account": list(self.accounts.values()),
            "subsidiary": list(self.subsidiaries.values()),
            "currency": list(self.currencies.values()),
            "accountingperiod": periods,
            "transaction": transactions,
        }

    async def _suiteql(self, call: Call) -> Response:
        prefer = call.request.headers.get("prefer", "")
        if self.require_transient and "transient" not in prefer.lower():
            raise NetSuiteError(
                400,
                "INVALID_HEADER",
                "Error while accessing a resource. The request header Prefer: transient is "
                "required for this operation.",
            )
        body = call.json()
        if not isinstance(body, dict) or not isinstance(body.get("q"), str):
            raise NetSuiteError(400, "INVALID_CONTENT", 'The request body must be {"q": "..."}.')
        try:
            limit = int(call.query.get("limit", MAX_PAGE))
            offset = int(call.query.get("offset", 0))
        except ValueError:
            raise NetSuiteError(
                400, "INVALID_PARAMETER", "limit and offset must be integers."
            ) from None
        if not 1 <= limit <= MAX_PAGE:
            raise NetSuiteError(
                400,
                "INVALID_PARAMETER",
                f"Invalid query parameter value: limit. The value must be between 1 and {MAX_PAGE}.",
            )
        if offset < 0 or offset % limit:
            raise NetSuiteError(
                400,
                "INVALID_PARAMETER",
                "Invalid query parameter value: offset. The offset must be a multiple of limit.",
            )
        with self.lock:
            rows = suiteql.run(body["q"], self._tables())[:MAX_RESULTS]
        page = rows[offset : offset + limit]
        has_more = offset + limit < len(rows)
        base = f"{call.origin}{REST}/query/v1/suiteql"
        links = [{"rel": "self", "href": f"{base}?limit={limit}&offset={offset}"}]
        if has_more:
            links.append({"rel": "next", "href": f"{base}?limit={limit}&offset={offset + limit}"})
        return JSONResponse(
            {
                "links": links,
                "count": len(page),
                "hasMore": has_more,
                "items": [{"links": [], **row} for row in page],
                "offset": offset,
                "totalResults": len(rows),
            },
            media_type=f"{RESOURCE}; type=collection",
        )

    @staticmethod
    def _resource(body: dict[str, Any]) -> Response:
        return JSONResponse(body, media_type=f"{RESOURCE}; type=singular-resource")
