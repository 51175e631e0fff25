"""Products, prices, coupons, billing meters and meter events."""

from __future__ import annotations

from typing import Any

from .errors import StripeError, missing
from .forms import (
    apply_metadata,
    as_bool,
    as_dict,
    as_enum,
    as_float,
    as_int,
    as_list,
    as_str,
    check_known,
)
from .store import Store, diff

PRODUCT_PARAMS = {
    "active", "default_price_data", "description", "id", "images", "marketing_features",
    "metadata", "name", "package_dimensions", "shippable", "statement_descriptor", "tax_code",
    "tax_details", "type", "unit_label", "url",
}  # fmt: skip
PRICE_PARAMS = {
    "active", "billing_scheme", "currency", "currency_options", "custom_unit_amount",
    "lookup_key", "metadata", "nickname", "product", "product_data", "recurring",
    "tax_behavior", "tiers", "tiers_mode", "transfer_lookup_key", "transform_quantity",
    "unit_amount", "unit_amount_decimal",
}  # fmt: skip
COUPON_PARAMS = {
    "amount_off", "applies_to", "currency", "currency_options", "duration",
    "duration_in_months", "id", "max_redemptions", "metadata", "name", "percent_off",
    "redeem_by",
}  # fmt: skip
INTERVALS = ("day", "week", "month", "year")


class CatalogMixin(Store):
    # --- products ---------------------------------------------------------------------------------

    def create_product(self, params: dict[str, Any], *, seeded: bool = False) -> dict[str, Any]:
        if not seeded:
            check_known(params, PRODUCT_PARAMS)
        name = as_str(params, "name", required=True)
        now = self.now()
        prod = {
            "id": as_str(params, "id") or self.new_id("prod", 14),
            "object": "product",
            "active": as_bool(params, "active", True),
            "created": now,
            "default_price": None,
            "description": as_str(params, "description"),
            "images": as_list(params, "images"),
            "livemode": False,
            "marketing_features": [],
            "metadata": apply_metadata({}, params.get("metadata")),
            "name": name,
            "package_dimensions": None,
            "shippable": None,
            "statement_descriptor": as_str(params, "statement_descriptor"),
            "tax_code": as_str(params, "tax_code"),
            "type": "service",
            "unit_label": as_str(params, "unit_label"),
            "updated": now,
            "url": as_str(params, "url"),
        }
        self.put(prod)
        if params.get("default_price_data"):
            price = self.create_price(
                {**as_dict(params, "default_price_data"), "product": prod["id"]}, seeded=True
            )
            prod["default_price"] = price["id"]
        self.event("product.created", prod)
        return prod

    def update_product(self, prod_id: str, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, PRODUCT_PARAMS - {"id", "type"} | {"default_price"})
        prod = self.get(prod_id, "product")
        before = self.render(prod)
        for key in ("name", "description", "statement_descriptor", "unit_label", "url"):
            if key in params:
                prod[key] = as_str(params, key)
        if "active" in params:
            prod["active"] = as_bool(params, "active")
        if "default_price" in params:
            prod["default_price"] = self.get(params["default_price"], "price", "default_price")[
                "id"
            ]
        prod["metadata"] = apply_metadata(prod["metadata"], params.get("metadata"))
        prod["updated"] = self.now()
        self._updated("product.updated", prod, before)
        return prod

    def list_products(self, params: dict[str, Any]) -> dict[str, Any]:
        active = as_bool(params, "active")
        ids = set(as_list(params, "ids"))
        return self.page(
            self.all("product"),
            params,
            "/v1/products",
            lambda p: (active is None or p["active"] == active) and (not ids or p["id"] in ids),
        )

    # --- prices -----------------------------------------------------------------------------------

    def create_price(self, params: dict[str, Any], *, seeded: bool = False) -> dict[str, Any]:
        if not seeded:
            check_known(params, PRICE_PARAMS)
        currency = (as_str(params, "currency", required=True) or "").lower()
        if params.get("product_data"):
            prod = self.create_product(as_dict(params, "product_data"), seeded=True)
        else:
            prod = self.get(as_str(params, "product", required=True), "product", "product")
        unit_amount = as_int(params, "unit_amount")
        decimal = as_str(params, "unit_amount_decimal")
        scheme = as_enum(params, "billing_scheme", ("per_unit", "tiered"), "per_unit")
        if unit_amount is None and decimal is not None:
            unit_amount = round(float(decimal))
        if unit_amount is None and scheme == "per_unit" and not params.get("custom_unit_amount"):
            raise missing("unit_amount")
        if unit_amount is not None and unit_amount < 0:
            raise StripeError(
                400, "This value must be greater than or equal to 0.", param="unit_amount"
            )
        recurring = None
        if params.get("recurring"):
            rec = as_dict(params, "recurring")
            interval = as_enum(rec, "interval", INTERVALS)
            if interval is None:
                raise missing("recurring[interval]")
            usage_type = as_enum(rec, "usage_type", ("licensed", "metered"), "licensed")
            meter = as_str(rec, "meter")
            if meter:
                self.get(meter, "billing.meter", "recurring[meter]")
            recurring = {
                "interval": interval,
                "interval_count": as_int(rec, "interval_count", 1),
                "meter": meter,
                "trial_period_days": as_int(rec, "trial_period_days"),
                "usage_type": usage_type,
            }
        lookup_key = as_str(params, "lookup_key")
        if lookup_key and as_bool(params, "transfer_lookup_key", False):
            for other in self.all("price"):
                if other["lookup_key"] == lookup_key:
                    other["lookup_key"] = None
        elif lookup_key and any(p["lookup_key"] == lookup_key for p in self.all("price")):
            raise StripeError(
                400,
                f"A price (`{lookup_key}`) already uses that lookup key.",
                param="lookup_key",
            )
        price = {
            "id": as_str(params, "id") or self.new_id("price"),
            "object": "price",
            "active": as_bool(params, "active", True),
            "billing_scheme": scheme,
            "created": self.now(),
            "currency": currency,
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": lookup_key,
            "metadata": apply_metadata({}, params.get("metadata")),
            "nickname": as_str(params, "nickname"),
            "product": prod["id"],
            "recurring": recurring,
            "tax_behavior": as_str(params, "tax_behavior", "unspecified"),
            "tiers_mode": as_str(params, "tiers_mode"),
            "transform_quantity": None,
            "type": "recurring" if recurring else "one_time",
            "unit_amount": unit_amount,
            "unit_amount_decimal": decimal
            or (str(unit_amount) if unit_amount is not None else None),
        }
        self.put(price)
        self.event("price.created", price)
        return price

    def update_price(self, price_id: str, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"active", "lookup_key", "metadata", "nickname", "tax_behavior",
                             "transfer_lookup_key", "currency_options"})  # fmt: skip
        price = self.get(price_id, "price")
        before = self.render(price)
        if "active" in params:
            price["active"] = as_bool(params, "active")
        for key in ("nickname", "lookup_key", "tax_behavior"):
            if key in params:
                price[key] = as_str(params, key)
        price["metadata"] = apply_metadata(price["metadata"], params.get("metadata"))
        self._updated("price.updated", price, before)
        return price

    def list_prices(self, params: dict[str, Any]) -> dict[str, Any]:
        active = as_bool(params, "active")
        product = params.get("product")
        ptype = params.get("type")
        currency = params.get("currency")
        lookup_keys = set(as_list(params, "lookup_keys"))

        def ok(p: dict[str, Any]) -> bool:
            return (
                (active is None or p["active"] == active)
                and (not product or p["product"] == product)
                and (not ptype or p["type"] == ptype)
                and (not currency or p["currency"] == currency)
                and (not lookup_keys or p["lookup_key"] in lookup_keys)
            )

        return self.page(self.all("price"), params, "/v1/prices", ok)

    def plan_view(self, price: dict[str, Any]) -> dict[str, Any]:
        """The legacy ``plan`` twin of a recurring price (still on subscription items)."""
        rec = price.get("recurring") or {}
        return {
            "id": price["id"],
            "object": "plan",
            "active": price["active"],
            "amount": price["unit_amount"],
            "amount_decimal": price["unit_amount_decimal"],
            "billing_scheme": price["billing_scheme"],
            "created": price["created"],
            "currency": price["currency"],
            "interval": rec.get("interval"),
            "interval_count": rec.get("interval_count"),
            "livemode": False,
            "metadata": dict(price["metadata"]),
            "meter": rec.get("meter"),
            "nickname": price["nickname"],
            "product": price["product"],
            "tiers_mode": price["tiers_mode"],
            "transform_usage": None,
            "trial_period_days": rec.get("trial_period_days"),
            "usage_type": rec.get("usage_type"),
        }

    # --- coupons ----------------------------------------------------------------------------------

    def create_coupon(self, params: dict[str, Any], *, seeded: bool = False) -> dict[str, Any]:
        if not seeded:
            check_known(params, COUPON_PARAMS)
        percent_off = as_float(params, "percent_off")
        amount_off = as_int(params, "amount_off")
        if (percent_off is None) == (amount_off is None):
            raise StripeError(
                400,
                "You must pass either `percent_off` or `amount_off` (and not both).",
                param="percent_off",
            )
        if percent_off is not None and not 0 < percent_off <= 100:
            raise StripeError(400, "Percent off must be between 0 and 100.", param="percent_off")
        currency = as_str(params, "currency")
        if amount_off is not None and not currency:
            raise missing("currency")
        duration = as_enum(params, "duration", ("once", "repeating", "forever"), "once")
        months = as_int(params, "duration_in_months")
        if duration == "repeating" and not months:
            raise missing("duration_in_months")
        coupon = {
            "id": as_str(params, "id") or self.new_id("co", 8),
            "object": "coupon",
            "amount_off": amount_off,
            "created": self.now(),
            "currency": currency.lower() if currency else None,
            "duration": duration,
            "duration_in_months": months if duration == "repeating" else None,
            "livemode": False,
            "max_redemptions": as_int(params, "max_redemptions"),
            "metadata": apply_metadata({}, params.get("metadata")),
            "name": coupon_name(params),
            "percent_off": percent_off,
            "redeem_by": as_int(params, "redeem_by"),
            "times_redeemed": 0,
            "valid": True,
        }
        self.put(coupon)
        self.event("coupon.created", coupon)
        return coupon

    def update_coupon(self, coupon_id: str, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"metadata", "name", "currency_options"})
        coupon = self.get(coupon_id, "coupon")
        before = self.render(coupon)
        if "name" in params:
            coupon["name"] = coupon_name(params)
        coupon["metadata"] = apply_metadata(coupon["metadata"], params.get("metadata"))
        self._updated("coupon.updated", coupon, before)
        return coupon

    def delete_coupon(self, coupon_id: str) -> dict[str, Any]:
        coupon = self.get(coupon_id, "coupon")
        coupon["valid"] = False
        self.event("coupon.deleted", coupon)
        coupon["_deleted"] = True
        return coupon

    def redeem_coupon(self, coupon_id: Any, param: str) -> dict[str, Any]:
        coupon = self.get(coupon_id, "coupon", param)
        if not coupon["valid"] or (
            coupon["redeem_by"] is not None and coupon["redeem_by"] < self.now()
        ):
            raise StripeError(400, f"Coupon expired: {coupon['id']}", param=param)
        coupon["times_redeemed"] += 1
        if coupon["max_redemptions"] and coupon["times_redeemed"] >= coupon["max_redemptions"]:
            coupon["valid"] = False
        return coupon

    # --- billing meters ---------------------------------------------------------------------------

    def create_meter(self, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"customer_mapping", "default_aggregation", "display_name",
                             "event_name", "event_time_window", "value_settings"})  # fmt: skip
        event_name = as_str(params, "event_name", required=True)
        if any(m["event_name"] == event_name for m in self.all("billing.meter")):
            raise StripeError(
                400,
                f"An active meter already exists with event_name `{event_name}`.",
                param="event_name",
            )
        agg = as_dict(params, "default_aggregation")
        now = self.now()
        meter = {
            "id": self.new_id("mtr"),
            "object": "billing.meter",
            "created": now,
            "customer_mapping": {
                "event_payload_key": as_dict(params, "customer_mapping").get(
                    "event_payload_key", "stripe_customer_id"
                ),
                "type": "by_id",
            },
            "default_aggregation": {
                "formula": as_enum(agg, "formula", ("sum", "count", "last"), "sum")
            },
            "display_name": as_str(params, "display_name", required=True),
            "event_name": event_name,
            "event_time_window": as_str(params, "event_time_window"),
            "livemode": False,
            "status": "active",
            "status_transitions": {"deactivated_at": None},
            "updated": now,
            "value_settings": {
                "event_payload_key": as_dict(params, "value_settings").get(
                    "event_payload_key", "value"
                )
            },
        }
        return self.put(meter)

    def create_meter_event(self, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"event_name", "identifier", "payload", "timestamp"})
        event_name = as_str(params, "event_name", required=True)
        payload = params.get("payload")
        if not payload:
            raise missing("payload")
        if not isinstance(payload, dict):
            raise StripeError(400, "Invalid hash", param="payload")
        meter = next((m for m in self.all("billing.meter") if m["event_name"] == event_name), None)
        cust_key = meter["customer_mapping"]["event_payload_key"] if meter else "stripe_customer_id"
        value_key = meter["value_settings"]["event_payload_key"] if meter else "value"
        if not payload.get(cust_key):
            raise missing(f"payload[{cust_key}]")
        if value_key in payload:
            try:
                float(payload[value_key])
            except (TypeError, ValueError):
                raise StripeError(
                    400,
                    f"The value `{payload[value_key]}` for payload[{value_key}] is not a valid "
                    "number.",
                    param=f"payload[{value_key}]",
                ) from None
        now = self.now()
        ts = as_int(params, "timestamp", now)
        assert ts is not None
        if ts < now - 35 * 86400 or ts > now + 300:
            raise StripeError(
                400,
                "Timestamp must be within the past 35 calendar days or up to 5 minutes in the "
                "future.",
                param="timestamp",
            )
        identifier = as_str(params, "identifier") or self.new_id("mevt", 20)
        seen = self.meter_identifiers.get(identifier)
        if seen is not None and seen > now - self.meter_dedup_window_s:
            raise StripeError(
                400,
                f"An event already exists with identifier {identifier}.",
                headers={"Stripe-Should-Retry": "false"},
                cacheable=True,
            )
        self.meter_identifiers[identifier] = now
        evt = {
            "object": "billing.meter_event",
            "created": now,
            "event_name": event_name,
            "identifier": identifier,
            "livemode": False,
            "payload": {k: str(v) for k, v in payload.items()},
            "timestamp": ts,
        }
        self.meter_events.append(evt)
        return evt

    def meter_usage(self, meter: dict[str, Any], customer_id: str, start: int, end: int) -> float:
        cust_key = meter["customer_mapping"]["event_payload_key"]
        value_key = meter["value_settings"]["event_payload_key"]
        hits = [
            e
            for e in self.meter_events
            if e["event_name"] == meter["event_name"]
            and e["payload"].get(cust_key) == customer_id
            and start <= e["timestamp"] < end
        ]
        formula = meter["default_aggregation"]["formula"]
        if formula == "count":
            return float(len(hits))
        values = [float(e["payload"].get(value_key, 0)) for e in hits]
        if formula == "last":
            return values[-1] if values else 0.0
        return sum(values)

    def meter_event_summaries(self, meter_id: str, params: dict[str, Any]) -> dict[str, Any]:
        meter = self.get(meter_id, "billing.meter")
        customer = as_str(params, "customer", required=True)
        start = as_int(params, "start_time", required=True)
        end = as_int(params, "end_time", required=True)
        assert customer and start is not None and end is not None
        window = as_enum(params, "value_grouping_window", ("day", "hour"), None)
        step = {"day": 86_400, "hour": 3_600}.get(window or "", end - start)
        if window and (start % step or end % step):
            raise StripeError(
                400,
                f"start_time and end_time must be aligned to {window} boundaries when "
                "value_grouping_window is set.",
                param="start_time",
            )
        summaries = [
            {
                "id": f"mtrusg_{meter_id}_{customer}_{t}_{min(t + step, end)}",
                "object": "billing.meter_event_summary",
                "aggregated_value": self.meter_usage(meter, customer, t, min(t + step, end)),
                "end_time": min(t + step, end),
                "livemode": False,
                "meter": meter["id"],
                "start_time": t,
            }
            for t in range(start, end, max(step, 1))
        ]
        # newest window first, paged like every list
        return self.page(
            list(reversed(summaries)), params, f"/v1/billing/meters/{meter_id}/event_summaries"
        )

    # --- shared -----------------------------------------------------------------------------------

    meter_events: list[dict[str, Any]]
    meter_identifiers: dict[str, int]
    meter_dedup_window_s: int = 86400

    def _updated(self, etype: str, obj: dict[str, Any], before: dict[str, Any]) -> None:
        changes = diff(before, self.render(obj))
        if changes:
            self.event(etype, obj, changes)


#: a coupon's ``name`` is "displayed to customers on, for instance, invoices": at most 40 characters
COUPON_NAME_MAX = 40


def coupon_name(params: dict[str, Any]) -> str | None:
    """The coupon ``name`` parameter, refused above 40 characters as Stripe does."""
    name = as_str(params, "name")
    if name is not None and len(name) > COUPON_NAME_MAX:
        raise StripeError(
            400,
            f"Invalid string: {name[:COUPON_NAME_MAX]}...; must be at most "
            f"{COUPON_NAME_MAX} characters",
            param="name",
        )
    return name
