"""Object store: ids, rendering (hiding internal ``_`` fields), ``expand``, lists and events."""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import StripeError, no_such
from .forms import as_int, as_list

_ALNUM = string.ascii_letters + string.digits

#: the object types Stripe's Search API covers (through the emulator's routes)
SEARCHABLE = {"customer", "invoice", "price", "product", "subscription"}

#: object type -> the noun Stripe uses in "No such ..." messages
NOUNS = {
    "customer": "customer",
    "subscription": "subscription",
    "subscription_item": "subscription item",
    "invoice": "invoice",
    "invoiceitem": "invoiceitem",
    "payment_intent": "payment_intent",
    "payment_method": "PaymentMethod",
    "price": "price",
    "product": "product",
    "coupon": "coupon",
    "discount": "discount",
    "credit_note": "credit note",
    "customer_balance_transaction": "customer balance transaction",
    "event": "event",
    "invoice_payment": "invoice payment",
    "billing.meter": "billing meter",
}


def clean(value: Any) -> Any:
    """A deep copy without internal (``_``-prefixed) keys."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Stripe's ``previous_attributes``: old values of what changed (one level into plain hashes)."""
    out: dict[str, Any] = {}
    for key, old in before.items():
        new = after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and "object" not in old:
            sub = {k: old.get(k) for k in set(old) | set(new) if old.get(k) != new.get(k)}
            out[key] = sub
        else:
            out[key] = old
    return out


class Store:
    def __init__(self, clock: Callable[[], float], api_version: str) -> None:
        self.clock = clock
        self.api_version = api_version
        self.objects: dict[str, dict[str, Any]] = {}
        self.seq = 0
        self.outbox: list[dict[str, Any]] = []
        self.request_ctx: dict[str, Any] = {"id": None, "idempotency_key": None}
        self.webhook_count: Callable[[], int] = lambda: 0
        self.webhook_endpoints: Callable[[], list[dict[str, Any]]] = lambda: []
        self.emit_events = True
        self._rng = random.Random()  # noqa: S311 - ids, not secrets
        #: seconds before a write is seen by ``/search`` (Stripe: "up to a minute")
        self.search_lag_s = 0.0
        #: object id -> [(visible_at, snapshot)]: what the search index holds, oldest first
        self.search_index: dict[str, list[tuple[float, dict[str, Any]]]] = {}

    # --- basics ----------------------------------------------------------------------------------

    def now(self) -> int:
        return int(self.clock())

    def new_id(self, prefix: str, length: int = 24) -> str:
        body = "".join(self._rng.choice(_ALNUM) for _ in range(length))
        return f"{prefix}_{body}"

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        if obj["id"] in self.objects:
            raise StripeError(
                400,
                f"{NOUNS.get(obj['object'], obj['object']).capitalize()} already exists.",
                code="resource_already_exists",
                param="id",
            )
        self.seq += 1
        obj["_seq"] = self.seq
        self.objects[obj["id"]] = obj
        return obj

    def find(self, obj_id: Any, kind: str | None = None) -> dict[str, Any] | None:
        if not isinstance(obj_id, str):
            return None
        obj = self.objects.get(obj_id)
        if obj is None or (kind and obj["object"] != kind):
            return None
        return obj

    def get(
        self, obj_id: Any, kind: str, param: str = "id", *, allow_deleted: bool = False
    ) -> dict[str, Any]:
        obj = self.find(obj_id, kind)
        if obj is None or (obj.get("_deleted") and not allow_deleted):
            raise no_such(NOUNS.get(kind, kind), str(obj_id), param)
        return obj

    def all(self, kind: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """Every object of a kind, newest first."""
        out = [
            o
            for o in self.objects.values()
            if o["object"] == kind and (include_deleted or not o.get("_deleted"))
        ]
        out.sort(key=lambda o: o["_seq"], reverse=True)
        return out

    # --- rendering and expand -----------------------------------------------------------------------

    def render(self, obj: dict[str, Any]) -> dict[str, Any]:
        if obj.get("_deleted"):
            return {"id": obj["id"], "object": obj["object"], "deleted": True}
        out = clean(obj)
        hook = getattr(self, "render_" + obj.get("object", "").replace(".", "_"), None)
        if hook:
            hook(out, obj)
        return out

    def includable(self, obj: dict[str, Any], field: str) -> Any:
        """Fields Stripe only returns when expanded (e.g. ``invoice.payments``); None if unknown."""
        return None

    def expand(self, body: Any, paths: Iterable[Any]) -> Any:
        for path in paths:
            if not isinstance(path, str) or not path:
                raise StripeError(400, "Invalid array", param="expand")
            body = self._expand(body, path.split("."), path)
        return body

    def _expand(self, value: Any, parts: list[str], path: str) -> Any:
        if not parts or value is None:
            return value
        if isinstance(value, list):
            return [self._expand(v, parts, path) for v in value]
        if not isinstance(value, dict):
            raise StripeError(400, f"This property cannot be expanded ({path}).", param="expand")
        head, rest = parts[0], parts[1:]
        if value.get("object") in ("list", "search_result") and head == "data":
            value["data"] = [self._expand(v, rest, path) for v in value["data"]]
            return value
        if head not in value:
            stored = self.find(value.get("id"))
            extra = self.includable(stored, head) if stored else None
            if extra is None:
                raise StripeError(
                    400, f"This property cannot be expanded ({path}).", param="expand"
                )
            value[head] = extra
        value[head] = self._expand(self._resolve(value[head], path), rest, path)
        return value

    def _resolve(self, field: Any, path: str) -> Any:
        if isinstance(field, list):
            return [self._resolve(v, path) for v in field]
        if isinstance(field, str):
            obj = self.find(field)
            if obj is None:
                raise StripeError(
                    400, f"This property cannot be expanded ({path}).", param="expand"
                )
            return self.render(obj)
        return field

    # --- lists ---------------------------------------------------------------------------------------

    def page(
        self,
        items: list[dict[str, Any]],
        params: Mapping[str, Any],
        url: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """One page of ``items`` (already in list order) the way Stripe's cursors cut it."""
        limit = as_int(params, "limit", 10)
        assert limit is not None
        if limit < 1:
            raise StripeError(400, "This value must be greater than or equal to 1.", param="limit")
        if limit > 100:
            raise StripeError(400, "This value must be less than or equal to 100.", param="limit")
        after, before = params.get("starting_after"), params.get("ending_before")
        if after and before:
            raise StripeError(
                400,
                "You may only specify one of these parameters: ending_before, starting_after.",
                param="ending_before",
            )
        pred = predicate or (lambda o: True)
        created = _created_filter(params)
        ok = lambda o: pred(o) and created(o)  # noqa: E731
        ids = [o.get("id") for o in items]
        if after or before:
            cursor, name = (after, "starting_after") if after else (before, "ending_before")
            if cursor not in ids:
                raise no_such("object", str(cursor), name)
            idx = ids.index(cursor)
            if after:
                cands = [o for o in items[idx + 1 :] if ok(o)]
                data = cands[:limit]
            else:
                cands = [o for o in items[:idx] if ok(o)]
                data = cands[-limit:]
        else:
            cands = [o for o in items if ok(o)]
            data = cands[:limit]
        return {
            "object": "list",
            "data": [self.render(o) for o in data],
            "has_more": len(cands) > limit,
            "url": url,
        }

    # --- events --------------------------------------------------------------------------------------

    def event(
        self,
        etype: str,
        obj: dict[str, Any],
        previous: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        if not self.emit_events:
            return None
        data: dict[str, Any] = {"object": self.render(obj)}
        if previous:
            data["previous_attributes"] = dict(previous)
        evt = {
            "id": self.new_id("evt"),
            "object": "event",
            "api_version": self.api_version,
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": self.webhook_count(),
            "request": dict(self.request_ctx),
            "type": etype,
        }
        self.put(evt)
        self.outbox.append(evt)
        self._index(data["object"])
        return evt

    # --- the search index (eventually consistent) -----------------------------------------------

    def _index(self, snapshot: dict[str, Any]) -> None:
        """Queue a written object for the search index: searchable ``search_lag_s`` from now.
        Every write of a searchable object emits an event, so events are the index's feed;
        seeded objects (no events) are searchable at once, like data written long ago."""
        if snapshot.get("object") not in SEARCHABLE or "id" not in snapshot:
            return
        entries = self.search_index.setdefault(snapshot["id"], [])
        entries.append((self.clock() + self.search_lag_s, snapshot))

    def indexed(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The object as the search index sees it now: its latest snapshot that is visible,
        None if the index does not have it yet (created less than ``search_lag_s`` ago)."""
        entries = self.search_index.get(obj["id"])
        if entries is None:
            return self.render(obj)
        now = self.clock()
        visible = [i for i, (at, _) in enumerate(entries) if at <= now]
        if not visible:
            return None
        latest = visible[-1]
        del entries[:latest]  # older snapshots are never seen again
        snapshot = entries[0][1]
        return None if snapshot.get("deleted") else snapshot

    def list_events(self, params: Mapping[str, Any]) -> dict[str, Any]:
        etype = params.get("type")
        types = [t for t in as_list(params, "types") if isinstance(t, str)]
        if etype and types:
            raise StripeError(
                400, "You may only specify one of these parameters: type, types.", param="types"
            )

        def match(evt: dict[str, Any]) -> bool:
            wanted = types or ([etype] if isinstance(etype, str) else [])
            if not wanted:
                return True
            for t in wanted:
                if t.endswith("*") and evt["type"].startswith(t[:-1]):
                    return True
                if evt["type"] == t:
                    return True
            return False

        return self.page(self.all("event"), params, "/v1/events", match)


def _created_filter(params: Mapping[str, Any]) -> Callable[[dict[str, Any]], bool]:
    spec = params.get("created")
    if spec is None or spec == "":
        return lambda o: True
    if isinstance(spec, str):
        exact = as_int(params, "created")
        return lambda o: o.get("created") == exact
    if not isinstance(spec, dict):
        raise StripeError(400, "Invalid created", param="created")
    bounds = {k: as_int(spec, k) for k in ("gt", "gte", "lt", "lte") if k in spec}

    def ok(o: dict[str, Any]) -> bool:
        c = o.get("created") or 0
        return (
            ("gt" not in bounds or c > bounds["gt"])
            and ("gte" not in bounds or c >= bounds["gte"])
            and ("lt" not in bounds or c < bounds["lt"])
            and ("lte" not in bounds or c <= bounds["lte"])
        )

    return ok
