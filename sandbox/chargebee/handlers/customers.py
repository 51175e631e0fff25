"""Customers and promotional credits."""

from __future__ import annotations

from typing import Any

from .. import models
from ..errors import duplicate, param_error
from ..forms import to_bool, to_int, to_json_object
from ..listing import CONTROL_PARAMS, apply_filters, paginate, paginate_indexed, wanted_ids
from ..state import public, random_id
from .base import Base, Call, _required

CUSTOMER_TEXT_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "company",
    "phone",
    "locale",
    "preferred_currency_code",
    "invoice_notes",
    "vat_number",
)


class CustomerHandlers(Base):
    def _custom_fields(self, p: dict[str, Any]) -> dict[str, Any]:
        """``cf_<name>=value`` parameters: only custom fields configured for customers on the
        site are accepted; an empty value clears the field (the client sends ``None`` as "")."""
        out: dict[str, Any] = {}
        for name, value in p.items():
            if not name.startswith("cf_"):
                continue
            config = self.store.custom_fields.get(name)
            if config is None or config.get("entity_type") != "customer":
                raise param_error(name, f"{name} : is not a custom field of customers")
            if not isinstance(value, str):
                raise param_error(name, f"{name} : invalid value")
            if len(value) > int(config.get("max_length") or 99):
                raise param_error(name, f"{name} : cannot be more than 99 characters")
            out[name] = value or None
        return out

    def _customer_fields(self, p: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = self._custom_fields(p)
        for name in CUSTOMER_TEXT_FIELDS:
            if name in p:
                if not isinstance(p[name], str):
                    raise param_error(name, f"{name} : invalid value")
                fields[name] = p[name] or None
        if fields.get("email") and "@" not in fields["email"]:
            raise param_error("email", "email : invalid email address")
        if "auto_collection" in p:
            if p["auto_collection"] not in ("on", "off"):
                raise param_error("auto_collection", "auto_collection : invalid value")
            fields["auto_collection"] = p["auto_collection"]
        if "net_term_days" in p:
            fields["net_term_days"] = self.net_term_days(p) or 0
        if "meta_data" in p:
            fields["meta_data"] = to_json_object(p["meta_data"], "meta_data")
        if isinstance(p.get("billing_address"), dict):
            fields["billing_address"] = models.billing_address(p["billing_address"])
        return fields

    def create_customer(self, call: Call) -> dict[str, Any]:
        p = call.params
        id_ = p.get("id") or random_id()
        if len(id_) > 50:
            raise param_error("id", "id : cannot be more than 50 characters")
        if id_ in self.store.customers:
            raise duplicate("id", id_)
        c = models.new_customer(self.store, id_, self._customer_fields(p))
        self.store.customers[id_] = c
        card_spec = p.get("card") if isinstance(p.get("card"), dict) else None
        if card_spec is not None:
            number = str(card_spec.get("number") or "4111111111111111")
            spec = {**card_spec, "last4": number[-4:], "iin": number[:6]}
            self.store.cards[id_] = models.new_card(self.store, c, spec)
        elif self.em.default_card:
            self.store.cards[id_] = models.new_card(self.store, c, {})
        out = self.customer_wrap(c)
        self.event(call, "customer_created", dict(out))
        return out

    def list_customers(self, call: Call) -> dict[str, Any]:
        include_deleted = to_bool(call.params.get("include_deleted", False), "include_deleted")
        ids = wanted_ids(call.params, "id")
        source = (
            self.store.customers.values()
            if ids is None
            else [self.store.customers[i] for i in dict.fromkeys(ids) if i in self.store.customers]
        )
        # Chargebee filters on a custom field only when the site has it made searchable (a
        # support-enabled setting); otherwise the filter is silently dropped and the unfiltered
        # list comes back (chargebee-typescript issues #6 and #69). The sandbox does the same, so
        # a caller that forgets to check what came back is caught here, not in production.
        unsearchable = [
            name
            for name in call.params
            if name.startswith("cf_")
            and not (self.store.custom_fields.get(name) or {}).get("searchable")
        ]
        ignored = {*CONTROL_PARAMS, "relationship", *unsearchable}
        if ids is None and not any(
            isinstance(spec, dict) and name not in ignored for name, spec in call.params.items()
        ):  # the whole site, unfiltered: one page read from the sorted index
            page = paginate_indexed(
                self.store.customers_by_created(),
                self.store.customers,
                lambda c: include_deleted or not c["deleted"],
                call.params,
                self.customer_wrap,
                ("created_at", "updated_at"),
                "created_at",
            )
            if page is not None:
                return page
        rows = [c for c in source if include_deleted or not c["deleted"]]
        rows = apply_filters(rows, call.params, ignore=("relationship", *unsearchable))
        return paginate(
            rows, call.params, self.customer_wrap, ("created_at", "updated_at"), "created_at"
        )

    def retrieve_customer(self, call: Call) -> dict[str, Any]:
        return self.customer_wrap(self.customer(call.path["id"]))

    def update_customer(self, call: Call) -> dict[str, Any]:
        c = self.customer(call.path["id"])
        c.update(self._customer_fields(call.params))
        self.store.stamp(c)
        out = self.customer_wrap(c)
        self.event(call, "customer_changed", dict(out))
        return out

    def update_billing_info(self, call: Call) -> dict[str, Any]:
        c = self.customer(call.path["id"])
        addr = call.params.get("billing_address")
        if isinstance(addr, dict):
            c["billing_address"] = models.billing_address(addr)
        for name in ("vat_number",):
            if name in call.params:
                c[name] = call.params[name] or None
        self.store.stamp(c)
        out = self.customer_wrap(c)
        self.event(call, "customer_changed", dict(out))
        return out

    def delete_customer(self, call: Call) -> dict[str, Any]:
        c = self.customer(call.path["id"])
        c["deleted"] = True
        self.store.stamp(c)
        for sub in self.store.subscriptions.values():
            if sub["customer_id"] == c["id"] and not sub.get("deleted"):
                sub["deleted"] = True
                self.store.stamp(sub)
        out = self.customer_wrap(c)
        self.event(call, "customer_deleted", dict(out))
        return out

    def _add_credits(self, call: Call, c: dict[str, Any]) -> dict[str, Any]:
        p = call.params
        if p.get("amount") in (None, "") and p.get("amount_in_decimal") not in (None, ""):
            try:
                amount = round(float(p["amount_in_decimal"]) * 100)
            except ValueError:
                raise param_error("amount_in_decimal", "amount_in_decimal : invalid") from None
        else:
            amount = to_int(_required(p, "amount"), "amount")
        if amount <= 0:
            raise param_error("amount", "amount : should be greater than 0")
        description = _required(p, "description")
        c["promotional_credits"] = int(c.get("promotional_credits") or 0) + amount
        self.store.stamp(c)
        pc = models.new_promotional_credit(self.store, c, amount, description, p)
        self.store.promotional_credits[pc["id"]] = pc
        self.event(
            call,
            "promotional_credits_added",
            {"customer": public(c), "promotional_credit": public(pc)},
        )
        return pc

    def add_promotional_credits(self, call: Call) -> dict[str, Any]:
        c = self.customer(call.path["id"])
        self._add_credits(call, c)
        return {"customer": public(c)}

    def promotional_credits_add(self, call: Call) -> dict[str, Any]:
        c = self.customer(_required(call.params, "customer_id"), "customer_id")
        pc = self._add_credits(call, c)
        return {"customer": public(c), "promotional_credit": public(pc)}
