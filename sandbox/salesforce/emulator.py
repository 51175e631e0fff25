"""The Salesforce emulator: state, seeding, control routes and change notifications."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..framework import Emulator, WebhookTarget
from . import tooling
from .app import RestApi, event_payload
from .errors import SfError
from .expansion import add_expansion_objects
from .oauth import Session, TokenEndpoint, Tokens
from .permissions import add_permission_objects
from .reconcile import add_reconcile_objects
from .schema import (
    STANDARD_PRICE_BOOK,
    Schema,
    SObject,
    base_schema,
    define_object,
    field_from_spec,
    id18,
    text_field,
)
from .store import Event, Store
from .sync import add_sync_fields
from .values import now

ORG_ID = id18("00D8N0000012RvB")
_WINDOW_MINUTES = 24 * 60
INTEGRATION_USERNAME = "integration@revbridge.local"
DEFAULT_USERS = [
    {"FirstName": "RevBridge", "LastName": "Integration", "Email": "integration@revbridge.local",
     "Username": INTEGRATION_USERNAME, "Alias": "rbint"},
    {"FirstName": "Ada", "LastName": "Admin", "Email": "ada.admin@example.com",
     "Username": "ada.admin@example.com", "Alias": "aadmin"},
    {"FirstName": "Casey", "LastName": "Csm", "Email": "casey.csm@example.com",
     "Username": "casey.csm@example.com", "Alias": "ccsm", "Title": "Customer Success Manager"},
    {"FirstName": "Frank", "LastName": "Former", "Email": "frank.former@example.com",
     "Username": "frank.former@example.com", "Alias": "fformer", "IsActive": False},
]  # fmt: skip
_ERROR_CODES = {
    300: "MULTIPLE_CHOICES",
    400: "MALFORMED_REQUEST",
    401: "INVALID_SESSION_ID",
    403: "REQUEST_LIMIT_EXCEEDED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    415: "UNSUPPORTED_MEDIA_TYPE",
    500: "UNKNOWN_EXCEPTION",
    502: "SERVER_UNAVAILABLE",
    503: "SERVER_UNAVAILABLE",
}


class SalesforceEmulator(Emulator):
    """A stateful Salesforce org behind the REST API, OAuth and a Flow-style webhook callout.

    See the package docstring for the API surface, seed format and webhook payload.
    """

    name = "salesforce"

    def __init__(
        self,
        client_id: str = "revbridge-local",
        client_secret: str = "local-secret",  # noqa: S107
        token_ttl_s: float = 3600,
        daily_api_limit: int = 15000,
        webhook_targets: Iterable[WebhookTarget | str] = (),
        jwt_public_key_pem: str | None = None,
        org_id: str = ORG_ID,
        id_base: int = 1,
        limits: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        #: where record ID sequences start: a long-lived stack starts each run elsewhere, so IDs
        #: never repeat against a Temporal server that remembers one-shot workflow IDs
        self.id_base = id_base
        self.client_id = client_id
        self.client_secret = client_secret
        self.daily_api_limit = daily_api_limit
        #: False: never refuse for the daily allowance (a focused unit test); usage still counts
        self.limits = limits
        self.clock = clock
        self._usage: deque[list[int]] = deque()  # [minute, calls] over the rolling 24 hours
        self.org_id = org_id
        self.tokens = Tokens(org_id, token_ttl_s)
        self.token_endpoint = TokenEndpoint(
            self.tokens,
            client_id,
            client_secret,
            jwt_public_key_pem,
            self._user_by_username,
            lambda: self.integration_user_id,
        )
        self.rest = RestApi(self)
        targets = [WebhookTarget(url=t) if isinstance(t, str) else t for t in webhook_targets]
        super().__init__(targets)  # calls reset_state()

    # --- state -----------------------------------------------------------------------------------

    def reset_state(self) -> None:
        """Back to a fresh org: the base schema (seeded fields dropped), no records but the
        default users, API usage 0. Issued tokens stay valid."""
        self.schema: Schema = base_schema()
        add_sync_fields(self.schema)  # the account sync's Account fields (sync.py)
        add_expansion_objects(self.schema)  # Quote, Expansion_Signal__c (expansion.py)
        add_permission_objects(self.schema)  # PermissionSet & co. (permissions.py)
        add_reconcile_objects(self.schema)  # Billing_Exception__c (reconcile.py)
        self.store = Store(self.schema, itertools.count(getattr(self, "id_base", 1)))
        self._usage.clear()
        self.rest.cursors.clear()
        user = self.schema.get("User")
        assert user is not None
        ids = [self.store.create(user, u, user_id="", seeding=True) for u in DEFAULT_USERS]
        self.integration_user_id = ids[0]
        for rid in ids:  # the users were created by, and belong to, the integration user
            rec = self.store.tables["User"][rid]
            rec["CreatedById"] = rec["LastModifiedById"] = ids[0]
        self.standard_pricebook_id = self._seed_standard_pricebook()

    def _seed_standard_pricebook(self) -> str:
        """Every org with products has one standard price book (IsStandard is read-only)."""
        book = self._sobject("Pricebook2")
        rid = self.store.create(
            book,
            {"Name": STANDARD_PRICE_BOOK, "IsActive": True},
            user_id=self.integration_user_id,
            seeding=True,
        )
        self.store.tables["Pricebook2"][rid]["IsStandard"] = True
        return rid

    # --- the daily API allowance (a rolling 24 hours, as Salesforce counts it) --------------------

    @property
    def api_used(self) -> int:
        """API requests in the last 24 hours (what ``Sforce-Limit-Info`` reports)."""
        minute = int(self.clock() // 60)
        while self._usage and self._usage[0][0] <= minute - _WINDOW_MINUTES:
            self._usage.popleft()
        return sum(n for _, n in self._usage)

    @api_used.setter
    def api_used(self, used: int) -> None:
        """Set the window's count (as if ``used`` calls were made just now)."""
        self._usage.clear()
        if used:
            self._usage.append([int(self.clock() // 60), int(used)])

    def allowance_spent(self) -> bool:
        return self.limits and self.api_used >= self.daily_api_limit

    def spend_api_call(self) -> None:
        minute = int(self.clock() // 60)
        if self._usage and self._usage[-1][0] == minute:
            self._usage[-1][1] += 1
        else:
            self._usage.append([minute, 1])

    def usage_header(self) -> str:
        return f"api-usage={self.api_used}/{self.daily_api_limit}"

    def vendor_routes(self) -> list[BaseRoute]:
        methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
        return [
            Route("/services/oauth2/token", self.token_endpoint.handle, methods=["POST"]),
            Route("/services/data", self.rest.versions, methods=["GET"]),
            Route("/services/data/{rest:path}", self.rest.dispatch, methods=methods),
            Route("/_sandbox/salesforce/expire_tokens", self._expire_tokens, methods=["POST"]),
            Route("/_sandbox/salesforce/api_usage", self._api_usage, methods=["GET", "POST"]),
            Route("/_sandbox/salesforce/org", self._org, methods=["POST"]),
            Route("/_sandbox/salesforce/flows", self._flows, methods=["POST"]),
            Route("/_sandbox/salesforce/records/{sobject}", self._records, methods=["GET"]),
        ]

    def error_response(self, status: int, message: str) -> Response:
        code = _ERROR_CODES.get(status, "UNKNOWN_EXCEPTION")
        headers = {"Sforce-Limit-Info": self.usage_header()}
        return JSONResponse(
            [{"message": message, "errorCode": code}], status_code=status, headers=headers
        )

    # --- helpers for tests and the demo (in-process) ---------------------------------------------

    def records(self, sobject: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        """A snapshot of an object's records as the API writes them (no ``attributes``)."""
        with self.lock:
            sobj = self._sobject(sobject)
            out = []
            for rec in self.store.table(sobj).values():
                if include_deleted or not rec["IsDeleted"]:
                    row = self.store.to_api(sobj, rec, "62.0")
                    row.pop("attributes")
                    out.append(row)
            return out

    def get_record(self, record_id: str) -> dict[str, Any] | None:
        with self.lock:
            hit = self.store.get_any(record_id)
            if hit is None:
                return None
            row = self.store.to_api(hit[0], hit[1], "62.0")
            row.pop("attributes")
            return row

    def issue_token(self, user_id: str | None = None) -> Session:
        """A valid access token without the HTTP round trip."""
        with self.lock:
            return self.tokens.issue(user_id or self.integration_user_id)

    def expire_all_tokens(self) -> int:
        """Expire every issued token: the next REST call answers 401 INVALID_SESSION_ID."""
        with self.lock:
            return self.tokens.expire_all()

    def set_api_usage(self, used: int) -> None:
        with self.lock:
            self.api_used = used

    def seed(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Load a scenario (all or nothing)::

            {"objects": [{"name": "Foo__c", "label": "Foo", "fields": [<field spec>...]}],
             "fields": {"Account": [{"name": "Legacy_Id__c", "type": "string",
                                     "externalId": true, "unique": false}]},
             "records": {"Account": [{"Ref": "acme", "Name": "Acme"}],
                         "Contact": [{"LastName": "Lee", "AccountId": "@acme"}]}}

        A record's ``"Ref"`` names it; any string value ``"@<ref>"`` later in the seed is
        replaced by that record's ID. Seeded records may set audit fields (``CreatedDate``...)
        and fire no webhooks. Returns ``{"ids": {"Account": [...]}, "refs": {"acme": "001..."},
        "fields": ["Account.Legacy_Id__c", ...], "objects": ["Foo__c"]}``.
        """
        with self.lock:
            out: dict[str, Any] = {"ids": {}, "refs": {}, "fields": [], "objects": []}
            for spec in data.get("objects", ()):
                out["objects"].append(self.add_object(spec).name)
            for obj_name, specs in (data.get("fields") or {}).items():
                for spec in specs:
                    out["fields"].append(f"{obj_name}.{self.add_field(obj_name, spec)}")
            refs: dict[str, str] = out["refs"]
            try:
                with self.store.atomic():
                    for obj_name, rows in (data.get("records") or {}).items():
                        sobj = self._sobject(obj_name)
                        for row in rows:
                            values = {k: _deref(v, refs) for k, v in row.items() if k != "Ref"}
                            rid = self.store.create(
                                sobj, values, user_id=self.integration_user_id, seeding=True
                            )
                            out["ids"].setdefault(sobj.name, []).append(rid)
                            if "Ref" in row:
                                refs[str(row["Ref"])] = rid
            except SfError as exc:
                raise ValueError(f"seed failed: {exc.code}: {exc.message}") from exc
            return out

    def configure_org(
        self,
        drop_fields: Iterable[str] = (),
        drop_objects: Iterable[str] = (),
        access: Mapping[str, Mapping[str, bool]] | None = None,
        picklists: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        """Make the org less ready than the base one, as a real org before setup is: custom
        fields (``"Case.Billing_Context__c"``) or objects that were never deployed, or that the
        integration user cannot see (both are absent from describe and SOQL), and object
        permissions it lacks (``{"Case": {"create": False, "edit": False}}``), and picklists an
        admin restricted to their own values (``{"Account.Churn_Level__c": ["Low", "High"]}``;
        custom picklists only: Salesforce does not let an admin restrict a standard one).
        ``reset`` undoes it."""
        with self.lock:
            for path in drop_fields:
                obj_name, _, field_name = path.partition(".")
                sobj = self._sobject(obj_name)
                f = sobj.field(field_name)
                if f is None:
                    raise ValueError(f"unknown field {path}")
                del sobj.fields[f.name.lower()]
                for parent in f.reference_to:
                    target = self.schema.get(parent)
                    if target is not None:
                        target.children = {
                            k: c
                            for k, c in target.children.items()
                            if not (c.child == sobj.name and c.field == f.name)
                        }
            for name in drop_objects:
                sobj = self._sobject(name)
                del self.schema.objects[sobj.name.lower()]
                for other in self.schema.objects.values():
                    other.children = {
                        k: c for k, c in other.children.items() if c.child != sobj.name
                    }
            for name, perms in (access or {}).items():
                sobj = self._sobject(name)
                sobj.createable = bool(perms.get("create", sobj.createable))
                sobj.updateable = bool(perms.get("edit", sobj.updateable))
            for path, values in (picklists or {}).items():
                obj_name, _, field_name = path.partition(".")
                f = self._sobject(obj_name).field(field_name)
                if f is None or f.type not in ("picklist", "multipicklist"):
                    raise ValueError(f"unknown picklist {path}")
                if not f.custom:
                    raise ValueError(f"{path}: a standard picklist cannot be restricted")
                f.picklist, f.restricted = tuple(values), True

    def add_field(self, sobject: str, spec: Mapping[str, Any]) -> str:
        """Add a custom field (see :func:`schema.field_from_spec`); returns its name."""
        with self.lock:
            sobj = self._sobject(sobject)
            f = field_from_spec(spec)
            if f.type == "reference" and not all(self.schema.get(t) for t in f.reference_to):
                raise ValueError(f"{f.name}: unknown referenceTo {f.reference_to}")
            self.schema.add_field(sobj, f)
            for rec in self.store.table(sobj).values():
                rec.setdefault(
                    f.name,
                    f.default
                    if f.default is not None
                    else (False if f.type == "boolean" else None),
                )
            return f.name

    def add_object(self, spec: Mapping[str, Any]) -> SObject:
        """Add a custom object ``{"name": "Foo__c", "label"?, "labelPlural"?, "fields": [...]}``
        with the system fields and a ``Name`` text field (unless the spec defines one)."""
        with self.lock:
            name = spec["name"]
            if self.schema.get(name):
                raise ValueError(f"object {name} already exists")
            label = spec.get("label", name.removesuffix("__c").replace("_", " "))
            fields = [field_from_spec(s) for s in spec.get("fields", ())]
            if not any(f.name == "Name" for f in fields):
                fields.insert(0, text_field("Name", 80, label=f"{label} Name"))
            prefix = self.schema.next_custom_prefix()
            return define_object(
                self.schema, name, label, spec.get("labelPlural", label + "s"), prefix, fields
            )

    def _sobject(self, name: str) -> SObject:
        sobj = self.schema.get(name)
        if sobj is None:
            raise ValueError(f"unknown sObject {name}")
        return sobj

    def _user_by_username(self, username: str) -> str | None:
        with self.lock:
            for rec in self.store.table(self._sobject("User")).values():
                if (rec["Username"] or "").lower() == username.lower() and rec["IsActive"]:
                    return rec["Id"]
        return None

    # --- change notifications --------------------------------------------------------------------

    async def emit_events(self, events: list[Event]) -> None:
        """POST one Flow-HTTP-callout-style JSON body per event to every webhook target."""
        for event in events:
            record = self.get_record(event.record_id)
            if record is None:
                continue
            event_id = str(uuid.uuid4())
            payload = event_payload(event, record, self.org_id, event_id, now())
            await self.emit_webhook(json.dumps(payload).encode(), event_id=event_id)

    # --- control routes --------------------------------------------------------------------------

    async def _expire_tokens(self, request: Request) -> Response:
        return JSONResponse({"expired": self.expire_all_tokens()})

    async def _api_usage(self, request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            self.set_api_usage(int(body.get("used", 0)))
        return JSONResponse({"used": self.api_used, "max": self.daily_api_limit})

    async def _org(self, request: Request) -> Response:
        body = await request.json()
        if body.get("fresh"):  # "strict": field-level security enforced (permissions.py)
            tooling.fresh_org(self, strict=bool(body.get("strict")))
        try:
            self.configure_org(
                body.get("drop_fields", ()),
                body.get("drop_objects", ()),
                body.get("access"),
                body.get("picklists"),
            )
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True})

    async def _flows(self, request: Request) -> Response:
        """Activate or deactivate the account-change Flow (sandbox/salesforce/sync.py)."""
        body = await request.json()
        with self.lock:
            self.store.account_flow = bool(body.get("account_changed", False))
        return JSONResponse({"account_changed": self.store.account_flow})

    async def _records(self, request: Request) -> Response:
        include = request.query_params.get("include_deleted", "").lower() == "true"
        try:
            rows = self.records(request.path_params["sobject"], include_deleted=include)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse({"records": rows})


def _deref(value: Any, refs: Mapping[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("@") and value[1:] in refs:
        return refs[value[1:]]
    return value
