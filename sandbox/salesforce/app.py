"""REST routes under ``/services/data/vXX.X/`` (any version), routed on the raw path.

The raw path matters: a ``%2F`` inside an external-ID value must not split the path, and
``get_by_custom_id`` sends a space as ``+`` (so GET by external ID decodes ``+``; the upsert
PATCH, which simple-salesforce sends unencoded, does not). Trailing slashes are ignored.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, unquote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import soql, tooling
from .errors import MultipleMatches, SfError, bad, not_found
from .schema import Field, SObject, make_id, normalize_id
from .store import Event
from .values import format_datetime, parse_datetime

if TYPE_CHECKING:
    from .emulator import SalesforceEmulator

BATCH_DEFAULT = 2000
BATCH_MIN = 200
COLLECTION_MAX = 200
COMPOSITE_MAX = 25  # subrequests in one /composite call
COMPOSITE_QUERY_MAX = 5  # of which query / sObject Collections subrequests
_REFERENCE_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_REFERENCE_RE = re.compile(r"@\{([A-Za-z][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_]+|\[\d+\])+)\}")
_HALTED = {
    "errorCode": "PROCESSING_HALTED",
    "message": "The transaction was rolled back since another operation in the same transaction "
    "failed.",
}
MAX_CURSORS = 50
_VERSION_RE = re.compile(r"v(\d{2,3}\.\d)")
_ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header",
    "fields": [],
}
VERSIONS = [
    ("Summer '24", "61.0"),
    ("Winter '25", "62.0"),
    ("Spring '25", "63.0"),
    ("Summer '25", "64.0"),
]


@dataclass
class Ctx:
    method: str
    version: str
    user_id: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    #: inside a ``/composite`` call with ``allOrNone: true``: every collection is all-or-none too
    all_or_none: bool = False

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise bad("JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise bad(
                "JSON_PARSER_ERROR",
                "Cannot deserialize instance of object from "
                + ("START_ARRAY" if isinstance(data, list) else "VALUE")
                + " value",
            )
        return data


@dataclass
class Cursor:
    records: list[dict[str, Any]]
    total: int
    batch: int


def sf_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def allow(ctx: Ctx, *methods: str) -> None:
    if ctx.method not in methods:
        raise SfError(
            405,
            "METHOD_NOT_ALLOWED",
            f"HTTP Method '{ctx.method}' not allowed. Allowed are {','.join(methods)}",
        )


class RestApi:
    def __init__(self, em: SalesforceEmulator) -> None:
        self.em = em
        self.cursors: OrderedDict[str, Cursor] = OrderedDict()

    @property
    def store(self) -> Any:
        return self.em.store

    # --- entry point -----------------------------------------------------------------------------

    async def versions(self, request: Request) -> Response:
        return sf_json(
            [{"label": label, "url": f"/services/data/v{v}", "version": v} for label, v in VERSIONS]
        )

    async def dispatch(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.scope["path"].encode()
        path = raw.split(b"?", 1)[0].decode("latin-1")
        segs = path[len("/services/data/") :].split("/")
        while segs and segs[-1] == "":
            segs.pop()
        if not segs:
            return await self.versions(request)
        m = _VERSION_RE.fullmatch(segs[0])
        if not m:
            return sf_json(not_found().body(), 404)
        em = self.em
        token = request.headers.get("authorization", "")
        scheme, _, token = token.partition(" ")
        session = (
            em.tokens.validate(token.strip()) if scheme.lower() in ("bearer", "oauth") else None
        )
        if session is None:
            err = SfError(401, "INVALID_SESSION_ID", "Session expired or invalid")
            return sf_json(err.body(), 401)
        ctx = Ctx(
            method=request.method,
            version=m.group(1),
            user_id=session.user_id,
            params=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
        )
        with em.lock:
            if em.allowance_spent():
                resp = sf_json(
                    SfError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.").body(),
                    403,
                )
            else:
                em.spend_api_call()
                try:
                    resp = self.route(ctx, segs[1:])
                except SfError as exc:
                    resp = sf_json(exc.body(), exc.status)
            resp.headers["Sforce-Limit-Info"] = em.usage_header()
            events, self.store.events[:] = list(self.store.events), []
        if events:
            await em.emit_events(events)
        return resp

    def route(self, ctx: Ctx, segs: list[str]) -> Response:
        if not segs:
            allow(ctx, "GET")
            base = f"/services/data/v{ctx.version}"
            names = ["sobjects", "query", "queryAll", "composite", "limits"]
            return sf_json({n: f"{base}/{n}" for n in names})
        head, rest = segs[0], segs[1:]
        if head == "sobjects":
            return self.sobjects(ctx, rest)
        if head in ("query", "queryAll"):
            return self.query(ctx, head == "queryAll", rest)
        if head == "composite" and not rest:
            return self.composite(ctx)
        if head == "composite" and rest[:1] == ["sobjects"]:
            return self.collections(ctx, rest[1:])
        if head == "limits" and not rest:
            allow(ctx, "GET")
            return self.limits()
        if head == "tooling":
            return tooling.route(self.em, ctx, rest)
        raise not_found()

    # --- sObjects --------------------------------------------------------------------------------

    def sobject(self, name: str) -> SObject:
        sobj = self.em.schema.get(unquote(name))
        if sobj is None:
            raise not_found()
        return sobj

    def sobjects(self, ctx: Ctx, rest: list[str]) -> Response:
        if not rest:
            allow(ctx, "GET")
            objs = [o.summary(ctx.version) for o in self.em.schema.objects.values()]
            return sf_json({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": objs})
        sobj = self.sobject(rest[0])
        if len(rest) == 1:
            allow(ctx, "GET", "POST")
            if ctx.method == "POST":
                return self.create(ctx, sobj)
            recent = list(self.store.table(sobj).values())[-5:]
            items = [
                {
                    "attributes": {"type": sobj.name},
                    "Id": r["Id"],
                    **({"Name": r["Name"]} if "Name" in r else {}),
                }
                for r in reversed(recent)
                if not r["IsDeleted"]
            ]
            return sf_json({"objectDescribe": sobj.summary(ctx.version), "recentItems": items})
        if len(rest) == 2:
            seg = unquote(rest[1])
            if seg == "describe":
                allow(ctx, "GET")
                return sf_json(sobj.describe(ctx.version))
            if seg in ("updated", "deleted"):
                allow(ctx, "GET")
                return self.replication(ctx, sobj, seg)
            if seg.lower() == "id" and ctx.method == "POST":
                return self.create(ctx, sobj)  # v37+: POST .../{Obj}/Id creates
            return self.record(ctx, sobj, seg)
        if len(rest) == 3:
            return self.by_external_id(ctx, sobj, unquote(rest[1]), rest[2])
        raise not_found()

    def create(self, ctx: Ctx, sobj: SObject) -> Response:
        rid = self.store.create(sobj, ctx.json_object(), user_id=ctx.user_id)
        return sf_json({"id": rid, "success": True, "errors": []}, 201)

    def record(self, ctx: Ctx, sobj: SObject, record_id: str) -> Response:
        allow(ctx, "GET", "PATCH", "DELETE")
        if ctx.method == "GET":
            rec = self.store.live(sobj, record_id)
            return sf_json(self.store.to_api(sobj, rec, ctx.version, self.fields_param(ctx, sobj)))
        if ctx.method == "PATCH":
            self.store.update(sobj, record_id, ctx.json_object(), user_id=ctx.user_id)
        else:
            self.store.delete(sobj, record_id, user_id=ctx.user_id)
        return Response(status_code=204)

    def fields_param(self, ctx: Ctx, sobj: SObject, value: Any = None) -> list[Field] | None:
        names = value if value is not None else ctx.params.get("fields")
        if names is None:
            return None
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        fields = []
        for name in names:
            f = sobj.field(name)
            if f is None:
                raise bad(
                    "INVALID_FIELD",
                    f"No such column '{name}' on entity '{sobj.name}'. If you are attempting to use "
                    "a custom field, be sure to append the '__c' after the custom field name. "
                    "Please reference your WSDL or the describe call for the appropriate names.",
                )
            fields.append(f)
        return fields

    def by_external_id(self, ctx: Ctx, sobj: SObject, field_name: str, raw_value: str) -> Response:
        allow(ctx, "GET", "PATCH", "DELETE")
        store = self.store
        if ctx.method == "PATCH":
            value = unquote(raw_value)
            try:
                rid, created = store.upsert(
                    sobj, field_name, value, ctx.json_object(), user_id=ctx.user_id
                )
            except MultipleMatches as exc:
                return self.multiple(ctx, sobj, exc.ids)
            if not created and float(ctx.version) < 46.0:
                return Response(status_code=204)
            return sf_json(
                {"id": rid, "success": True, "errors": [], "created": created},
                201 if created else 200,
            )
        f = sobj.field(field_name)
        if f is None or not (f.external_id or f.name == "Id"):
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {field_name}"
            )
        ids = store.find_by(
            sobj, f, unquote_plus(raw_value) if ctx.method == "GET" else unquote(raw_value)
        )
        if len(ids) > 1:
            return self.multiple(ctx, sobj, ids)
        if not ids:
            raise not_found()
        if ctx.method == "DELETE":
            store.delete(sobj, ids[0], user_id=ctx.user_id)
            return Response(status_code=204)
        rec = store.live(sobj, ids[0])
        return sf_json(store.to_api(sobj, rec, ctx.version, self.fields_param(ctx, sobj)))

    def multiple(self, ctx: Ctx, sobj: SObject, ids: list[str]) -> Response:
        return sf_json(
            [f"/services/data/v{ctx.version}/sobjects/{sobj.name}/{i}" for i in ids], 300
        )

    def replication(self, ctx: Ctx, sobj: SObject, kind: str) -> Response:
        start = parse_datetime(ctx.params.get("start", "").replace(" ", "+"))
        end = parse_datetime(ctx.params.get("end", "").replace(" ", "+"))
        if start is None or end is None or end < start:
            raise bad(
                "INVALID_REPLICATION_DATE", "start and end must be ISO 8601 datetimes, start <= end"
            )
        table = self.store.table(sobj)
        if kind == "updated":
            ids = [
                r["Id"]
                for r in table.values()
                if not r["IsDeleted"] and start <= r["SystemModstamp"] < end
            ]
            return sf_json({"ids": ids, "latestDateCovered": format_datetime(end)})
        deleted = [
            {"id": rid, "deletedDate": format_datetime(at)}
            for rid, at in self.store.deleted_at.items()
            if rid in table and start <= at < end
        ]
        return sf_json(
            {
                "deletedRecords": deleted,
                "earliestDateAvailable": format_datetime(
                    min(self.store.deleted_at.values(), default=start)
                ),
                "latestDateCovered": format_datetime(end),
            }
        )

    # --- query -----------------------------------------------------------------------------------

    def query(self, ctx: Ctx, include_deleted: bool, rest: list[str]) -> Response:
        allow(ctx, "GET")
        if rest:
            return self.query_more(ctx, unquote(rest[0]))
        q = ctx.params.get("q")
        if q is None:
            raise bad("MALFORMED_QUERY", "A query string has to be specified")
        total, records = soql.run(
            self.store, q, include_deleted=include_deleted, version=ctx.version
        )
        batch = _batch_size(ctx.headers.get("sforce-query-options", ""))
        if len(records) <= batch:
            return sf_json({"totalSize": total, "done": True, "records": records})
        cursor_id = make_id("01g", self.em.next_seq())
        self.cursors[cursor_id] = Cursor(records, total, batch)
        while len(self.cursors) > MAX_CURSORS:
            self.cursors.popitem(last=False)
        return self.page(ctx, cursor_id, 0)

    def query_more(self, ctx: Ctx, locator: str) -> Response:
        cursor_id, _, offset = locator.rpartition("-")
        if cursor_id not in self.cursors or not offset.isdigit():
            raise bad("INVALID_QUERY_LOCATOR", "invalid query locator")
        return self.page(ctx, cursor_id, int(offset))

    def page(self, ctx: Ctx, cursor_id: str, offset: int) -> Response:
        cursor = self.cursors[cursor_id]
        end = offset + cursor.batch
        body: dict[str, Any] = {"totalSize": cursor.total, "done": end >= len(cursor.records)}
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/v{ctx.version}/query/{cursor_id}-{end}"
        body["records"] = cursor.records[offset:end]
        return sf_json(body)

    def limits(self) -> Response:
        em = self.em
        return sf_json(
            {
                "DailyApiRequests": {
                    "Max": em.daily_api_limit,
                    "Remaining": max(0, em.daily_api_limit - em.api_used),
                },
                "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
                "DataStorageMB": {"Max": 5, "Remaining": 5},
                "SingleEmailMessages": {"Max": 15, "Remaining": 15},
            }
        )

    # --- Composite -------------------------------------------------------------------------------

    def composite(self, ctx: Ctx) -> Response:
        """``POST /composite``: up to 25 subrequests in order, in one transaction, one API call.

        ``@{ref.field}`` / ``@{ref.records[0].Id}`` in a later subrequest's URL or body reads an
        earlier subrequest's response body. With ``allOrNone`` the first failure rolls every
        write back: the failed subrequest keeps its error, every other one answers 400
        ``PROCESSING_HALTED``. Without it, subrequests that reference a failed one are not run
        (400 ``PROCESSING_HALTED``) and the others are. The call itself answers 200 either way.
        """
        allow(ctx, "POST")
        body = ctx.json_object()
        subs = body.get("compositeRequest")
        if not isinstance(subs, list) or not subs:
            raise bad("JSON_PARSER_ERROR", "compositeRequest: a list of subrequests is required")
        if len(subs) > COMPOSITE_MAX:
            raise bad(
                "LIMIT_EXCEEDED",
                f"Composite request limit exceeded: at most {COMPOSITE_MAX} subrequests are "
                "allowed",
            )
        all_or_none = bool(body.get("allOrNone", False))
        parsed = [self._subrequest(item) for item in subs]
        refs = [p[2] for p in parsed]
        dupes = {r for r in refs if refs.count(r) > 1}
        if dupes:
            raise bad("JSON_PARSER_ERROR", f"Duplicate referenceId provided: {sorted(dupes)[0]}")
        heavy = sum(1 for _, url, _, _ in parsed if _counts_as_query(url))
        if heavy > COMPOSITE_QUERY_MAX:
            raise bad(
                "LIMIT_EXCEEDED",
                f"Composite request limit exceeded: at most {COMPOSITE_QUERY_MAX} query or "
                "sObject Collections subrequests are allowed",
            )
        done: dict[str, Any] = {}  # referenceId -> response body of a successful subrequest
        results: list[dict[str, Any]] = []
        failed = False
        with self.store.atomic() as savepoint:
            for method, url, ref, sub_body in parsed:
                if failed and all_or_none:
                    results.append(_sub_result(ref, 400, [dict(_HALTED)]))
                    continue
                try:
                    url = _resolve(url, done, encode=True)
                    sub_body = _resolve(sub_body, done)
                except _Unresolved as exc:
                    failed = True
                    results.append(_sub_result(ref, 400, [exc.error()]))
                    continue
                status, out, headers = self._run_sub(ctx, method, url, sub_body, all_or_none)
                ok = status < 300 and not (
                    all_or_none
                    and isinstance(out, list)
                    and any(isinstance(r, dict) and r.get("success") is False for r in out)
                )
                if ok:
                    done[ref] = out
                else:
                    failed = True
                results.append(_sub_result(ref, status, out, headers))
            if failed and all_or_none:
                self.store.rollback(savepoint)
                for i, r in enumerate(results):
                    if parsed[i][2] in done:
                        results[i] = _sub_result(r["referenceId"], 400, [dict(_HALTED)])
        return sf_json({"compositeResponse": results})

    def _subrequest(self, item: Any) -> tuple[str, str, str, Any]:
        if not isinstance(item, dict):
            raise bad("JSON_PARSER_ERROR", "each subrequest must be a JSON object")
        method, url, ref = item.get("method"), item.get("url"), item.get("referenceId")
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            raise bad("INVALID_INPUT", f"Invalid method for a composite subrequest: {method}")
        if not isinstance(url, str) or not url.startswith("/services/data/v"):
            raise bad("INVALID_INPUT", f"Invalid url for a composite subrequest: {url}")
        if not isinstance(ref, str) or not _REFERENCE_ID_RE.fullmatch(ref):
            raise bad("INVALID_INPUT", f"Invalid referenceId for a composite subrequest: {ref}")
        headers = {k.lower() for k in (item.get("httpHeaders") or {})}
        if headers & {"accept", "authorization", "content-type"}:
            raise bad(
                "INVALID_INPUT", "Accept, Authorization and Content-Type cannot be overridden"
            )
        return method, url, ref, item.get("body")

    def _run_sub(
        self, ctx: Ctx, method: str, url: str, body: Any, all_or_none: bool
    ) -> tuple[int, Any, dict[str, str]]:
        path, _, query = url.partition("?")
        segs = [s for s in path[len("/services/data/") :].split("/") if s != ""]
        m = _VERSION_RE.fullmatch(segs[0]) if segs else None
        if m is None or segs[1:2] == ["composite"] and len(segs) == 2:
            err = not_found()
            return err.status, err.body(), {}
        sub = Ctx(
            method=method,
            version=m.group(1),
            user_id=ctx.user_id,
            params=dict(parse_qsl(query, keep_blank_values=True)),
            headers=ctx.headers,
            body=b"" if body is None else json.dumps(body).encode(),
            all_or_none=all_or_none,
        )
        try:
            resp = self.route(sub, segs[1:])
        except SfError as exc:
            return exc.status, exc.body(), {}
        out = json.loads(resp.body) if resp.body else None
        headers: dict[str, str] = {}
        if (
            resp.status_code == 201
            and isinstance(out, dict)
            and out.get("id")
            and segs[1:2] == ["sobjects"]
        ):
            headers["Location"] = f"/services/data/v{sub.version}/sobjects/{segs[2]}/{out['id']}"
        return resp.status_code, out, headers

    # --- sObject Collections ---------------------------------------------------------------------

    def collections(self, ctx: Ctx, rest: list[str]) -> Response:
        if not rest:
            allow(ctx, "POST", "PATCH", "DELETE")
            if ctx.method == "DELETE":
                ids = [i for i in ctx.params.get("ids", "").split(",") if i]
                all_or_none = (
                    ctx.params.get("allOrNone", "false").lower() == "true" or ctx.all_or_none
                )
                return self.run_batch(ids, all_or_none, lambda i: self._delete_item(ctx, i))
            records, all_or_none = self._records_body(ctx)
            op = self._create_item if ctx.method == "POST" else self._update_item
            return self.run_batch(records, all_or_none, lambda r: op(ctx, r))
        sobj = self.sobject(rest[0])
        if len(rest) == 1:
            allow(ctx, "GET", "POST")
            return self.retrieve(ctx, sobj)
        if len(rest) == 2:
            allow(ctx, "PATCH")
            f = sobj.field(unquote(rest[1]))
            if f is None or not f.external_id:
                raise not_found(
                    f"Provided external ID field does not exist or is not accessible: {unquote(rest[1])}"
                )
            records, all_or_none = self._records_body(ctx)
            return self.run_batch(
                records, all_or_none, lambda r: self._upsert_item(ctx, sobj, f, r)
            )
        raise not_found()

    def _records_body(self, ctx: Ctx) -> tuple[list[Any], bool]:
        body = ctx.json_object()
        records = body.get("records")
        if not isinstance(records, list):
            raise bad("JSON_PARSER_ERROR", "records: a list of sObjects is required")
        return records, bool(body.get("allOrNone", False)) or ctx.all_or_none

    def run_batch(
        self, items: list[Any], all_or_none: bool, op: Callable[[Any], dict[str, Any]]
    ) -> Response:
        if len(items) > COLLECTION_MAX:
            raise bad(
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {COLLECTION_MAX} records into this call",
            )
        results: list[dict[str, Any]] = []
        with self.store.atomic() as savepoint:
            for item in items:
                try:
                    results.append(op(item))
                except SfError as exc:
                    failed: dict[str, Any] = {"success": False, "errors": [exc.save_error()]}
                    rid = (
                        item
                        if isinstance(item, str)
                        else (item or {}).get("id")
                        if isinstance(item, dict)
                        else None
                    )
                    results.append({"id": normalize_id(rid) or rid, **failed} if rid else failed)
            if all_or_none and not all(r["success"] for r in results):
                self.store.rollback(savepoint)
                results = [
                    {**r, "success": False, "errors": [_ROLLED_BACK]} if r["success"] else r
                    for r in results
                ]
                for r in results:
                    r.pop("created", None)
        return sf_json(results)

    def _item_object(self, record: Any) -> SObject:
        if not isinstance(record, dict):
            raise bad("JSON_PARSER_ERROR", "each record must be a JSON object")
        type_name = (record.get("attributes") or {}).get("type")
        if not type_name and record.get("id"):
            found = self.store.get_any(record["id"])
            type_name = found[0].name if found else None
        sobj = self.em.schema.get(type_name or "")
        if sobj is None:
            raise bad("INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
        return sobj

    def _create_item(self, ctx: Ctx, record: Any) -> dict[str, Any]:
        sobj = self._item_object(record)
        if record.get("id") or record.get("Id"):
            raise bad("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
        rid = self.store.create(sobj, record, user_id=ctx.user_id)
        return {"id": rid, "success": True, "errors": []}

    def _update_item(self, ctx: Ctx, record: Any) -> dict[str, Any]:
        sobj = self._item_object(record)
        rid = record.get("id") or record.get("Id")
        if not rid:
            raise bad("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
        data = {k: v for k, v in record.items() if k not in ("id", "Id")}
        rid = self.store.update(sobj, rid, data, user_id=ctx.user_id)
        return {"id": rid, "success": True, "errors": []}

    def _upsert_item(self, ctx: Ctx, sobj: SObject, f: Field, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise bad("JSON_PARSER_ERROR", "each record must be a JSON object")
        value = next((v for k, v in record.items() if k.lower() == f.name.lower()), None)
        if value in (None, ""):
            raise bad("MISSING_ARGUMENT", f"{f.name} not specified", [f.name])
        try:
            rid, created = self.store.upsert(sobj, f.name, value, record, user_id=ctx.user_id)
        except MultipleMatches as exc:
            raise bad(
                "DUPLICATE_EXTERNAL_ID",
                f"{f.name}: more than one record found for external id field: {exc.ids}",
                [f.name],
            ) from None
        return {"id": rid, "success": True, "errors": [], "created": created}

    def _delete_item(self, ctx: Ctx, record_id: str) -> dict[str, Any]:
        found = self.store.get_any(record_id)
        if normalize_id(record_id) is None:
            raise bad("MALFORMED_ID", f"malformed id {record_id}", ["Id"])
        if found is None:
            raise bad("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        rid = self.store.delete(found[0], record_id, user_id=ctx.user_id)
        return {"id": rid, "success": True, "errors": []}

    def retrieve(self, ctx: Ctx, sobj: SObject) -> Response:
        if ctx.method == "POST":
            body = ctx.json_object()
            ids, names = body.get("ids") or [], body.get("fields")
        else:
            ids = [i for i in ctx.params.get("ids", "").split(",") if i]
            names = ctx.params.get("fields")
        if not names:
            raise bad("MALFORMED_QUERY", "fields: at least one field is required")
        if len(ids) > 2000:
            raise bad("EXCEEDED_ID_LIMIT", "more than 2000 ids")
        fields = self.fields_param(ctx, sobj, names)
        out: list[dict[str, Any] | None] = []
        for rid in ids:
            nid = normalize_id(rid)
            rec = self.store.table(sobj).get(nid) if nid else None
            ok = rec is not None and not rec["IsDeleted"]
            out.append(self.store.to_api(sobj, rec, ctx.version, fields) if ok else None)
        return sf_json(out)


def _batch_size(options: str) -> int:
    m = re.search(r"batchSize\s*=\s*(\d+)", options)
    if not m:
        return BATCH_DEFAULT
    return max(BATCH_MIN, min(BATCH_DEFAULT, int(m.group(1))))


def event_payload(
    event: Event, record: dict[str, Any], org_id: str, event_id: str, occurred: datetime
) -> dict[str, Any]:
    return {
        "event": event.name,
        "eventId": event_id,
        "sobject": event.sobject,
        "recordId": event.record_id,
        "record": record,
        "orgId": org_id,
        "occurredAt": format_datetime(occurred),
        **({"changedFields": list(event.fields)} if event.fields else {}),
    }


class _Unresolved(Exception):
    def __init__(self, ref: str, path: str) -> None:
        super().__init__(ref)
        self.ref, self.path = ref, path

    def error(self) -> dict[str, Any]:
        return {
            "errorCode": "PROCESSING_HALTED",
            "message": f"Invalid reference specified. No value for {self.ref}{self.path} found "
            f"in {self.ref}. Provided referenceId ('{self.ref}') must be the referenceId of a "
            "previous successful subrequest.",
        }


def _lookup(done: dict[str, Any], ref: str, path: str) -> Any:
    if ref not in done:
        raise _Unresolved(ref, path)
    value = done[ref]
    for name, index in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
        if name and isinstance(value, dict) and name in value:
            value = value[name]
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            raise _Unresolved(ref, path)
    if value is None or isinstance(value, dict | list):
        raise _Unresolved(ref, path)
    return value


def _resolve(value: Any, done: dict[str, Any], encode: bool = False) -> Any:
    """Replace ``@{ref.path}`` references with values from earlier responses; a string that is
    one whole reference takes the value's own JSON type."""
    if isinstance(value, str):
        whole = _REFERENCE_RE.fullmatch(value)
        if whole and not encode:
            return _lookup(done, whole.group(1), whole.group(2))

        def text(m: re.Match[str]) -> str:
            v = _lookup(done, m.group(1), m.group(2))
            v = "true" if v is True else "false" if v is False else str(v)
            return quote(v, safe="") if encode else v

        return _REFERENCE_RE.sub(text, value)
    if isinstance(value, dict):
        return {k: _resolve(v, done, encode) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, done, encode) for v in value]
    return value


def _sub_result(
    ref: str, status: int, body: Any, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "body": body,
        "httpHeaders": headers or {},
        "httpStatusCode": status,
        "referenceId": ref,
    }


def _counts_as_query(url: str) -> bool:
    path = url.split("?", 1)[0].rstrip("/")
    parts = path.split("/")
    return len(parts) > 4 and (
        parts[4] in ("query", "queryAll") or parts[4:6] == ["composite", "sobjects"]
    )
