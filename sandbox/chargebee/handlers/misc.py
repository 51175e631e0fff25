"""Comments, coupons, item prices, events, usages (metered billing) and usage events."""

from __future__ import annotations

import math
from typing import Any

from .. import models
from ..errors import duplicate, not_found, param_error
from ..forms import FormError, parse_list_literal, to_bool, to_int, to_json_object
from ..listing import apply_filters, paginate, paginate_indexed, row_filter
from ..state import public, random_id
from .base import Base, Call, _opt_int, _required

COMMENT_ENTITY_TYPES = {
    "customer",
    "subscription",
    "invoice",
    "quote",
    "credit_note",
    "transaction",
    "plan",
    "addon",
    "coupon",
    "order",
    "business_entity",
    "omnichannel_subscription",
    "item_family",
    "item",
    "item_price",
    "plan_item_price",
    "addon_item_price",
    "charge_item_price",
    "plan_price",
    "addon_price",
    "charge_price",
}


class MiscHandlers(Base):
    def _entity_exists(self, entity_type: str, entity_id: str) -> bool:
        tables = {
            "customer": {k for k, v in self.store.customers.items() if not v["deleted"]},
            "subscription": self.store.subscriptions,
            "invoice": self.store.invoices,
            "transaction": self.store.transactions,
            "coupon": self.store.coupons,
            "item_price": self.store.item_prices,
        }
        table = tables.get(entity_type)
        return table is None or entity_id in table

    def create_comment(self, call: Call) -> dict[str, Any]:
        p = call.params
        entity_type = _required(p, "entity_type")
        if entity_type not in COMMENT_ENTITY_TYPES:
            raise param_error("entity_type", f"entity_type : invalid value {entity_type!r}")
        entity_id = _required(p, "entity_id")
        notes = _required(p, "notes")
        limit = self.em.comment_max_chars
        if limit is not None and len(notes) > limit:
            raise param_error("notes", f"notes : cannot be more than {limit} characters")
        if not self._entity_exists(entity_type, entity_id):
            raise not_found(entity_type.replace("_", " ").capitalize(), entity_id, "entity_id")
        c = models.new_comment(self.store, entity_type, entity_id, notes)
        self.store.comments[c["id"]] = c
        return {"comment": public(c)}

    def list_comments(self, call: Call) -> dict[str, Any]:
        p = call.params
        rows = list(self.store.comments.values())
        for key in ("entity_type", "entity_id"):
            if isinstance(p.get(key), str):
                rows = [c for c in rows if c[key] == p[key]]
        rows = apply_filters(rows, p, ignore=("entity_type", "entity_id"))
        return paginate(rows, p, lambda c: {"comment": public(c)}, ("created_at",), "created_at")

    def retrieve_comment(self, call: Call) -> dict[str, Any]:
        c = self.store.comments.get(call.path["id"])
        if c is None:
            raise not_found("Comment", call.path["id"])
        return {"comment": public(c)}

    def delete_comment(self, call: Call) -> dict[str, Any]:
        c = self.store.comments.pop(call.path["id"], None)
        if c is None:
            raise not_found("Comment", call.path["id"])
        return {"comment": public(c)}

    # --- coupons -------------------------------------------------------------------------------

    def list_custom_field_configs(self, call: Call) -> dict[str, Any]:
        """``GET /custom_field_configs`` (``entity_type`` filter): the site's custom fields. The
        per-site "searchable" switch is not part of the resource: it shows only in whether a
        ``cf_x[is]`` filter is applied."""
        entity = call.params.get("entity_type")
        rows = [
            {
                "entity_type": c.get("entity_type", "customer"),
                "api_name": c["api_name"],
                "display_name": c.get("display_name") or c["api_name"],
                "field_datatype": c.get("field_datatype", "string"),
                "required": bool(c.get("required", False)),
                "props": "{}",
                "status": "active",
                "object": "custom_field_config",
            }
            for c in self.store.custom_fields.values()
            if entity in (None, c.get("entity_type", "customer"))
        ]
        limit = min(max(_opt_int(call.params, "limit") or 10, 1), 100)
        return {"list": [{"custom_field_config": r} for r in rows[:limit]]}

    def estimate_subscription(self, call: Call) -> dict[str, Any]:
        """``POST /estimates/create_subscription_for_items``: what a subscription would be,
        nothing created. Checks the items and, like the create, the contract term."""
        p = call.params
        items = self.em.api._items(p.get("subscription_items"), required=True)
        if isinstance(p.get("contract_term"), dict) and p["contract_term"]:
            self.require_contract_terms()
        currency = items[0][0]["currency_code"]
        now = self.store.now()
        return {
            "estimate": {
                "created_at": now,
                "object": "estimate",
                "subscription_estimate": {
                    "status": "active",
                    "currency_code": currency,
                    "object": "subscription_estimate",
                },
            }
        }

    def create_coupon(self, call: Call) -> dict[str, Any]:
        p = call.params
        id_ = _required(p, "id")
        name = _required(p, "name")
        apply_on = _required(p, "apply_on")
        if apply_on not in ("invoice_amount", "each_specified_item"):
            raise param_error("apply_on", "apply_on : invalid value")
        if id_ in self.store.coupons:
            raise duplicate("id", id_)
        discount_type = p.get("discount_type") or "percentage"
        coupon: dict[str, Any] = {
            "id": id_,
            "name": name,
            "invoice_name": p.get("invoice_name") or None,
            "discount_type": discount_type,
            "duration_type": p.get("duration_type") or "forever",
            "status": p.get("status") or "active",
            "apply_on": apply_on,
            "apply_discount_on": "not_applicable",
            "redemptions": 0,
            "included_in_mrr": to_bool(p.get("included_in_mrr", True), "included_in_mrr"),
            "invoice_notes": p.get("invoice_notes") or None,
            "object": "coupon",
        }
        if discount_type == "percentage":
            raw = _required(p, "discount_percentage")
            try:
                pct = float(raw)
            except ValueError:
                raise param_error("discount_percentage", "discount_percentage : invalid") from None
            if not 0 < pct <= 100:
                raise param_error(
                    "discount_percentage", "discount_percentage : must be in (0, 100]"
                )
            coupon["discount_percentage"] = pct
        elif discount_type == "fixed_amount":
            coupon["discount_amount"] = to_int(_required(p, "discount_amount"), "discount_amount")
            coupon["currency_code"] = p.get("currency_code") or "USD"
        elif discount_type == "offer_quantity":
            coupon["discount_quantity"] = to_int(
                _required(p, "discount_quantity"), "discount_quantity"
            )
        else:
            raise param_error("discount_type", "discount_type : invalid value")
        if coupon["duration_type"] not in ("one_time", "forever", "limited_period"):
            raise param_error("duration_type", "duration_type : invalid value")
        if coupon["duration_type"] == "limited_period":
            coupon["period"] = to_int(_required(p, "period"), "period")
            coupon["period_unit"] = p.get("period_unit") or "month"
        for name_ in ("valid_till", "max_redemptions", "duration_month"):
            if p.get(name_) not in (None, ""):
                coupon[name_] = to_int(p[name_], name_)
        if "meta_data" in p:
            coupon["meta_data"] = to_json_object(p["meta_data"], "meta_data")
        constraints = p.get("item_constraints")
        if isinstance(constraints, list):
            coupon["item_constraints"] = [self._constraint(c, i) for i, c in enumerate(constraints)]
        elif apply_on == "each_specified_item":
            raise param_error("item_constraints[constraint][0]")
        self.store.stamp(coupon, created=True)
        self.store.coupons[id_] = coupon
        self.event(call, "coupon_created", {"coupon": public(coupon)})
        return {"coupon": public(coupon)}

    def _constraint(self, c: Any, i: int) -> dict[str, Any]:
        if not isinstance(c, dict):
            raise param_error(f"item_constraints[constraint][{i}]")
        out = {
            "item_type": _required(c, "item_type", f"item_constraints[item_type][{i}]"),
            "constraint": _required(c, "constraint", f"item_constraints[constraint][{i}]"),
        }
        ids = c.get("item_price_ids")
        if ids not in (None, ""):
            try:
                out["item_price_ids"] = parse_list_literal(
                    ids, f"item_constraints[item_price_ids][{i}]"
                )
            except FormError as exc:
                raise param_error(exc.param, str(exc)) from None
        return out

    def list_coupons(self, call: Call) -> dict[str, Any]:
        rows = apply_filters(list(self.store.coupons.values()), call.params)
        return paginate(
            rows, call.params, lambda c: {"coupon": public(c)}, ("created_at",), "created_at"
        )

    def retrieve_coupon(self, call: Call) -> dict[str, Any]:
        c = self.store.coupons.get(call.path["id"])
        if c is None:
            raise not_found("Coupon", call.path["id"])
        return {"coupon": public(c)}

    # --- item prices, events, usage events ------------------------------------------------------

    def list_item_prices(self, call: Call) -> dict[str, Any]:
        rows = apply_filters(list(self.store.item_prices.values()), call.params)
        return paginate(
            rows,
            call.params,
            lambda i: {"item_price": public(i)},
            ("updated_at", "created_at"),
            "created_at",
        )

    def retrieve_item_price(self, call: Call) -> dict[str, Any]:
        ip = self.store.item_prices.get(call.path["id"])
        if ip is None:
            raise not_found("Item price", call.path["id"])
        return {"item_price": public(ip)}

    def list_events(self, call: Call) -> dict[str, Any]:
        p = call.params
        start, end = _opt_int(p, "start_time"), _opt_int(p, "end_time")
        # the event log sorted by time (the default and the only sort): one page walked from
        # the cursor, not every event filtered and sorted per request (a churn sweep's walks
        # over a 100,000-customer site's log made each page cost the whole log)
        match = row_filter(p, ignore=("start_time", "end_time"))
        low, high = _time_bounds(p.get("occurred_at"))
        page = paginate_indexed(
            self.store.events_by_time(),
            self.store.events,
            lambda e: (
                (start is None or e["occurred_at"] >= start)
                and (end is None or e["occurred_at"] <= end)
                and match(e)
            ),
            p,
            lambda e: {"event": public(e)},
            ("occurred_at",),
            "occurred_at",
            low=max(lows) if (lows := [x for x in (low, start) if x is not None]) else None,
            high=min(highs) if (highs := [x for x in (high, end) if x is not None]) else None,
        )
        if page is not None:
            return page
        rows = list(self.store.events.values())
        if start is not None:
            rows = [e for e in rows if e["occurred_at"] >= start]
        if end is not None:
            rows = [e for e in rows if e["occurred_at"] <= end]
        rows = apply_filters(rows, p, ignore=("start_time", "end_time"))
        return paginate(rows, p, lambda e: {"event": public(e)}, ("occurred_at",), "occurred_at")

    def retrieve_event(self, call: Call) -> dict[str, Any]:
        ev = self.store.events.get(call.path["id"])
        if ev is None:
            raise not_found("Event", call.path["id"])
        return {"event": public(ev)}

    def create_usage_event(self, call: Call) -> dict[str, Any]:
        p = call.params
        ue = {
            "subscription_id": _required(p, "subscription_id"),
            "deduplication_id": _required(p, "deduplication_id"),
            "usage_timestamp": to_int(p.get("usage_timestamp"), "usage_timestamp"),
            "properties": p.get("properties") if isinstance(p.get("properties"), dict) else {},
        }
        self.subscription(ue["subscription_id"], "subscription_id")
        if not any(
            u["deduplication_id"] == ue["deduplication_id"] for u in self.store.usage_events
        ):
            self.store.usage_events.append(ue)
        return {"usage_event": ue}

    # --- usages (metered billing: POST /subscriptions/{id}/usages, GET /usages) -----------------

    def create_usage(self, call: Call) -> dict[str, Any]:
        """Record usage of a metered item price on the subscription (it must carry that price)."""
        p = call.params
        sub = self.subscription(call.path["id"])
        ip_id = _required(p, "item_price_id")
        item = next((x for x in sub["subscription_items"] if x["item_price_id"] == ip_id), None)
        ip = self.store.item_prices.get(ip_id)
        if item is None or ip is None:
            raise not_found("Item price", ip_id, "item_price_id")
        if not ip.get("_metered"):
            raise param_error("item_price_id", "item_price_id : should be a metered item price")
        quantity = _required(p, "quantity")
        try:
            if float(quantity) < 0:
                raise ValueError(quantity)
        except ValueError:
            raise param_error("quantity", "quantity : invalid value") from None
        usage_date = to_int(_required(p, "usage_date"), "usage_date")
        if usage_date > self.store.now():
            raise param_error("usage_date", "usage_date : cannot be a future date")
        id_ = p.get("id") or random_id("usage_")
        if id_ in self.store.usages:
            raise duplicate("id", id_)
        usage = {
            "id": id_,
            "usage_date": usage_date,
            "subscription_id": sub["id"],
            "item_price_id": ip_id,
            "quantity": quantity,
            "source": "api",
            "note": p.get("note") or None,
            "object": "usage",
        }
        self.store.stamp(usage, created=True)
        self.store.usages[id_] = usage
        return {"usage": public(usage)}

    def list_usages(self, call: Call) -> dict[str, Any]:
        rows = apply_filters(list(self.store.usages.values()), call.params)
        return paginate(
            rows,
            call.params,
            lambda u: {"usage": public(u)},
            ("usage_date", "updated_at"),
            "usage_date",
        )


def _time_bounds(spec: Any) -> tuple[int | None, int | None]:
    """Whole-second bounds no event an ``occurred_at[...]`` filter accepts lies outside
    (conservative: the filter itself still runs on every row; a bad value: no bounds, and the
    filter answers with its error)."""
    if not isinstance(spec, dict):
        return None, None
    low = high = None
    try:
        for op, raw in spec.items():
            if op in ("after", "gt", "gte"):
                low = math.floor(float(raw))
            elif op in ("before", "lt", "lte"):
                high = math.ceil(float(raw))
    except (TypeError, ValueError, OverflowError):
        return None, None
    return low, high
