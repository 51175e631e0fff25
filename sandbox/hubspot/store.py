"""The emulated portal's state: objects, property definitions, unique indexes and v4 associations.

All methods are synchronous and assume the caller holds the emulator's lock. Writes validate first
and apply after, so a failed request (or a failed non-partial batch) changes nothing. Every change
made on behalf of a ``source`` ("API", "CRM_UI") is reported to ``sink`` for webhooks; ``source=None``
(seeding) reports nothing.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import catalog, search
from .catalog import OBJECT_TYPES, ObjectType
from .errors import HubSpotError, not_found, property_errors
from .values import iso, normalize, now_ms, number

#: properties that dedupe like unique ones without ``hasUniqueValue`` (HubSpot's contact email)
IMPLICIT_UNIQUE = {"contacts": {"email"}}
#: properties whose uniqueness is case-insensitive
CASE_INSENSITIVE_UNIQUE = {"email"}

Sink = Callable[[dict[str, Any]], None]

#: values HubSpot fills in on create when the request leaves them out
_CREATE_DEFAULTS = {
    "deals": {"pipeline": "default"},
    "tickets": {"hs_pipeline": "0", "hs_pipeline_stage": "1"},
    "tasks": {"hs_task_status": "NOT_STARTED"},
}


#: what a line item copies from its product (``hs_product_id``) when the request leaves it out
_PRODUCT_FIELDS = (
    "name",
    "description",
    "hs_sku",
    "price",
    "recurringbillingfrequency",
    "hs_recurring_billing_period",
)


def _line_amount(props: dict[str, str]) -> None:
    """A line item's calculated ``amount`` (net price): quantity × unit price, less the unit
    discount, or less the discount percentage."""
    quantity, price = number(props.get("quantity") or "1"), number(props.get("price") or "0")
    if quantity is None or price is None:
        return
    unit_discount = number(props.get("discount") or "0") or 0.0
    percent = number(props.get("hs_discount_percentage") or "0") or 0.0
    net = quantity * (price - unit_discount) if unit_discount else quantity * price
    net *= 1 - percent / 100 if not unit_discount else 1
    props["amount"] = f"{net:.2f}"


@dataclass
class CrmObject:
    id: str
    type: str
    props: dict[str, str]
    created_ms: int
    updated_ms: int
    archived: bool = False
    archived_ms: int | None = None
    #: what the search index holds for this object (None: not indexed yet), and the newer
    #: version it will hold once ``pending_due_ms`` has passed (the index lags writes)
    indexed: dict[str, str] | None = None
    pending: dict[str, str] | None = None
    pending_due_ms: int = 0

    def searchable_props(self, now: int) -> dict[str, str] | None:
        """The version search sees at ``now``: the pending one once due, else the indexed one."""
        if self.pending is not None and now >= self.pending_due_ms:
            self.indexed, self.pending = self.pending, None
        return self.indexed


@dataclass
class _Plan:
    """A validated write: the values to set, for an existing object or a new one."""

    values: dict[str, str]
    obj: CrmObject | None = None
    new: bool = False
    trace_id: str | None = None
    associations: list[tuple[str, str, list[dict[str, Any]]]] = field(default_factory=list)


class Store:
    def __init__(
        self,
        sink: Sink | None = None,
        id_base: int = 1001,
        *,
        portal_id: int = 62515,
        search_lag_s: float = 0.0,
    ) -> None:
        self.sink = sink
        self.id_base = id_base
        self.portal_id = portal_id
        #: how long a write takes to reach the search index (seeded records are indexed at once:
        #: they stand for a portal's existing data)
        self.search_lag_s = search_lag_s
        self.reset()

    def reset(self) -> None:
        self.properties = catalog.default_properties()
        self.objects: dict[str, dict[str, CrmObject]] = {t: {} for t in OBJECT_TYPES}
        self.where: dict[str, str] = {}  # object id -> type name (ids are unique across types)
        self.assoc: dict[
            tuple[str, str], dict[tuple[str, str], dict[int, tuple[str, str | None]]]
        ] = {}
        self.unique: dict[str, dict[str, dict[str, str]]] = {t: {} for t in OBJECT_TYPES}
        self._next_id = self.id_base
        self._reindex_all()

    # --- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def otype(name: str) -> ObjectType:
        """The object type a path names; 400 as HubSpot words it for an unknown one."""
        otype = catalog.resolve_type(name)
        if otype is None:
            raise HubSpotError(
                400,
                f"Unable to infer object type from: {name}",
                "VALIDATION_ERROR",
                sub_category="INVALID_OBJECT_TYPE",
            )
        return otype

    def _emit(self, source: str | None, **event: Any) -> None:
        if source and self.sink:
            self.sink({"source": source, "occurredAt": now_ms(), **event})

    def unique_names(self, type_name: str) -> set[str]:
        return {n for n, d in self.properties[type_name].items() if d.get("hasUniqueValue")} | (
            IMPLICIT_UNIQUE.get(type_name, set())
        )

    @staticmethod
    def _ukey(name: str, value: str) -> str:
        return value.lower() if name in CASE_INSENSITIVE_UNIQUE else value

    def _reindex_all(self) -> None:
        for type_name in OBJECT_TYPES:
            self._reindex(type_name)

    def _reindex(self, type_name: str) -> None:
        index: dict[str, dict[str, str]] = {n: {} for n in self.unique_names(type_name)}
        for obj in self.objects[type_name].values():
            if not obj.archived:
                for name, by_value in index.items():
                    if obj.props.get(name):
                        by_value[self._ukey(name, obj.props[name])] = obj.id
        self.unique[type_name] = index

    def find(
        self, type_name: str, object_id: str, id_property: str | None = None
    ) -> CrmObject | None:
        if id_property and id_property != "hs_object_id":
            if type_name in catalog.NO_UNIQUE_PROPERTIES:
                # activities have no unique properties, so nothing can be read or written by one
                raise HubSpotError(
                    400,
                    f"Unable to perform read/update/upsert by non-unique "
                    f"{OBJECT_TYPES[type_name].type_id} property {id_property} in portal ID "
                    f"{self.portal_id}",
                    "VALIDATION_ERROR",
                )
            if id_property not in self.unique_names(type_name):
                raise HubSpotError(
                    400,
                    f"{id_property} is not a unique property of {type_name}; idProperty must be one",
                    "VALIDATION_ERROR",
                )
            object_id = self.unique[type_name][id_property].get(
                self._ukey(id_property, object_id), ""
            )
        obj = self.objects[type_name].get(object_id)
        return obj if obj and not obj.archived else None

    def get(self, type_name: str, object_id: str, id_property: str | None = None) -> CrmObject:
        obj = self.find(type_name, object_id, id_property)
        if obj is None:
            raise not_found(object_id)
        return obj

    def definitions(self, type_name: str) -> dict[str, dict[str, Any]]:
        return self.properties[type_name]

    # --- rendering -------------------------------------------------------------------------------

    def render(
        self,
        obj: CrmObject,
        names: Iterable[str] | None = None,
        associations: Iterable[str] = (),
    ) -> dict[str, Any]:
        """``SimplePublicObject``. ``names=None``: every stored value (write responses); else the
        named existing properties (null when unset) plus the three HubSpot always returns."""
        if names is None:
            props: dict[str, str | None] = {k: v for k, v in sorted(obj.props.items()) if v}
        else:
            defs = self.properties[obj.type]
            wanted = [*names, "hs_object_id", "createdate", "lastmodifieddate"]
            props = {n: obj.props.get(n) or None for n in sorted(set(wanted)) if n in defs}
        out: dict[str, Any] = {
            "id": obj.id,
            "properties": props,
            "createdAt": iso(obj.created_ms),
            "updatedAt": iso(obj.updated_ms),
            "archived": obj.archived,
        }
        if obj.archived and obj.archived_ms:
            out["archivedAt"] = iso(obj.archived_ms)
        assoc_out = {}
        for to_name in associations:
            to_type = catalog.resolve_type(to_name)
            if to_type is None:
                continue
            rows = [
                {
                    "id": to_id,
                    "type": catalog.association_type_name(obj.type, to_type.name, type_id),
                }
                for to_id, types in self.associated(obj.type, obj.id, to_type.name)
                for type_id in sorted(types)
                if types[type_id][0] == "HUBSPOT_DEFINED"
            ]
            if rows:
                assoc_out[to_type.assoc_key] = {"results": rows}
        if assoc_out:
            out["associations"] = assoc_out
        return out

    # --- validation ------------------------------------------------------------------------------

    def prepare(self, type_name: str, raw: Any, creating: bool) -> dict[str, str]:
        """Validated, normalised values (``""`` = clear). Raises 400 listing every problem."""
        if not isinstance(raw, dict):
            raise HubSpotError(
                400, "'properties' must be an object of property values", "VALIDATION_ERROR"
            )
        defs = self.properties[type_name]
        values: dict[str, str] = {}
        problems = []
        for name, value in raw.items():
            definition = defs.get(name)
            if definition is None or definition.get("archived"):
                problems.append(
                    {
                        "name": name,
                        "error": "PROPERTY_DOESNT_EXIST",
                        "message": f'Property "{name}" does not exist',
                    }
                )
                continue
            if definition["modificationMetadata"]["readOnlyValue"]:
                continue  # HubSpot ignores writes to calculated properties
            text, problem = normalize(definition, value)
            if problem:
                problems.append(problem)
            else:
                values[name] = text
        if creating:
            for name in OBJECT_TYPES[type_name].required_on_create:
                if not values.get(name):
                    problems.append(
                        {"name": name, "error": "REQUIRED_FIELD", "message": f"{name} is required"}
                    )
        if problems:
            raise property_errors(problems)
        return values

    def _check_unique(
        self,
        type_name: str,
        object_id: str | None,
        values: dict[str, str],
        claimed: dict[tuple[str, str], str],
    ) -> None:
        """409 when a unique value belongs to another object (or to another input of the batch)."""
        otype = OBJECT_TYPES[type_name]
        for name in self.unique_names(type_name):
            value = values.get(name)
            if not value:
                continue
            key = self._ukey(name, value)
            owner = self.unique[type_name].get(name, {}).get(key) or claimed.get((name, key))
            if owner and owner.startswith("input:"):
                raise HubSpotError(
                    400, f"Duplicate {name} value '{value}' in batch input", "VALIDATION_ERROR"
                )
            if owner and owner != object_id:
                if name == "email" and type_name == "contacts":
                    message = f"Contact already exists. Existing ID: {owner}"
                else:
                    message = f"A {otype.singular} with {name} '{value}' already exists. Existing ID: {owner}"
                raise HubSpotError(
                    409,
                    message,
                    "CONFLICT",
                    errors=[{"message": message, "in": name, "code": "CONFLICT"}],
                    context={"existingId": [owner], "propertyName": [name]},
                )
            claimed[(name, key)] = f"input:{object_id}"

    def _association_plan(
        self, from_type: str, raw: Any
    ) -> list[tuple[str, str, list[dict[str, Any]]]]:
        """``associations`` of a v3 create body -> ``[(to_type, to_id, types)]``, targets checked."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise HubSpotError(400, "'associations' must be a list", "VALIDATION_ERROR")
        out = []
        for a in raw:
            to_id = str((a.get("to") or {}).get("id", ""))
            to_type = self.where.get(to_id)
            if to_type is None or self.find(to_type, to_id) is None:
                raise HubSpotError(
                    400,
                    f"One or more associations are invalid: object {to_id!r} does not exist",
                    "VALIDATION_ERROR",
                    sub_category="INVALID_ASSOCIATION",
                )
            types = a.get("types") or []
            self._check_specs(from_type, to_type, types)
            out.append((to_type, to_id, types))
        return out

    @staticmethod
    def _check_specs(from_type: str, to_type: str, specs: Any) -> None:
        if not isinstance(specs, list) or not specs:
            raise HubSpotError(400, "At least one association type is required", "VALIDATION_ERROR")
        allowed = catalog.ASSOCIATION_TYPES.get((from_type, to_type), ())
        for spec in specs:
            category = spec.get("associationCategory")
            type_id = spec.get("associationTypeId")
            if not isinstance(type_id, int) or category not in (
                "HUBSPOT_DEFINED",
                "USER_DEFINED",
                "INTEGRATOR_DEFINED",
                "WORK",
            ):
                raise HubSpotError(400, f"Invalid association spec {spec!r}", "VALIDATION_ERROR")
            if category == "HUBSPOT_DEFINED" and type_id not in allowed:
                raise HubSpotError(
                    400,
                    f"{type_id} is not a valid association type id from {from_type} to {to_type}"
                    f" (valid: {', '.join(map(str, allowed)) or 'none'})",
                    "VALIDATION_ERROR",
                    sub_category="INVALID_ASSOCIATION_TYPE",
                )

    # --- writes ----------------------------------------------------------------------------------

    def _apply(self, type_name: str, plan: _Plan, source: str | None) -> CrmObject:
        now = now_ms()
        if plan.new:
            values = {**_CREATE_DEFAULTS.get(type_name, {}), **plan.values}
            obj = CrmObject(str(self._next_id), type_name, {}, now, now)
            self._next_id += 1
            self.objects[type_name][obj.id] = obj
            self.where[obj.id] = type_name
            obj.props["hs_object_id"] = obj.id
            obj.props["createdate"] = iso(now)
            self._emit(source, kind="creation", type=type_name, id=obj.id)
        else:
            assert plan.obj is not None
            obj, values = plan.obj, plan.values
        changes = {k: v for k, v in values.items() if (obj.props.get(k) or "") != v}
        index = self.unique[type_name]
        for k, v in changes.items():
            if k in index and obj.props.get(k):
                index[k].pop(self._ukey(k, obj.props[k]), None)
            if k in index and v:
                index[k][self._ukey(k, v)] = obj.id
            if v:
                obj.props[k] = v
            else:
                obj.props.pop(k, None)
        if changes or plan.new:
            obj.updated_ms = now
            obj.props["lastmodifieddate"] = obj.props["hs_lastmodifieddate"] = iso(now)
            if type_name == "deals":
                stage = obj.props.get("dealstage", "")
                obj.props["hs_is_closed_won"] = str(stage == "closedwon").lower()
                obj.props["hs_is_closed"] = str(stage in ("closedwon", "closedlost")).lower()
            elif type_name == "line_items":
                _line_amount(obj.props)
        if changes or plan.new:
            self._stage_index(obj, now, source)
        if not plan.new:
            for k, v in changes.items():
                self._emit(
                    source, kind="propertyChange", type=type_name, id=obj.id, name=k, value=v
                )
        for to_type, to_id, types in plan.associations:
            self.associate(type_name, obj.id, to_type, to_id, types, source)
        return obj

    def _stage_index(self, obj: CrmObject, now: int, source: str | None) -> None:
        """Queue this version for the search index: searchable after ``search_lag_s`` (at once
        for seeded data, or with no lag configured)."""
        if source is None or self.search_lag_s <= 0:
            obj.indexed, obj.pending = dict(obj.props), None
            return
        obj.searchable_props(now)  # a due version reaches the index before the next one queues
        obj.pending, obj.pending_due_ms = dict(obj.props), now + int(self.search_lag_s * 1000)

    def _from_product(self, type_name: str, values: dict[str, str]) -> dict[str, str]:
        """A line item made from a product (``hs_product_id``) takes the product's name, SKU,
        price and billing terms unless the request sets them, as HubSpot does; the product must
        exist. (The 400's wording is ours: HubSpot's is not documented.)"""
        if type_name != "line_items" or not values.get("hs_product_id"):
            return values
        product = self.find("products", values["hs_product_id"])
        if product is None:
            raise HubSpotError(
                400,
                f"Product with id {values['hs_product_id']} does not exist",
                "VALIDATION_ERROR",
                errors=[
                    {
                        "message": f"Product with id {values['hs_product_id']} does not exist",
                        "code": "INVALID_PRODUCT",
                        "context": {"propertyName": ["hs_product_id"]},
                    }
                ],
            )
        inherited = {k: product.props[k] for k in _PRODUCT_FIELDS if product.props.get(k)}
        return {**inherited, **values}

    def create(self, type_name: str, body: dict[str, Any], source: str | None) -> CrmObject:
        values = self.prepare(type_name, body.get("properties", {}), creating=True)
        values = self._from_product(type_name, values)
        self._check_unique(type_name, None, values, {})
        plan = _Plan(
            values,
            new=True,
            associations=self._association_plan(type_name, body.get("associations")),
        )
        return self._apply(type_name, plan, source)

    def update(
        self,
        type_name: str,
        object_id: str,
        raw_props: Any,
        source: str | None,
        id_property: str | None = None,
    ) -> CrmObject:
        obj = self.get(type_name, object_id, id_property)
        values = self.prepare(type_name, raw_props, creating=False)
        self._check_unique(type_name, obj.id, values, {})
        return self._apply(type_name, _Plan(values, obj=obj), source)

    def archive(self, type_name: str, object_id: str, source: str | None) -> None:
        obj = self.find(type_name, object_id)
        if obj is None:
            return  # HubSpot answers 204 for an id that is already gone
        obj.archived, obj.archived_ms = True, now_ms()
        for to_type, to_id in list(self.assoc.get((type_name, obj.id), {})):
            self._unlink(type_name, obj.id, to_type, to_id)
        for name, by_value in self.unique[type_name].items():  # archived records free their values
            if obj.props.get(name):
                by_value.pop(self._ukey(name, obj.props[name]), None)
        self._emit(source, kind="deletion", type=type_name, id=obj.id)

    # --- batches ---------------------------------------------------------------------------------

    @staticmethod
    def _inputs(body: dict[str, Any]) -> list[dict[str, Any]]:
        inputs = body.get("inputs")
        if not isinstance(inputs, list):
            raise HubSpotError(400, "'inputs' must be a list", "VALIDATION_ERROR")
        if len(inputs) > 100:
            raise HubSpotError(
                400, f"Batch size {len(inputs)} exceeds the limit of 100", "VALIDATION_ERROR"
            )
        return inputs

    @staticmethod
    def _no_duplicate_ids(ids: list[str]) -> None:
        seen, dups = set(), []
        for i in ids:
            if i in seen:
                dups.append(i)
            seen.add(i)
        if dups:
            raise HubSpotError(
                400, f"Duplicate IDs found in batch input: {sorted(set(dups))}", "VALIDATION_ERROR"
            )

    def _plan_batch(
        self, inputs: list[dict[str, Any]], plan_one: Callable[[dict[str, Any], dict], _Plan | None]
    ) -> tuple[list[_Plan], list[dict[str, Any]]]:
        """Plan every input. A failing input fails the whole batch unless every input carries an
        ``objectWriteTraceId``, in which case it becomes an error of a 207 (reference §2.4)."""
        partial = bool(inputs) and all(i.get("objectWriteTraceId") for i in inputs)
        claimed: dict[tuple[str, str], str] = {}
        plans, errors = [], []
        for item in inputs:
            try:
                plan = plan_one(item, claimed)
            except HubSpotError as exc:
                if not partial:
                    raise
                err = exc.body()
                err.pop("correlationId", None)
                err["context"] = {
                    **(err.get("context") or {}),
                    "objectWriteTraceId": [item["objectWriteTraceId"]],
                }
                errors.append(err)
                continue
            if plan is not None:
                plan.trace_id = item.get("objectWriteTraceId")
                plans.append(plan)
        return plans, errors

    def _result(self, plan: _Plan, obj: CrmObject, upsert: bool = False) -> dict[str, Any]:
        out = self.render(obj)
        if plan.trace_id:
            out["objectWriteTraceId"] = plan.trace_id
        if upsert:
            out["new"] = plan.new
        return out

    def batch_create(self, type_name: str, body: dict[str, Any], source: str | None):
        def plan_one(item: dict[str, Any], claimed: dict) -> _Plan:
            values = self.prepare(type_name, item.get("properties", {}), creating=True)
            values = self._from_product(type_name, values)
            self._check_unique(type_name, None, values, claimed)
            return _Plan(
                values,
                new=True,
                associations=self._association_plan(type_name, item.get("associations")),
            )

        plans, errors = self._plan_batch(self._inputs(body), plan_one)
        return [self._result(p, self._apply(type_name, p, source)) for p in plans], errors

    def batch_update(self, type_name: str, body: dict[str, Any], source: str | None):
        inputs = self._inputs(body)
        self._no_duplicate_ids([str(i.get("id")) for i in inputs])
        missing: list[str] = []

        def plan_one(item: dict[str, Any], claimed: dict) -> _Plan | None:
            obj = self.find(
                type_name, str(item.get("id")), item.get("idProperty") or body.get("idProperty")
            )
            if obj is None:
                missing.append(str(item.get("id")))
                return None
            values = self.prepare(type_name, item.get("properties", {}), creating=False)
            self._check_unique(type_name, obj.id, values, claimed)
            return _Plan(values, obj=obj)

        plans, errors = self._plan_batch(inputs, plan_one)
        if missing:
            errors.append(self._not_found_error(type_name, missing))
        return [self._result(p, self._apply(type_name, p, source)) for p in plans], errors

    def batch_upsert(self, type_name: str, body: dict[str, Any], source: str | None):
        inputs = self._inputs(body)
        self._no_duplicate_ids([f"{i.get('idProperty')}:{i.get('id')}" for i in inputs])

        def plan_one(item: dict[str, Any], claimed: dict) -> _Plan:
            id_property = item.get("idProperty")
            if not id_property:
                raise HubSpotError(400, "idProperty is required for upsert", "VALIDATION_ERROR")
            obj = self.find(type_name, str(item.get("id")), id_property)
            props = dict(item.get("properties") or {})
            if obj is None and id_property != "hs_object_id":
                props[id_property] = item.get("id")
            values = self.prepare(type_name, props, creating=obj is None)
            self._check_unique(type_name, obj.id if obj else None, values, claimed)
            return _Plan(values, obj=obj, new=obj is None)

        plans, errors = self._plan_batch(inputs, plan_one)
        return [
            self._result(p, self._apply(type_name, p, source), upsert=True) for p in plans
        ], errors

    def batch_read(self, type_name: str, body: dict[str, Any], names: list[str]):
        inputs = self._inputs(body)
        results, missing = [], []
        for item in inputs:
            obj = self.find(type_name, str(item.get("id")), body.get("idProperty"))
            if obj is None:
                missing.append(str(item.get("id")))
            else:
                results.append(self.render(obj, names))
        return results, [self._not_found_error(type_name, missing)] if missing else []

    def batch_archive(self, type_name: str, body: dict[str, Any], source: str | None) -> None:
        for item in self._inputs(body):
            self.archive(type_name, str(item.get("id")), source)

    @staticmethod
    def _not_found_error(type_name: str, ids: list[str]) -> dict[str, Any]:
        label = OBJECT_TYPES[type_name].singular.upper()
        return {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": f"Could not get some {label} objects, they may be deleted or not exist. "
            "Check that ids are valid.",
            "context": {"ids": ids},
            "errors": [],
        }

    # --- reads -----------------------------------------------------------------------------------

    def live(self, type_name: str, archived: bool = False) -> list[CrmObject]:
        return sorted(
            (o for o in self.objects[type_name].values() if o.archived == archived),
            key=lambda o: int(o.id),
        )

    def list_page(self, type_name: str, after: str | None, limit: int, archived: bool):
        """Cursor paging over ids ascending; ``after`` is the first id of the next page."""
        start = int(after) if after and after.isdigit() else 0
        rows = [o for o in self.live(type_name, archived) if int(o.id) >= start]
        page, rest = rows[:limit], rows[limit:]
        return page, (rest[0].id if rest else None)

    def search(self, type_name: str, body: dict[str, Any]):
        defs = self.properties[type_name]
        matches = search.compile_request(body, defs, OBJECT_TYPES[type_name].searchable)
        key, reverse = search.sort_key(body, defs)
        offset, limit = search.page_window(body)
        now = now_ms()
        indexed = [(o, o.searchable_props(now)) for o in self.live(type_name)]
        hits = sorted(
            ((o.id, props) for o, props in indexed if props is not None and matches(props)),
            key=key,
            reverse=reverse,
        )
        # results carry the indexed version of each object, as HubSpot's search does
        page = [
            dataclasses.replace(self.objects[type_name][i], props=props)
            for i, props in hits[offset : offset + limit]
        ]
        next_after = str(offset + limit) if offset + limit < len(hits) else None
        return len(hits), page, next_after

    # --- properties API --------------------------------------------------------------------------

    def property_list(self, type_name: str, archived: bool = False) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(d)
            for d in self.properties[type_name].values()
            if bool(d.get("archived")) == archived
        ]

    def property_get(self, type_name: str, name: str) -> dict[str, Any]:
        definition = self.properties[type_name].get(name)
        if definition is None or definition.get("archived"):
            raise HubSpotError(
                404,
                f"Unable to find property {name} for object type {type_name}",
                "OBJECT_NOT_FOUND",
            )
        return definition

    def property_create(self, type_name: str, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("name", ""))
        if not name or not name.replace("_", "a").isalnum() or name != name.lower():
            raise HubSpotError(
                400, f"Property name {name!r} is invalid: use lower case letters, digits and _"
            )
        existing = self.properties[type_name].get(name)
        if existing and not existing.get("archived"):
            raise HubSpotError(
                409,
                f"Property named '{name}' already exists.",
                "OBJECT_ALREADY_EXISTS",
                context={"name": [name]},
            )
        if body.get("hasUniqueValue") and type_name in catalog.NO_UNIQUE_PROPERTIES:
            raise HubSpotError(
                400,
                f"Unique value properties are not supported for object type "
                f"{OBJECT_TYPES[type_name].type_id} ({type_name}); they exist for contacts, "
                "companies, deals, tickets and custom objects",
                "VALIDATION_ERROR",
                context={"name": [name]},
            )
        kind = body.get("type")
        if kind not in (
            "bool",
            "date",
            "datetime",
            "enumeration",
            "number",
            "phone_number",
            "string",
        ):
            raise HubSpotError(400, f"Invalid property type {kind!r}", "VALIDATION_ERROR")
        definition = catalog.prop(
            name,
            "string" if kind == "phone_number" else kind,
            body.get("fieldType"),
            group=body.get("groupName", ""),
            label=body.get("label"),
            unique=bool(body.get("hasUniqueValue")),
            hubspot_defined=False,
            description=body.get("description", ""),
        )
        definition["type"] = kind
        definition["options"] = [
            {"hidden": False, "displayOrder": i, **o}
            for i, o in enumerate(body.get("options") or [])
        ]
        for key in ("displayOrder", "hidden", "formField"):
            if key in body:
                definition[key] = body[key]
        definition["createdAt"] = definition["updatedAt"] = iso(now_ms())
        self.properties[type_name][name] = definition
        self._reindex(type_name)
        return definition

    def property_update(self, type_name: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        definition = self.property_get(type_name, name)
        if definition["modificationMetadata"]["readOnlyDefinition"]:
            raise HubSpotError(
                400, f"Property {name} is HubSpot-defined and read-only", "VALIDATION_ERROR"
            )
        for key in (
            "label",
            "description",
            "groupName",
            "fieldType",
            "type",
            "displayOrder",
            "hidden",
            "formField",
        ):
            if key in body:
                definition[key] = body[key]
        if "options" in body:
            definition["options"] = [
                {"hidden": False, "displayOrder": i, **o}
                for i, o in enumerate(body["options"] or [])
            ]
        definition["updatedAt"] = iso(now_ms())
        return definition

    def property_archive(self, type_name: str, name: str) -> None:
        definition = self.property_get(type_name, name)
        if definition["hubspotDefined"]:
            raise HubSpotError(400, f"Property {name} is HubSpot-defined and cannot be archived")
        definition["archived"] = True
        definition["archivedAt"] = iso(now_ms())
        self._reindex(type_name)

    # --- associations (v4) -----------------------------------------------------------------------

    def associated(self, from_type: str, from_id: str, to_type: str):
        """``[(to_id, {typeId: (category, label)})]`` of live targets, ids ascending."""
        edges = self.assoc.get((from_type, from_id), {})
        rows = [
            (to_id, dict(types))
            for (t, to_id), types in edges.items()
            if t == to_type and types and self.find(to_type, to_id) is not None
        ]
        return sorted(rows, key=lambda r: int(r[0]))

    def associate(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        specs: list[dict[str, Any]] | None,
        source: str | None,
    ) -> list[dict[str, Any]]:
        """Add association types (``None``: the default one). Returns the specs added, both sides."""
        self.get(from_type, from_id)
        self.get(to_type, to_id)
        if specs is None:
            ids = catalog.ASSOCIATION_TYPES.get((from_type, to_type))
            if not ids:
                raise HubSpotError(
                    400,
                    f"No default association type from {from_type} to {to_type}",
                    "VALIDATION_ERROR",
                )
            specs = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": ids[0]}]
        self._check_specs(from_type, to_type, specs)
        forward = self.assoc.setdefault((from_type, from_id), {}).setdefault((to_type, to_id), {})
        backward = self.assoc.setdefault((to_type, to_id), {}).setdefault((from_type, from_id), {})
        was_linked = bool(forward)
        added = []
        for spec in specs:
            type_id, category = spec["associationTypeId"], spec["associationCategory"]
            if type_id in catalog.PRIMARY:  # one primary per object and target type
                for (t, other), types in self.assoc.get((from_type, from_id), {}).items():
                    if t == to_type and other != to_id and types.pop(type_id, None):
                        self.assoc[(to_type, other)][(from_type, from_id)].pop(
                            catalog.INVERSE[type_id], None
                        )
            inverse = (
                catalog.INVERSE.get(type_id, type_id) if category == "HUBSPOT_DEFINED" else type_id
            )
            label = "Primary" if type_id in catalog.PRIMARY else spec.get("label")
            forward[type_id] = (category, label)
            backward[inverse] = (category, label)
            added.append(
                {
                    "from": {"id": from_id},
                    "to": {"id": to_id},
                    "associationSpec": {
                        "associationCategory": category,
                        "associationTypeId": type_id,
                    },
                }
            )
            added.append(
                {
                    "from": {"id": to_id},
                    "to": {"id": from_id},
                    "associationSpec": {
                        "associationCategory": category,
                        "associationTypeId": inverse,
                    },
                }
            )
        if not was_linked:
            self._emit_association(
                source, from_type, from_id, to_type, to_id, removed=False, specs=specs
            )
        return added

    def _unlink(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        type_ids: set[int] | None = None,
    ) -> bool:
        forward = self.assoc.get((from_type, from_id), {}).get((to_type, to_id), {})
        backward = self.assoc.get((to_type, to_id), {}).get((from_type, from_id), {})
        if not forward:
            return False
        for type_id in list(forward):
            if type_ids is None or type_id in type_ids:
                category, _ = forward.pop(type_id)
                inverse = (
                    catalog.INVERSE.get(type_id, type_id)
                    if category == "HUBSPOT_DEFINED"
                    else type_id
                )
                backward.pop(inverse, None)
        return not forward

    def disassociate(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        source: str | None,
        type_ids: set[int] | None = None,
    ) -> None:
        if self._unlink(from_type, from_id, to_type, to_id, type_ids):
            self._emit_association(
                source, from_type, from_id, to_type, to_id, removed=True, specs=[]
            )

    def _emit_association(
        self,
        source: str | None,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        removed: bool,
        specs: list[dict[str, Any]],
    ) -> None:
        primary = any(s.get("associationTypeId") in catalog.PRIMARY for s in specs)
        for a_type, a_id, b_type, b_id in (
            (from_type, from_id, to_type, to_id),
            (to_type, to_id, from_type, from_id),
        ):
            self._emit(
                source,
                kind="associationChange",
                type=a_type,
                id=a_id,
                associationType=f"{OBJECT_TYPES[a_type].singular}_TO_{OBJECT_TYPES[b_type].singular}".upper(),
                fromObjectId=int(a_id),
                toObjectId=int(b_id),
                associationRemoved=removed,
                isPrimaryAssociation=primary,
            )
