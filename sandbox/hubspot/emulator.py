"""The HubSpot CRM emulator: HTTP routes, auth, rate limits, spec validation and webhook batching.

State lives in :class:`~sandbox.hubspot.store.Store`; this module is the vendor's HTTP surface
(reference ``crm-llm-apis.md`` §2) plus the ``/_sandbox/hubspot`` control routes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..framework import Delivery, Emulator, WebhookTarget
from . import catalog, spec, webhooks
from .admin import PropertyGroups
from .errors import AUTH_MESSAGE, HubSpotError, not_found, rate_limited
from .store import CrmObject, Store
from .values import iso, now_ms

log = logging.getLogger("sandbox.hubspot")

_O = "/crm/v3/objects/{objectType}"
_P = "/crm/v3/properties/{objectType}"
_PL = "/crm/v3/pipelines/{objectType}"
_A = "/crm/v4/objects/{objectType}/{objectId}/associations"
_AB = "/crm/v4/associations/{fromObjectType}/{toObjectType}/batch"

#: (method, path template as in HubSpot's specs, handler name, success status). A 207 replaces the
#: status of batch operations that carry errors. Tests check every row against the OpenAPI specs.
API_ROUTES: tuple[tuple[str, str, str, int], ...] = (
    ("GET", _O, "_list", 200),
    ("POST", _O, "_create", 201),
    ("POST", _O + "/batch/archive", "_batch_archive", 204),
    ("POST", _O + "/batch/create", "_batch_create", 201),
    ("POST", _O + "/batch/read", "_batch_read", 200),
    ("POST", _O + "/batch/update", "_batch_update", 200),
    ("POST", _O + "/batch/upsert", "_batch_upsert", 200),
    ("POST", _O + "/search", "_search", 200),
    ("GET", _O + "/{objectId}", "_get", 200),
    ("PATCH", _O + "/{objectId}", "_update", 200),
    ("DELETE", _O + "/{objectId}", "_archive", 204),
    ("GET", _P, "_properties", 200),
    ("POST", _P, "_property_create_in_group", 201),  # admin.py: its group must exist
    ("GET", _P + "/groups", "_groups", 200),  # admin.py (before {propertyName})
    ("POST", _P + "/groups", "_group_create", 201),
    ("GET", _P + "/groups/{groupName}", "_group_get", 200),
    ("GET", _P + "/{propertyName}", "_property_get", 200),
    ("PATCH", _P + "/{propertyName}", "_property_update", 200),
    ("DELETE", _P + "/{propertyName}", "_property_archive", 204),
    ("GET", _PL, "_pipelines", 200),
    ("GET", _PL + "/{pipelineId}", "_pipeline", 200),
    ("GET", _PL + "/{pipelineId}/stages", "_pipeline_stages", 200),
    ("PUT", _A + "/default/{toObjectType}/{toObjectId}", "_assoc_default", 200),
    ("PUT", _A + "/{toObjectType}/{toObjectId}", "_assoc_create", 201),
    ("GET", _A + "/{toObjectType}", "_assoc_list", 200),
    ("DELETE", _A + "/{toObjectType}/{toObjectId}", "_assoc_delete", 204),
    ("POST", _AB + "/create", "_assoc_batch_create", 201),
    ("POST", _AB + "/associate/default", "_assoc_batch_default", 200),
    ("POST", _AB + "/read", "_assoc_batch_read", 200),
    ("POST", _AB + "/archive", "_assoc_batch_archive", 204),
    ("POST", _AB + "/labels/archive", "_assoc_batch_labels_archive", 204),
)

#: request bodies that are not a JSON object (None: the operation takes no body)
_BODY_SHAPE: dict[str, type | None] = {
    _A + "/{toObjectType}/{toObjectId}": list,
    _A + "/default/{toObjectType}/{toObjectId}": None,
}
WINDOW_S = 10.0
#: CRM search: requests per second per account (HubSpot's docs: 5; an older changelog said 4)
SEARCH_RATE_LIMIT_PER_S = 5
#: how long a write takes to show in CRM search; HubSpot says "a few moments" — a few seconds
SEARCH_LAG_S = 2.0
#: what the sandbox's private-app token was granted (``POST /oauth/v2/private-apps/get/access-token-info``)
DEFAULT_SCOPES = (
    "crm.objects.companies.read",
    "crm.objects.companies.write",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.objects.deals.read",
    "crm.objects.deals.write",
    "crm.objects.line_items.read",
    "crm.objects.products.read",
    "crm.schemas.companies.read",
    "crm.schemas.deals.read",
    "tickets",
)


@dataclass
class _Call:
    params: dict[str, str]
    query: QueryParams
    body: Any
    status: int  # the route's success status

    def multi(self, key: str) -> list[str]:
        """Array query params: repeated keys (the client) or comma-separated (the docs)."""
        return [v for raw in self.query.getlist(key) for v in raw.split(",") if v]

    def flag(self, key: str) -> bool:
        return self.query.get(key, "false").lower() == "true"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _batch(
    results: list[Any], errors: list[dict[str, Any]], status: int, started: str
) -> tuple[int, Any]:
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": started}
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
    body["completedAt"] = iso(now_ms())
    return (207 if errors else status), body


class HubSpotEmulator(PropertyGroups, Emulator):
    """A stateful HubSpot portal (CRM v3 objects, properties, pipelines, v4 associations, webhooks v3).

    ``webhook_subscriptions``: ``None`` subscribes the app to every event; otherwise entries such as
    ``"deal.creation"``, ``"deal.propertyChange"`` or ``"deal.propertyChange:dealstage"``.

    A real portal's limits and lag are on by default: 190 requests per 10 s (a Professional or
    Enterprise private app; Free/Starter is 100) answered with HubSpot's 429 body, CRM search at
    ``search_rate_limit_per_s`` (5/s) and a search index that shows a write ``search_lag_s`` (2 s)
    after it was made (seeded records are indexed at once). ``limits=False`` turns all three off
    for a focused unit test; an explicit argument wins over it.
    """

    name = "hubspot"
    #: events within this window go out in one POST (HubSpot batches up to 100 per request)
    webhook_batch_window_s = 0.1

    def __init__(
        self,
        access_token: str = "pat-local-revbridge",  # noqa: S107 - the sandbox's well-known token
        client_secret: str = "hubspot-local-secret",  # noqa: S107
        rate_limit_per_10s: int | None = None,
        webhook_targets: Iterable[WebhookTarget | str] = (),
        *,
        limits: bool = True,
        daily_limit: int = 1_000_000,
        search_rate_limit_per_s: int | None | bool = True,
        search_lag_s: float | None = None,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        portal_id: int = 62515,
        app_id: int = 1160452,
        ui_user_id: int = 9000001,
        webhook_subscriptions: Iterable[str] | None = None,
        id_base: int = 1001,
        spec_dir: str | Path | None = None,
    ) -> None:
        self.access_token = access_token
        self.client_secret = client_secret
        if rate_limit_per_10s is None:
            rate_limit_per_10s = 190 if limits else 1_000_000
        if search_rate_limit_per_s is True:  # the default: HubSpot's, unless limits are off
            search_rate_limit_per_s = SEARCH_RATE_LIMIT_PER_S if limits else None
        self.rate_limit_per_10s = rate_limit_per_10s
        self.daily_limit = daily_limit
        self.search_rate_limit_per_s: int | None = search_rate_limit_per_s or None
        self.scopes = list(scopes)
        self.portal_id = portal_id
        self.app_id = app_id
        self.ui_user_id = ui_user_id
        self.webhook_subscriptions = (
            None if webhook_subscriptions is None else frozenset(webhook_subscriptions)
        )
        self.spec = spec.load(str(spec_dir or spec.default_spec_dir()))
        # id_base: see SalesforceEmulator (a long-lived stack starts each run's IDs elsewhere)
        self.store = Store(
            sink=self._enqueue_event,
            id_base=id_base,
            portal_id=portal_id,
            search_lag_s=(SEARCH_LAG_S if limits else 0.0)
            if search_lag_s is None
            else search_lag_s,
        )
        self._window: deque[float] = deque()
        self._search_window: deque[float] = deque()
        self._daily_used = 0
        self._pending: list[dict[str, Any]] = []
        #: every webhook event emitted since the last reset, in order (for tests and debugging)
        self.webhook_events: list[dict[str, Any]] = []
        self._event_seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_armed = False
        self._flush_tasks: set[asyncio.Task[Any]] = set()
        self._routes = [
            (
                method,
                re.compile("^" + re.sub(r"\{[^}]+\}", "([^/]+)", template) + "$"),
                template,
                handler,
                status,
            )
            for method, template, handler, status in API_ROUTES
        ]
        super().__init__([WebhookTarget(t) if isinstance(t, str) else t for t in webhook_targets])

    # --- framework hooks -------------------------------------------------------------------------

    def reset_state(self) -> None:
        with self.lock:
            self.store.reset()
            self._window.clear()
            self._search_window.clear()
            self._daily_used = 0
            self._pending.clear()
            self._flush_armed = False
            self.webhook_events.clear()

    def error_response(self, status: int, message: str) -> Response:
        if status == 429:
            err = rate_limited("TEN_SECONDLY_ROLLING", self.portal_id)
        elif status == 401:
            err = HubSpotError(401, AUTH_MESSAGE)
        else:
            err = HubSpotError(status, message)
        resp = JSONResponse(err.body(), status_code=status)
        resp.headers.update(self._rate_headers(remaining=0 if status == 429 else None))
        return resp

    def vendor_routes(self) -> list[BaseRoute]:
        base = "/_sandbox/hubspot"
        return [
            Route(base + "/objects/{otype}", self._ui_create_route, methods=["POST"]),
            Route(
                base + "/objects/{otype}/{oid}/ui_update", self._ui_update_route, methods=["POST"]
            ),
            Route(base + "/objects/{otype}/{oid}", self._ui_archive_route, methods=["DELETE"]),
            Route(base + "/webhooks/flush", self._flush_route, methods=["POST"]),
            Route(base + "/webhooks/events", self._events_route, methods=["GET"]),
            Route(
                "/oauth/v2/private-apps/get/access-token-info",
                self._token_info_route,
                methods=["POST"],
            ),
            Route(
                "/{path:path}", self._dispatch, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
            ),
        ]

    # --- seeding ---------------------------------------------------------------------------------

    def seed(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Load a scenario without emitting webhooks. Format::

            {"properties": {"companies": [{"name", "label", "type", "fieldType", "groupName", ...}]},
             "objects": {"companies": [{"ref": "acme", "properties": {...}, "associations": [...]}]},
             "associations": [{"from": "acme", "to": {"type": "contacts", "ref": "bob"},
                               "types": [{"associationCategory", "associationTypeId"}]}]}

        An association end is a ref string, ``{"ref"}``, ``{"type", "id"}`` or ``{"type", "index"}``;
        without ``types`` the default association is made. Returns ids per type and refs.
        """
        with self.lock:
            out: dict[str, Any] = {"properties": [], "objects": {}, "refs": {}, "associations": 0}
            for type_name, definitions in (data.get("properties") or {}).items():
                otype = self.store.otype(type_name)
                for definition in definitions:
                    if definition.get("name") not in self.store.properties[otype.name]:
                        self.store.property_create(otype.name, definition)
                        out["properties"].append(f"{otype.name}.{definition['name']}")
            for type_name, items in (data.get("objects") or {}).items():
                otype = self.store.otype(type_name)
                ids = out["objects"].setdefault(otype.name, [])
                for item in items:
                    obj = self.store.create(otype.name, dict(item), source=None)
                    ids.append(obj.id)
                    if item.get("ref"):
                        out["refs"][item["ref"]] = {"type": otype.name, "id": obj.id}
            for a in data.get("associations") or []:
                (ft, fid), (tt, tid) = (self._seed_end(a[k], out) for k in ("from", "to"))
                self.store.associate(ft, fid, tt, tid, a.get("types"), source=None)
                out["associations"] += 1
            return out

    def _seed_end(self, end: Any, out: dict[str, Any]) -> tuple[str, str]:
        if isinstance(end, str):
            end = {"ref": end}
        if "ref" in end:
            ref = out["refs"][end["ref"]]
            return ref["type"], ref["id"]
        type_name = self.store.otype(end["type"]).name
        if "index" in end:
            return type_name, out["objects"][type_name][end["index"]]
        return type_name, str(end["id"])

    # --- "HubSpot UI" changes (webhooks with changeSource CRM_UI) ------------------------------

    def ui_create(
        self,
        object_type: str,
        properties: Mapping[str, Any],
        associations: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A record a person creates in HubSpot, optionally "associated with" existing records
        (v3 create shape: ``[{"to": {"id"}, "types": [...]}]``), as the UI's create form does;
        the ``*.creation`` webhook says ``CRM_UI``."""
        with self.lock:
            otype = self.store.otype(object_type)
            body: dict[str, Any] = {"properties": dict(properties)}
            if associations:
                body["associations"] = associations
            return self.store.render(self.store.create(otype.name, body, "CRM_UI"))

    def ui_update(
        self, object_type: str, object_id: str, properties: Mapping[str, Any]
    ) -> dict[str, Any]:
        with self.lock:
            otype = self.store.otype(object_type)
            return self.store.render(
                self.store.update(otype.name, object_id, dict(properties), "CRM_UI")
            )

    def ui_archive(self, object_type: str, object_id: str) -> None:
        with self.lock:
            self.store.archive(self.store.otype(object_type).name, object_id, "CRM_UI")

    async def _control(
        self, request: Request, action: Callable[[Any], Any], status: int
    ) -> Response:
        self._loop = asyncio.get_running_loop()
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            return JSONResponse(HubSpotError(400, f"malformed JSON: {exc}").body(), status_code=400)
        try:
            result = action(body)
        except HubSpotError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        return (
            Response(status_code=204)
            if result is None
            else JSONResponse(result, status_code=status)
        )

    async def _ui_create_route(self, request: Request) -> Response:
        otype = request.path_params["otype"]
        return await self._control(
            request,
            lambda b: self.ui_create(otype, b.get("properties", {}), b.get("associations")),
            201,
        )

    async def _ui_update_route(self, request: Request) -> Response:
        otype, oid = request.path_params["otype"], request.path_params["oid"]
        return await self._control(
            request, lambda b: self.ui_update(otype, oid, b.get("properties", {})), 200
        )

    async def _ui_archive_route(self, request: Request) -> Response:
        otype, oid = request.path_params["otype"], request.path_params["oid"]
        return await self._control(request, lambda b: self.ui_archive(otype, oid), 204)

    async def _flush_route(self, request: Request) -> Response:
        self._loop = asyncio.get_running_loop()
        deliveries = await self._flush_and_wait(True, 10.0)
        return JSONResponse({"deliveries": [d.__dict__ for d in deliveries]})

    async def _events_route(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse({"events": list(self.webhook_events)})

    @property
    def search_lag_s(self) -> float:
        return self.store.search_lag_s

    @search_lag_s.setter
    def search_lag_s(self, value: float) -> None:
        self.store.search_lag_s = value

    async def _token_info_route(self, request: Request) -> Response:
        """A private app's token introspection: who issued it and the scopes it was granted.
        The token is named in the body (``tokenKey``), not in an Authorization header."""
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        key = body.get("tokenKey") if isinstance(body, dict) else None
        if not key:
            err = HubSpotError(400, "tokenKey is required", "VALIDATION_ERROR")
            return JSONResponse(err.body(), status_code=400)
        if key != self.access_token:
            return JSONResponse(HubSpotError(401, AUTH_MESSAGE).body(), status_code=401)
        return JSONResponse(
            {
                "userId": self.ui_user_id,
                "hubId": self.portal_id,
                "appId": self.app_id,
                "scopes": sorted(self.scopes),
            }
        )

    # --- webhooks --------------------------------------------------------------------------------

    def _enqueue_event(self, raw: dict[str, Any]) -> None:
        """Store sink (called under the lock): filter by subscription, number, buffer, arm a flush."""
        sub_type = webhooks.subscription_type(raw["type"], raw["kind"])
        if not webhooks.subscribed(sub_type, raw.get("name"), self.webhook_subscriptions):
            return
        raw["sourceId"] = (
            str(self.app_id) if raw["source"] == "API" else f"userId:{self.ui_user_id}"
        )
        self._event_seq += 1
        event = webhooks.event_payload(
            raw, 3_800_000_000 + self._event_seq, self.portal_id, self.app_id
        )
        self._pending.append(event)
        self.webhook_events.append(event)
        self._arm_flush()

    def _arm_flush(self) -> None:
        loop = self._loop
        if self._flush_armed or loop is None or not loop.is_running():
            return  # no server (yet): the events wait for the next flush

        def arm() -> None:
            loop.call_later(self.webhook_batch_window_s, self._start_flush)

        if _running_loop() is loop:
            arm()
        else:
            try:
                loop.call_soon_threadsafe(arm)
            except RuntimeError:  # the server's loop closed meanwhile
                return
        self._flush_armed = True

    def _start_flush(self) -> None:
        task = asyncio.get_running_loop().create_task(self._flush_pending())
        self._flush_tasks.add(task)
        task.add_done_callback(self._flush_tasks.discard)

    async def _flush_pending(self) -> list[Delivery]:
        with self.lock:
            events, self._pending = self._pending, []
            self._flush_armed = False
        deliveries: list[Delivery] = []
        for i in range(0, len(events), 100):
            chunk = events[i : i + 100]
            body = json.dumps(chunk, separators=(",", ":")).encode()
            deliveries += await self.emit_webhook(
                body,
                headers={
                    "X-HubSpot-Signature": webhooks.signature_v1(self.client_secret, body),
                    "X-HubSpot-Signature-Version": "v1",
                },
                event_id=",".join(str(e["eventId"]) for e in chunk),
                sign=webhooks.signer(self.client_secret),
            )
        return deliveries

    async def _flush_and_wait(self, wait: bool, wait_s: float) -> list[Delivery]:
        deliveries = await self._flush_pending()
        if wait:
            await self.wait_for_deliveries(wait_s)
        return deliveries

    def flush_webhooks(self, wait: bool = True, timeout: float = 10.0) -> list[Delivery]:
        """Send buffered events now (from any thread but the server's); with ``wait``, block until
        every delivery in flight has finished (delivered or out of retries)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return []
        if _running_loop() is loop:
            raise RuntimeError(
                "flush_webhooks() blocks; in the server loop use `await aflush_webhooks()`"
            )
        future = asyncio.run_coroutine_threadsafe(self._flush_and_wait(wait, timeout), loop)
        return future.result(timeout + 5)

    async def aflush_webhooks(self, wait: bool = True, wait_s: float = 10.0) -> list[Delivery]:
        """:meth:`flush_webhooks` for async callers (any event loop)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return []
        if _running_loop() is loop:
            return await self._flush_and_wait(wait, wait_s)
        future = asyncio.run_coroutine_threadsafe(self._flush_and_wait(wait, wait_s), loop)
        return await asyncio.wrap_future(future)

    # --- the vendor API --------------------------------------------------------------------------

    def _rate_headers(self, remaining: int | None = None) -> dict[str, str]:
        if remaining is None:
            remaining = max(self.rate_limit_per_10s - len(self._window), 0)
        return {
            "X-HubSpot-RateLimit-Max": str(self.rate_limit_per_10s),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(WINDOW_S * 1000)),
            "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(self.daily_limit - self._daily_used, 0)),
        }

    def _admit(self, is_search: bool) -> tuple[HubSpotError, float] | None:
        """Count the request against the rolling windows, or say which limit it hit and when to retry."""
        now = time.monotonic()
        with self.lock:
            while self._window and self._window[0] <= now - WINDOW_S:
                self._window.popleft()
            while self._search_window and self._search_window[0] <= now - 1.0:
                self._search_window.popleft()
            if self._daily_used >= self.daily_limit:
                return rate_limited("DAILY", self.portal_id), 3600.0
            if len(self._window) >= self.rate_limit_per_10s:
                return rate_limited("TEN_SECONDLY_ROLLING", self.portal_id), self._window[
                    0
                ] + WINDOW_S - now
            if is_search and self.search_rate_limit_per_s is not None:
                if len(self._search_window) >= self.search_rate_limit_per_s:
                    return rate_limited("SECONDLY", self.portal_id), self._search_window[
                        0
                    ] + 1.0 - now
                self._search_window.append(now)
            self._window.append(now)
            self._daily_used += 1
            return None

    def _match(
        self, method: str, path: str
    ) -> tuple[tuple[str, str, int, re.Match[str]] | None, bool]:
        """``((template, handler, status, match) | None, path_exists)``."""
        exists = False
        for m, rx, template, handler, status in self._routes:
            found = rx.match(path)
            if found:
                exists = True
                if m == method:
                    return (template, handler, status, found), True
        return None, exists

    async def _dispatch(self, request: Request) -> Response:
        self._loop = asyncio.get_running_loop()
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.access_token:
            return JSONResponse(HubSpotError(401, AUTH_MESSAGE).body(), status_code=401)
        raw_path = (request.scope.get("raw_path") or request.url.path.encode()).split(b"?", 1)[0]
        path = raw_path.decode("latin-1")
        rejected = self._admit(is_search=request.method == "POST" and path.endswith("/search"))
        if rejected:
            err, retry_after = rejected
            resp = JSONResponse(err.body(), status_code=429)
            resp.headers.update(self._rate_headers(remaining=0))
            resp.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
            return resp
        try:
            status, payload = await self._handle(request, path)
        except HubSpotError as exc:
            status, payload = exc.status, exc.body()
        except Exception:  # a bug in the emulator; answer like HubSpot's 500 and log it
            log.exception("hubspot emulator error on %s %s", request.method, path)
            status, payload = 500, HubSpotError(500, "internal error").body()
        resp = (
            Response(status_code=204)
            if payload is None
            else JSONResponse(payload, status_code=status)
        )
        resp.headers.update(self._rate_headers())
        resp.headers["X-HubSpot-Correlation-Id"] = str(uuid.uuid4())
        return resp

    async def _handle(self, request: Request, path: str) -> tuple[int, Any]:
        route, exists = self._match(request.method, path)
        if route is None:
            if exists:
                raise HubSpotError(405, f"Method {request.method} is not allowed on {path}")
            raise HubSpotError(404, f"No route for {request.method} {path}", "OBJECT_NOT_FOUND")
        template, handler, status, found = route
        names = re.findall(r"\{([^}]+)\}", template)
        params = {k: unquote(v) for k, v in zip(names, found.groups(), strict=True)}
        body: Any = None
        if request.method in ("POST", "PUT", "PATCH"):
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError as exc:
                raise HubSpotError(
                    400, f"Invalid input JSON on line {exc.lineno}, column {exc.colno}: {exc.msg}"
                ) from None
            problems = self.spec.validate(request.method, template, body) if self.spec else []
            if problems:
                raise HubSpotError(
                    400,
                    "Invalid input JSON: " + "; ".join(problems),
                    errors=[{"message": p, "code": "INVALID_INPUT"} for p in problems],
                )
            shape = _BODY_SHAPE.get(template, dict)
            if shape is not None and not isinstance(body, shape):
                raise HubSpotError(
                    400, f"Request body must be a JSON {'array' if shape is list else 'object'}"
                )
        call = _Call(params, request.query_params, body, status)
        with self.lock:
            return getattr(self, handler)(call)

    # --- objects ---------------------------------------------------------------------------------

    def _type(self, call: _Call, key: str = "objectType") -> str:
        return self.store.otype(call.params[key]).name

    def _names(self, type_name: str, requested: list[str] | None) -> list[str]:
        return requested or list(catalog.OBJECT_TYPES[type_name].default_properties)

    def _list(self, call: _Call) -> tuple[int, Any]:
        type_name = self._type(call)
        try:
            limit = min(max(int(call.query.get("limit", "10")), 1), 100)
        except ValueError:
            raise HubSpotError(400, "limit must be an integer") from None
        page, next_after = self.store.list_page(
            type_name, call.query.get("after"), limit, call.flag("archived")
        )
        names = self._names(type_name, call.multi("properties"))
        body: dict[str, Any] = {
            "results": [self.store.render(o, names, call.multi("associations")) for o in page]
        }
        if next_after:
            body["paging"] = {"next": {"after": next_after, "link": f"?after={next_after}"}}
        return 200, body

    def _get(self, call: _Call) -> tuple[int, Any]:
        type_name = self._type(call)
        if call.flag("archived"):
            obj: CrmObject | None = self.store.objects[type_name].get(call.params["objectId"])
            if obj is None or not obj.archived:
                raise not_found(call.params["objectId"])
        else:
            obj = self.store.get(type_name, call.params["objectId"], call.query.get("idProperty"))
        names = self._names(type_name, call.multi("properties"))
        return 200, self.store.render(obj, names, call.multi("associations"))

    def _create(self, call: _Call) -> tuple[int, Any]:
        type_name = self._type(call)
        return call.status, self.store.render(self.store.create(type_name, call.body, "API"))

    def _update(self, call: _Call) -> tuple[int, Any]:
        type_name = self._type(call)
        obj = self.store.update(
            type_name,
            call.params["objectId"],
            call.body.get("properties", {}),
            "API",
            call.query.get("idProperty"),
        )
        return 200, self.store.render(obj)

    def _archive(self, call: _Call) -> tuple[int, Any]:
        self.store.archive(self._type(call), call.params["objectId"], "API")
        return 204, None

    def _batch_create(self, call: _Call) -> tuple[int, Any]:
        started = iso(now_ms())
        return _batch(
            *self.store.batch_create(self._type(call), call.body, "API"), call.status, started
        )

    def _batch_update(self, call: _Call) -> tuple[int, Any]:
        started = iso(now_ms())
        return _batch(
            *self.store.batch_update(self._type(call), call.body, "API"), call.status, started
        )

    def _batch_upsert(self, call: _Call) -> tuple[int, Any]:
        started = iso(now_ms())
        return _batch(
            *self.store.batch_upsert(self._type(call), call.body, "API"), call.status, started
        )

    def _batch_read(self, call: _Call) -> tuple[int, Any]:
        started = iso(now_ms())
        type_name = self._type(call)
        names = self._names(type_name, call.body.get("properties"))
        return _batch(*self.store.batch_read(type_name, call.body, names), call.status, started)

    def _batch_archive(self, call: _Call) -> tuple[int, Any]:
        self.store.batch_archive(self._type(call), call.body, "API")
        return 204, None

    def _search(self, call: _Call) -> tuple[int, Any]:
        type_name = self._type(call)
        total, page, next_after = self.store.search(type_name, call.body)
        names = self._names(type_name, call.body.get("properties"))
        body: dict[str, Any] = {
            "total": total,
            "results": [self.store.render(o, names) for o in page],
        }
        if next_after:
            body["paging"] = {"next": {"after": next_after, "link": f"?after={next_after}"}}
        return 200, body

    # --- properties and pipelines ----------------------------------------------------------------

    def _properties(self, call: _Call) -> tuple[int, Any]:
        return 200, {"results": self.store.property_list(self._type(call), call.flag("archived"))}

    def _property_create(self, call: _Call) -> tuple[int, Any]:
        return 201, self.store.property_create(self._type(call), call.body)

    def _property_get(self, call: _Call) -> tuple[int, Any]:
        return 200, self.store.property_get(self._type(call), call.params["propertyName"])

    def _property_update(self, call: _Call) -> tuple[int, Any]:
        return 200, self.store.property_update(
            self._type(call), call.params["propertyName"], call.body
        )

    def _property_archive(self, call: _Call) -> tuple[int, Any]:
        self.store.property_archive(self._type(call), call.params["propertyName"])
        return 204, None

    def _pipelines(self, call: _Call) -> tuple[int, Any]:
        return 200, {"results": catalog.PIPELINES.get(self._type(call), [])}

    def _pipeline_by_id(self, call: _Call) -> dict[str, Any]:
        for pipeline in catalog.PIPELINES.get(self._type(call), []):
            if pipeline["id"] == call.params["pipelineId"]:
                return pipeline
        raise HubSpotError(
            404, f"Pipeline {call.params['pipelineId']} not found", "OBJECT_NOT_FOUND"
        )

    def _pipeline(self, call: _Call) -> tuple[int, Any]:
        return 200, self._pipeline_by_id(call)

    def _pipeline_stages(self, call: _Call) -> tuple[int, Any]:
        return 200, {"results": self._pipeline_by_id(call)["stages"]}

    # --- associations v4 -------------------------------------------------------------------------

    def _pair(self, call: _Call) -> tuple[str, str, str, str]:
        return (
            self._type(call),
            call.params["objectId"],
            self._type(call, "toObjectType"),
            call.params["toObjectId"],
        )

    def _labels_between(
        self, from_type: str, from_id: str, to_type: str, to_id: str
    ) -> dict[str, Any]:
        types = self.store.assoc.get((from_type, from_id), {}).get((to_type, to_id), {})
        return {
            "fromObjectTypeId": catalog.OBJECT_TYPES[from_type].type_id,
            "fromObjectId": int(from_id),
            "toObjectTypeId": catalog.OBJECT_TYPES[to_type].type_id,
            "toObjectId": int(to_id),
            "labels": sorted({label for _, label in types.values() if label}),
        }

    @staticmethod
    def _types_out(types: dict[int, tuple[str, str | None]]) -> list[dict[str, Any]]:
        return [
            {"category": category, "typeId": type_id, "label": label}
            for type_id, (category, label) in sorted(types.items())
        ]

    def _assoc_default(self, call: _Call) -> tuple[int, Any]:
        started = iso(now_ms())
        return _batch(self.store.associate(*self._pair(call), None, "API"), [], 200, started)

    def _assoc_create(self, call: _Call) -> tuple[int, Any]:
        pair = self._pair(call)
        self.store.associate(*pair, call.body, "API")
        return 201, self._labels_between(*pair)

    def _assoc_list(self, call: _Call) -> tuple[int, Any]:
        from_type, from_id = self._type(call), call.params["objectId"]
        to_type = self._type(call, "toObjectType")
        self.store.get(from_type, from_id)
        limit = min(max(int(call.query.get("limit", "500")), 1), 500)
        after = call.query.get("after")
        rows = [
            r
            for r in self.store.associated(from_type, from_id, to_type)
            if not after or int(r[0]) >= int(after)
        ]
        body: dict[str, Any] = {
            "results": [
                {"toObjectId": int(to_id), "associationTypes": self._types_out(types)}
                for to_id, types in rows[:limit]
            ]
        }
        if len(rows) > limit:
            body["paging"] = {"next": {"after": rows[limit][0], "link": f"?after={rows[limit][0]}"}}
        return 200, body

    def _assoc_delete(self, call: _Call) -> tuple[int, Any]:
        self.store.disassociate(*self._pair(call), "API")
        return 204, None

    def _batch_pairs(self, call: _Call) -> tuple[str, str, list[dict[str, Any]]]:
        inputs = call.body.get("inputs")
        if not isinstance(inputs, list) or len(inputs) > 100:
            raise HubSpotError(400, "'inputs' must be a list of at most 100 items")
        return self._type(call, "fromObjectType"), self._type(call, "toObjectType"), inputs

    def _assoc_batch_create(self, call: _Call) -> tuple[int, Any]:
        started = iso(now_ms())
        from_type, to_type, inputs = self._batch_pairs(call)
        results, errors = [], []
        for item in inputs:
            from_id, to_id = str(item["from"]["id"]), str(item["to"]["id"])
            try:
                self.store.associate(from_type, from_id, to_type, to_id, item.get("types"), "API")
            except HubSpotError as exc:
                errors.append({k: v for k, v in exc.body().items() if k != "correlationId"})
                continue
            results.append(self._labels_between(from_type, from_id, to_type, to_id))
        return _batch(results, errors, 201, started)

    def _assoc_batch_default(self, call: _Call) -> tuple[int, Any]:
        started = iso(now_ms())
        from_type, to_type, inputs = self._batch_pairs(call)
        results = []
        for item in inputs:
            results += self.store.associate(
                from_type, str(item["from"]["id"]), to_type, str(item["to"]["id"]), None, "API"
            )
        return _batch(results, [], 200, started)

    def _assoc_batch_read(self, call: _Call) -> tuple[int, Any]:
        started = iso(now_ms())
        from_type, to_type, inputs = self._batch_pairs(call)
        results, errors = [], []
        for item in inputs:
            from_id = str(item.get("id"))
            rows = self.store.associated(from_type, from_id, to_type)
            if not rows:
                errors.append(
                    {
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                        "message": f"No {to_type} are associated with {catalog.OBJECT_TYPES[from_type].singular}"
                        f" {from_id}.",
                        "context": {"fromObjectId": [from_id], "toObjectType": [to_type]},
                        "errors": [],
                    }
                )
                continue
            results.append(
                {
                    "from": {"id": from_id},
                    "to": [
                        {"toObjectId": int(to_id), "associationTypes": self._types_out(types)}
                        for to_id, types in rows
                    ],
                }
            )
        return _batch(results, errors, 200, started)

    def _assoc_batch_archive(self, call: _Call) -> tuple[int, Any]:
        from_type, to_type, inputs = self._batch_pairs(call)
        for item in inputs:
            for to in item.get("to") or []:
                self.store.disassociate(
                    from_type, str(item["from"]["id"]), to_type, str(to["id"]), "API"
                )
        return 204, None

    def _assoc_batch_labels_archive(self, call: _Call) -> tuple[int, Any]:
        from_type, to_type, inputs = self._batch_pairs(call)
        for item in inputs:
            type_ids = {t["associationTypeId"] for t in item.get("types") or []}
            self.store.disassociate(
                from_type, str(item["from"]["id"]), to_type, str(item["to"]["id"]), "API", type_ids
            )
        return 204, None
