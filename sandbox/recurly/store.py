"""The Recurly site's state and its business rules (no HTTP here).

Objects are kept as the JSON the API answers (``object`` typed, timestamps as
``2024-01-01T00:00:00Z``, money as decimal numbers in the currency's major unit, as Recurly sends
it). Keys starting with ``_`` are private and never leave the emulator (see :func:`public`).
Every state change appends the webhook notifications it causes to ``Store.pending``.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from . import metering
from .errors import (
    RecurlyError,
    bad_request,
    immutable_subscription,
    invalid_transition,
    not_found,
    validation,
)

DAY = 86_400
MONTH = 30 * DAY
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

#: decline codes → the customer-facing message Recurly's transaction errors carry
DECLINE_MESSAGES = {
    "declined": "Your transaction was declined. Please use a different card.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your credit card has expired.",
    "call_issuer": "Your card was declined. Please call your bank.",
    "fraud_gateway": "Your transaction was declined. Please contact support.",
    "gateway_error": "An error occurred while processing your transaction.",
    "no_billing_information": "The account has no billing information on file.",
}
#: decline codes whose category is "hard" (do not retry with the same card)
HARD_DECLINES = {"expired_card", "fraud_gateway", "no_billing_information", "declined_card_number"}
#: gateway codes other platforms' scenarios use → Recurly's (transaction_error ``code`` from
#: its ErrorCodeEnum, ``decline_code`` from its DeclineCodeEnum)
_RECURLY_CODES: dict[str, tuple[str, str | None]] = {
    "processing_error": ("gateway_error", None),
    "card_declined": ("declined", "generic_decline"),
    "declined": ("declined", "generic_decline"),
    "insufficient_funds": ("insufficient_funds", "insufficient_funds"),
    "expired_card": ("expired_card", "expired_card"),
    "fraudulent": ("fraud_gateway", "fraudulent"),
    "call_issuer": ("call_issuer", "call_issuer"),
    "no_billing_information": ("no_billing_information", None),
}


def recurly_decline(code: str) -> tuple[str, str | None]:
    """(code, decline_code) as Recurly reports a decline another platform calls ``code``."""
    return _RECURLY_CODES.get(code, (code, None))


def iso(ts: float | None) -> str | None:
    """Recurly's timestamp format; the client parses it with ``%Y-%m-%dT%H:%M:%S%z`` (fractional
    seconds would raise)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any, param: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise validation(param, "is not a valid date-time") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    raise validation(param, "is not a valid date-time")


def money(value: float) -> float:
    return round(float(value) + 0.0, 2)


def public(obj: Any) -> Any:
    """The object as the API shows it: private ``_`` keys dropped, recursively."""
    if isinstance(obj, dict):
        return {k: public(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [public(v) for v in obj]
    return obj


def new_id(n: int = 13) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(n))


def new_uuid() -> str:
    return secrets.token_hex(16)


class Store:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.accounts: dict[str, dict[str, Any]] = {}
        self.plans: dict[str, dict[str, Any]] = {}
        self.add_ons: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.transactions: dict[str, dict[str, Any]] = {}
        self.coupons: dict[str, dict[str, Any]] = {}
        self.redemptions: dict[str, dict[str, Any]] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self.line_items: dict[str, dict[str, Any]] = {}
        self.usage: dict[str, dict[str, Any]] = {}
        self.campaigns: dict[str, dict[str, Any]] = {}
        self.custom_field_definitions: dict[str, dict[str, Any]] = {}
        self.invoice_number = 1000
        self.rate_hits: deque[float] = deque()
        #: webhook notifications caused by the current request: (object_type, event_type, ids)
        self.pending: list[tuple[str, str, dict[str, Any]]] = []
        #: every notification ever sent, oldest first (the control plane shows them)
        self.notifications: list[dict[str, Any]] = []
        #: accounts with a write in flight (Recurly: 422 simultaneous_request)
        self.busy_accounts: set[str] = set()
        self._seq = 0

    # --- small helpers ------------------------------------------------------------------------

    def now(self) -> float:
        return float(int(self.clock()))

    def seq(self) -> int:
        self._seq += 1
        return self._seq

    def stamp(self, obj: dict[str, Any], created: float | None = None) -> dict[str, Any]:
        now = self.now()
        if "created_at" not in obj or created is not None:
            obj["created_at"] = iso(created if created is not None else now)
            obj["_created"] = created if created is not None else now
            obj["_seq"] = self.seq()
        obj["updated_at"] = iso(now)
        obj["_updated"] = now
        return obj

    def notify(self, object_type: str, event_type: str, **ids: Any) -> None:
        self.pending.append((object_type, event_type, ids))

    # --- lookups with Recurly's ID prefixes ---------------------------------------------------

    def _by(self, table: dict[str, dict[str, Any]], ident: str, kind: str, prefix: str, field: str):
        if ident.startswith(prefix):
            value = ident[len(prefix) :]
            for obj in table.values():
                if str(obj.get(field)) == value and not obj.get("_removed"):
                    return obj
            raise not_found(kind, ident)
        obj = table.get(ident)
        if obj is None or obj.get("_removed"):
            raise not_found(kind, ident)
        return obj

    def account(self, ident: str) -> dict[str, Any]:
        return self._by(self.accounts, ident, "Account", "code-", "code")

    def plan(self, ident: str) -> dict[str, Any]:
        return self._by(self.plans, ident, "Plan", "code-", "code")

    def coupon(self, ident: str) -> dict[str, Any]:
        return self._by(self.coupons, ident, "Coupon", "code-", "code")

    def subscription(self, ident: str) -> dict[str, Any]:
        return self._by(self.subscriptions, ident, "Subscription", "uuid-", "uuid")

    def transaction(self, ident: str) -> dict[str, Any]:
        return self._by(self.transactions, ident, "Transaction", "uuid-", "uuid")

    def invoice(self, ident: str) -> dict[str, Any]:
        return self._by(self.invoices, ident, "Invoice", "number-", "number")

    def add_on(self, plan: dict[str, Any], ident: str) -> dict[str, Any]:
        for a in self.add_ons.values():
            if a["plan_id"] != plan["id"]:
                continue
            if a["id"] == ident or (ident.startswith("code-") and a["code"] == ident[5:]):
                return a
        raise not_found("AddOn", ident)

    def note(self, account: dict[str, Any], ident: str) -> dict[str, Any]:
        n = self.notes.get(ident)
        if n is None or n["account_id"] != account["id"] or n.get("_removed"):
            raise not_found("AccountNote", ident)
        return n

    # --- minis --------------------------------------------------------------------------------

    @staticmethod
    def account_mini(a: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": a["id"],
            "object": "account",
            "code": a["code"],
            "email": a.get("email"),
            "first_name": a.get("first_name"),
            "last_name": a.get("last_name"),
            "company": a.get("company"),
            "parent_account_id": None,
            "bill_to": "self",
            "dunning_campaign_id": a.get("dunning_campaign_id"),
        }

    @staticmethod
    def plan_mini(p: dict[str, Any]) -> dict[str, Any]:
        return {"id": p["id"], "object": "plan", "code": p["code"], "name": p["name"]}

    @staticmethod
    def invoice_mini(i: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": i["id"],
            "object": "invoice",
            "number": i["number"],
            "business_entity_id": None,
            "type": i["type"],
            "state": i["state"],
        }

    # --- custom fields ------------------------------------------------------------------------

    def custom_fields(self, related_type: str, raw: Any, current: list[dict[str, Any]]):
        """Merge ``raw`` ([{name, value}]) into ``current``. Names must be defined on the site for
        ``related_type`` (Recurly answers 422 otherwise); an empty value removes the field."""
        if raw is None:
            return current
        if not isinstance(raw, list):
            raise validation("custom_fields", "must be an array")
        merged = {f["name"]: f["value"] for f in current}
        for entry in raw:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise validation("custom_fields", "entries need a name")
            name = entry["name"]
            if f"{related_type}:{name}" not in self.custom_field_definitions:
                raise validation(
                    "custom_fields", f"'{name}' is not a custom field defined for {related_type}"
                )
            value = entry.get("value")
            if value in (None, ""):
                merged.pop(name, None)
            else:
                if not isinstance(value, str) or len(value) > 255:
                    raise validation("custom_fields", f"'{name}' must be a string of ≤ 255")
                merged[name] = value
        return [{"name": k, "value": v} for k, v in merged.items()]

    def define_custom_field(self, related_type: str, name: str, label: str | None = None):
        d = {
            "id": new_id(),
            "object": "custom_field_definition",
            "related_type": related_type,
            "name": name,
            "user_access": "write",
            "display_name": label or name,
            "tooltip": None,
        }
        self.custom_field_definitions[f"{related_type}:{name}"] = self.stamp(d)
        return d

    # --- accounts -----------------------------------------------------------------------------

    def create_account(self, body: dict[str, Any], created: float | None = None) -> dict[str, Any]:
        code = body.get("code")
        if not isinstance(code, str) or not code.strip():
            raise validation("code", "can't be blank")
        if len(code) > 50:
            raise validation("code", "is too long (maximum is 50 characters)")
        if any(a["code"] == code for a in self.accounts.values()):
            # Recurly's natural-key protection: a code is unique on the site, for ever
            raise validation("code", "has already been taken")
        account: dict[str, Any] = {
            "id": new_id(),
            "object": "account",
            "code": code,
            "state": "active",
            "hosted_login_token": new_id(32),
            "email": body.get("email"),
            "first_name": body.get("first_name"),
            "last_name": body.get("last_name"),
            "company": body.get("company"),
            "username": body.get("username"),
            "address": _address(body.get("address")),
            "bill_to": "self",
            "preferred_locale": body.get("preferred_locale"),
            "cc_emails": body.get("cc_emails"),
            "tax_exempt": bool(body.get("tax_exempt", False)),
            "dunning_campaign_id": body.get("dunning_campaign_id"),
            "has_live_subscription": False,
            "has_active_subscription": False,
            "has_future_subscription": False,
            "has_canceled_subscription": False,
            "has_paused_subscription": False,
            "has_past_due_invoice": False,
            "billing_info": None,
            "custom_fields": self.custom_fields("account", body.get("custom_fields"), []),
            "deleted_at": None,
        }
        if account["dunning_campaign_id"] and account["dunning_campaign_id"] not in self.campaigns:
            raise validation("dunning_campaign_id", "is not a dunning campaign of this site")
        self.stamp(account, created)
        self.accounts[account["id"]] = account
        if body.get("billing_info") is not None:
            self.set_billing_info(account, body["billing_info"], notify=False)
        self.notify("account", "created", account_code=code)
        return account

    def update_account(self, account: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        if "code" in body and body["code"] != account["code"]:
            if any(a["code"] == body["code"] for a in self.accounts.values()):
                raise validation("code", "has already been taken")
            account["code"] = body["code"]
        if "address" in body:  # AccountUpdate's Address: the parts given replace those held
            account["address"] = _address(
                {**(account.get("address") or {}), **(body["address"] or {})}
            )
        for name in (
            "email",
            "first_name",
            "last_name",
            "company",
            "username",
            "cc_emails",
            "preferred_locale",  # AccountUpdate carries it, as AccountCreate does
        ):
            if name in body:
                account[name] = body[name]
        if "dunning_campaign_id" in body:
            cid = body["dunning_campaign_id"]
            if cid and cid not in self.campaigns:
                raise validation("dunning_campaign_id", "is not a dunning campaign of this site")
            account["dunning_campaign_id"] = cid or None
        account["custom_fields"] = self.custom_fields(
            "account", body.get("custom_fields"), account["custom_fields"]
        )
        if body.get("billing_info") is not None:
            self.set_billing_info(account, body["billing_info"], notify=False)
        self.stamp(account)
        self.notify("account", "updated", account_code=account["code"])
        return account

    def deactivate_account(self, account: dict[str, Any]) -> dict[str, Any]:
        """DELETE /accounts/{id}: closes the account, terminates its live subscriptions (no
        refund), removes its billing info. The code stays taken."""
        if account["state"] == "inactive":
            return account
        for sub in self.subscriptions_of(account):
            if sub["state"] in ("active", "paused", "future", "canceled"):
                self.terminate(sub, "none")
        account["state"] = "inactive"
        account["deleted_at"] = iso(self.now())
        account["billing_info"] = None
        self.stamp(account)
        self.notify("account", "deactivated", account_code=account["code"])
        return account

    def reactivate_account(self, account: dict[str, Any]) -> dict[str, Any]:
        account["state"] = "active"
        account["deleted_at"] = None
        self.stamp(account)
        self.notify("account", "reactivated", account_code=account["code"])
        return account

    def require_open(self, account: dict[str, Any]) -> None:
        if account["state"] == "inactive":
            raise validation("account", "is closed")

    def set_billing_info(
        self, account: dict[str, Any], body: dict[str, Any], notify: bool = True
    ) -> dict[str, Any]:
        """Tokens stand for cards here: ``token_id`` "tok_<anything>" is a working Visa; the
        sandbox's test token ``tok_decline_<code>`` makes charges decline with ``<code>``."""
        if not isinstance(body, dict):
            raise validation("billing_info", "must be an object")
        number = str(body.get("number") or "")
        token = str(body.get("token_id") or "")
        if not number and not token:
            raise validation("billing_info", "needs a number or a token_id")
        decline = None
        if token.startswith("tok_decline_"):
            decline = token.removeprefix("tok_decline_")
        last4 = number[-4:] if number else "1111"
        now = self.now()
        year = int(body.get("year") or datetime.fromtimestamp(now, UTC).year + 3)
        info = {
            "id": new_id(),
            "object": "billing_info",
            "account_id": account["id"],
            "first_name": body.get("first_name") or account.get("first_name"),
            "last_name": body.get("last_name") or account.get("last_name"),
            "company": body.get("company") or account.get("company"),
            "address": body.get("address"),
            "vat_number": None,
            "valid": decline != "expired_card",
            "payment_method": {
                "object": "credit_card",
                "card_type": "Visa",
                "first_six": "411111",
                "last_four": last4,
                "exp_month": int(body.get("month") or 12),
                "exp_year": year,
            },
            "fraud": None,
            "primary_payment_method": True,
            "backup_payment_method": False,
            "updated_by": None,
            "_decline_code": decline,
        }
        self.stamp(info)
        account["billing_info"] = info
        self.stamp(account)
        if notify:
            self.notify("billing_info", "updated", account_code=account["code"])
        return info

    def subscriptions_of(self, account: dict[str, Any]) -> list[dict[str, Any]]:
        return [s for s in self.subscriptions.values() if s["account"]["id"] == account["id"]]

    def refresh_flags(self, account: dict[str, Any]) -> None:
        states = {s["state"] for s in self.subscriptions_of(account)}
        account["has_live_subscription"] = bool(states & {"active", "canceled", "future", "paused"})
        account["has_active_subscription"] = "active" in states
        account["has_future_subscription"] = "future" in states
        account["has_canceled_subscription"] = "canceled" in states
        account["has_paused_subscription"] = "paused" in states
        account["has_past_due_invoice"] = any(
            i["account"]["id"] == account["id"] and i["state"] == "past_due"
            for i in self.invoices.values()
        )

    def balance(self, account: dict[str, Any]) -> dict[str, Any]:
        """What the account owes per currency: open invoice balances minus uninvoiced credit."""
        amounts: dict[str, float] = {}
        for inv in self.invoices.values():
            if inv["account"]["id"] == account["id"] and inv["state"] in ("pending", "past_due"):
                amounts[inv["currency"]] = amounts.get(inv["currency"], 0.0) + inv["balance"]
        for li in self.line_items.values():
            if li["account"]["id"] == account["id"] and li["state"] == "pending":
                amounts[li["currency"]] = amounts.get(li["currency"], 0.0) + li["amount"]
        self.refresh_flags(account)
        return {
            "object": "account_balance",
            "account": self.account_mini(account),
            "past_due": account["has_past_due_invoice"],
            "balances": [
                {
                    "currency": c,
                    "amount": money(v),
                    "available_credit_amount": money(max(-v, 0.0)),
                    "processing_prepayment_amount": 0.0,
                }
                for c, v in sorted(amounts.items())
            ],
        }

    # --- notes --------------------------------------------------------------------------------

    def create_note(self, account: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        message = body.get("message")
        if not isinstance(message, str) or not message.strip():
            raise validation("message", "can't be blank")
        if len(message) > 2048:
            raise validation("message", "is too long (maximum is 2048 characters)")
        note = {
            "id": new_id(),
            "object": "account_note",
            "account_id": account["id"],
            "user": None,
            "message": message,
        }
        self.stamp(note)
        note.pop("updated_at")  # notes are immutable: the API shows created_at only
        self.notes[note["id"]] = note
        return note

    # --- plans, add-ons, coupons, campaigns ----------------------------------------------------

    def create_plan(self, body: dict[str, Any]) -> dict[str, Any]:
        code = body.get("code")
        if not isinstance(code, str) or not code:
            raise validation("code", "can't be blank")
        if not isinstance(body.get("name"), str) or not body["name"]:
            raise validation("name", "can't be blank")
        if any(p["code"] == code for p in self.plans.values()):
            raise validation("code", "has already been taken")
        currencies = body.get("currencies")
        if not isinstance(currencies, list) or not currencies:
            raise validation("currencies", "can't be blank")
        plan = {
            "id": new_id(),
            "object": "plan",
            "code": code,
            "state": "active",
            "name": body["name"],
            "description": body.get("description"),
            "interval_unit": body.get("interval_unit", "months"),
            "interval_length": int(body.get("interval_length", 1)),
            "trial_unit": "months",
            "trial_length": 0,
            "trial_requires_billing_info": True,
            "total_billing_cycles": body.get("total_billing_cycles"),
            "auto_renew": bool(body.get("auto_renew", True)),
            "pricing_model": "fixed",
            "custom_fields": self.custom_fields("plan", body.get("custom_fields"), []),
            "accounting_code": body.get("accounting_code"),
            "tax_exempt": False,
            "currencies": [
                {
                    "currency": str(c["currency"]).upper(),
                    "setup_fee": money(c.get("setup_fee", 0)),
                    "unit_amount": money(c["unit_amount"]),
                }
                for c in currencies
            ],
            "allow_any_item_on_subscriptions": False,
            "dunning_campaign_id": body.get("dunning_campaign_id"),
            "deleted_at": None,
        }
        if plan["interval_unit"] not in ("days", "months"):
            raise validation("interval_unit", "is not included in the list")
        self.stamp(plan)
        self.plans[plan["id"]] = plan
        for add_on in body.get("add_ons") or []:
            self.create_add_on(plan, add_on)
        return plan

    def create_add_on(self, plan: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        code = body.get("code")
        if not isinstance(code, str) or not code:
            raise validation("code", "can't be blank")
        if any(a["plan_id"] == plan["id"] and a["code"] == code for a in self.add_ons.values()):
            raise validation("code", "has already been taken")
        add_on_type = body.get("add_on_type", "fixed")
        if add_on_type not in ("fixed", "usage"):
            raise validation("add_on_type", "is not included in the list")
        add_on = {
            "id": new_id(),
            "object": "add_on",
            "plan_id": plan["id"],
            "code": code,
            "state": "active",
            "name": body.get("name") or code,
            "add_on_type": add_on_type,
            "usage_type": "price" if add_on_type == "usage" else None,
            "usage_calculation_type": "cumulative" if add_on_type == "usage" else None,
            "usage_percentage": None,
            "measured_unit_id": None,
            "accounting_code": None,
            "display_quantity": True,
            "default_quantity": int(body.get("default_quantity", 1)),
            "optional": bool(body.get("optional", True)),
            "currencies": [
                {"currency": str(c["currency"]).upper(), "unit_amount": money(c["unit_amount"])}
                for c in body.get("currencies") or []
            ],
            **metering.add_on_tiers(body),  # tier_type and tiers (metering.py)
            "usage_timeframe": "billing_period" if add_on_type == "usage" else None,
            "deleted_at": None,
        }
        self.stamp(add_on)
        self.add_ons[add_on["id"]] = add_on
        return add_on

    def create_coupon(self, body: dict[str, Any]) -> dict[str, Any]:
        code = body.get("code")
        if not isinstance(code, str) or not code:
            raise validation("code", "can't be blank")
        if len(code) > 50:
            raise validation("code", "is too long (maximum is 50 characters)")
        if any(c["code"] == code for c in self.coupons.values()):
            raise validation("code", "has already been taken")
        if not isinstance(body.get("name"), str) or not body["name"]:
            raise validation("name", "can't be blank")
        discount_type = body.get("discount_type")
        if discount_type == "percent":
            percent = body.get("discount_percent")
            if not isinstance(percent, int) or not 1 <= percent <= 100:
                raise validation("discount_percent", "must be an integer between 1 and 100")
            discount: dict[str, Any] = {"type": "percent", "percent": percent}
        elif discount_type == "fixed":
            discount = {
                "type": "fixed",
                "currencies": [
                    {"currency": str(c["currency"]).upper(), "amount": money(c["discount"])}
                    for c in body.get("currencies") or []
                ],
            }
        else:
            raise validation("discount_type", "is not included in the list")
        duration = body.get("duration", "forever")
        if duration not in ("forever", "single_use", "temporal"):
            raise validation("duration", "is not included in the list")
        if duration == "temporal" and not body.get("temporal_amount"):
            raise validation("temporal_amount", "can't be blank")
        coupon = {
            "id": new_id(),
            "object": "coupon",
            "code": code,
            "name": body["name"],
            "state": "redeemable",
            "max_redemptions": body.get("max_redemptions"),
            "max_redemptions_per_account": body.get("max_redemptions_per_account"),
            "unique_coupon_codes_count": 0,
            "coupon_type": "single_code",
            "duration": duration,
            "temporal_amount": body.get("temporal_amount"),
            "temporal_unit": body.get("temporal_unit", "month") if duration == "temporal" else None,
            "applies_to_all_plans": bool(body.get("applies_to_all_plans", True)),
            "applies_to_all_items": False,
            "applies_to_non_plan_charges": False,
            "plans": [],
            "items": [],
            "redemption_resource": body.get("redemption_resource", "account"),
            "discount": discount,
            "hosted_page_description": None,
            "invoice_description": body.get("invoice_description"),
            "redeem_by": None,
            "expired_at": None,
        }
        self.stamp(coupon)
        self.coupons[coupon["id"]] = coupon
        return coupon

    def expire_coupon(self, coupon: dict[str, Any]) -> dict[str, Any]:
        coupon["state"] = "expired"
        coupon["expired_at"] = iso(self.now())
        self.stamp(coupon)
        return coupon

    def redeem(
        self, account: dict[str, Any], coupon: dict[str, Any], subscription_id: str | None
    ) -> dict[str, Any]:
        self.require_open(account)
        if coupon["state"] != "redeemable":
            raise validation("coupon_id", f"coupon is {coupon['state']}")
        sub = None
        if subscription_id:
            sub = self.subscription(subscription_id)
            if sub["account"]["id"] != account["id"]:
                raise validation("subscription_id", "does not belong to this account")
            if sub["state"] not in ("active", "future", "paused", "canceled"):
                raise immutable_subscription(f"Subscription is {sub['state']}")
        mine = [
            r
            for r in self.redemptions.values()
            if r["account"]["id"] == account["id"] and r["coupon"]["id"] == coupon["id"]
        ]
        limit = coupon.get("max_redemptions_per_account")
        if limit and len(mine) >= limit:
            raise validation("coupon", "has already been redeemed by this account")
        red = {
            "id": new_id(),
            "object": "coupon_redemption",
            "account": {"id": account["id"], "object": "account", "code": account["code"]},
            "subscription_id": sub["id"] if sub else None,
            "coupon": coupon,
            "state": "active",
            "currency": sub["currency"] if sub else "USD",
            "discounted": 0.0,
            "removed_at": None,
            "_until": self._coupon_until(coupon),
        }
        self.stamp(red)
        self.redemptions[red["id"]] = red
        if sub is not None:
            self._price(sub)
            self.notify("subscription", "updated", uuid=sub["uuid"])
        return red

    def _coupon_until(self, coupon: dict[str, Any]) -> float | None:
        if coupon["duration"] != "temporal":
            return None
        unit = {"day": DAY, "week": 7 * DAY, "month": MONTH, "year": 365 * DAY}
        return self.now() + int(coupon["temporal_amount"]) * unit[coupon["temporal_unit"]]

    def remove_redemption(self, red: dict[str, Any]) -> dict[str, Any]:
        red["state"] = "inactive"
        red["removed_at"] = iso(self.now())
        self.stamp(red)
        return red

    def active_redemptions(
        self, account: dict[str, Any], sub: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        now = self.now()
        out = []
        for r in self.redemptions.values():
            if r["account"]["id"] != account["id"] or r["state"] != "active":
                continue
            if r.get("_until") is not None and r["_until"] <= now:
                continue
            if sub is not None and r["subscription_id"] not in (None, sub["id"]):
                continue
            out.append(r)
        return out

    def create_campaign(self, body: dict[str, Any]) -> dict[str, Any]:
        campaign = {
            "id": body.get("id") or new_id(),
            "object": "dunning_campaign",
            "code": body["code"],
            "name": body.get("name", body["code"]),
            "description": body.get("description"),
            "default_campaign": bool(body.get("default_campaign", False)),
            "dunning_cycles": [
                {
                    "type": cycle.get("type", "automatic"),
                    "applies_to_manual_trial": False,
                    "first_communication_interval": cycle.get("first_communication_interval", 3),
                    "send_immediately_on_hard_decline": False,
                    "intervals": [
                        {"days": d, "email_template": None}
                        for d in cycle.get("retry_days", [3, 5, 7])
                    ],
                    "expire_subscription": bool(cycle.get("expire_subscription", True)),
                    "fail_invoice": bool(cycle.get("fail_invoice", True)),
                    "total_dunning_days": sum(cycle.get("retry_days", [3, 5, 7])),
                    "total_recycling_days": sum(cycle.get("retry_days", [3, 5, 7])),
                    "version": 1,
                    "created_at": iso(self.now()),
                    "updated_at": iso(self.now()),
                }
                for cycle in body.get("dunning_cycles") or [{}]
            ],
            "deleted_at": None,
        }
        if campaign["default_campaign"]:
            for other in self.campaigns.values():
                other["default_campaign"] = False
        self.stamp(campaign)
        self.campaigns[campaign["id"]] = campaign
        return campaign

    def campaign_for(self, account: dict[str, Any]) -> dict[str, Any] | None:
        """The campaign that dunns this account: its own, else the site default (if any)."""
        cid = account.get("dunning_campaign_id")
        if cid and cid in self.campaigns:
            return self.campaigns[cid]
        return next((c for c in self.campaigns.values() if c["default_campaign"]), None)

    # --- subscriptions ------------------------------------------------------------------------

    def _plan_amount(self, plan: dict[str, Any], currency: str) -> float:
        for c in plan["currencies"]:
            if c["currency"] == currency:
                return c["unit_amount"]
        raise validation("currency", f"is not a currency of plan {plan['code']}")

    def _sub_add_ons(
        self, plan: dict[str, Any], raw: Any, currency: str, sub_id: str
    ) -> list[dict[str, Any]]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise validation("add_ons", "must be an array")
        out = []
        for entry in raw:
            if not isinstance(entry, dict) or not entry.get("code"):
                raise validation("add_ons", "entries need a code")
            try:
                add_on = self.add_on(plan, "code-" + str(entry["code"]))
            except RecurlyError:
                raise validation(
                    "add_ons", f"add-on '{entry['code']}' is not on plan {plan['code']}"
                ) from None
            price = next(
                (c["unit_amount"] for c in add_on["currencies"] if c["currency"] == currency),
                None,
            )
            if entry.get("unit_amount") is not None:
                price = money(entry["unit_amount"])
            if price is None:
                raise validation("add_ons", f"add-on '{add_on['code']}' has no {currency} price")
            quantity = int(entry.get("quantity", add_on["default_quantity"]))
            if quantity < 0:
                raise validation("quantity", "must be greater than or equal to 0")
            sa = {
                "id": new_id(),
                "object": "subscription_add_on",
                "subscription_id": sub_id,
                "add_on": {
                    "id": add_on["id"],
                    "object": "add_on",
                    "code": add_on["code"],
                    "name": add_on["name"],
                    "add_on_type": add_on["add_on_type"],
                    "usage_type": add_on["usage_type"],
                },
                "add_on_source": "plan_add_on",
                "quantity": quantity,
                "unit_amount": price,
                "revenue_schedule_type": "evenly",
                **metering.subscription_tiers(add_on, currency),  # metering.py
                "usage_calculation_type": add_on["usage_calculation_type"],
                "usage_timeframe": add_on["usage_timeframe"],
                "expired_at": None,
            }
            out.append(self.stamp(sa))
        return out

    def _price(self, sub: dict[str, Any]) -> None:
        """Recompute subtotal / total (coupon discounts applied to the recurring amount)."""
        fixed_add_ons = [a for a in sub["add_ons"] if a["add_on"]["add_on_type"] == "fixed"]
        add_ons_total = sum(a["unit_amount"] * a["quantity"] for a in fixed_add_ons)
        subtotal = sub["unit_amount"] * sub["quantity"] + add_ons_total
        account = self.accounts[sub["account"]["id"]]
        keep = 1.0
        minus = 0.0
        reds = self.active_redemptions(account, sub)
        for r in reds:
            d = r["coupon"]["discount"]
            if d["type"] == "percent":
                keep *= 1 - d["percent"] / 100
            else:
                minus += next(
                    (c["amount"] for c in d["currencies"] if c["currency"] == sub["currency"]), 0
                )
        sub["add_ons_total"] = money(add_ons_total)
        sub["subtotal"] = money(subtotal)
        sub["total"] = money(max(subtotal * keep - minus, 0))
        sub["tax"] = 0.0
        sub["coupon_redemptions"] = [
            {
                "id": r["id"],
                "object": "coupon_redemption",
                "coupon": {
                    "id": r["coupon"]["id"],
                    "object": "coupon",
                    "code": r["coupon"]["code"],
                    "name": r["coupon"]["name"],
                    "state": r["coupon"]["state"],
                    "discount": r["coupon"]["discount"],
                    "coupon_type": "single_code",
                    "expired_at": None,
                },
                "state": r["state"],
                "discounted": r["discounted"],
                "created_at": r["created_at"],
            }
            for r in reds
        ]

    def create_subscription(self, body: dict[str, Any], created: float | None = None):
        """POST /subscriptions: find or create the account by ``account.code``, create the
        subscription, invoice the first period and (automatic collection) charge it. A declined
        charge rolls everything back and answers 422 ``transaction``, as Recurly does."""
        plan_code = body.get("plan_code") or body.get("plan_id")
        if not plan_code:
            raise validation("plan_code", "can't be blank")
        plan = self.plan(plan_code if body.get("plan_id") else "code-" + str(plan_code))
        currency = str(body.get("currency") or "").upper()
        if not currency:
            raise validation("currency", "can't be blank")
        raw_account = body.get("account")
        if not isinstance(raw_account, dict) or not raw_account.get("code"):
            raise validation("account", "can't be blank")
        code = raw_account["code"]
        existing = next((a for a in self.accounts.values() if a["code"] == code), None)
        snapshot = self._snapshot()
        try:
            account = existing or self.create_account(raw_account)
            if existing and raw_account.get("billing_info"):
                self.set_billing_info(existing, raw_account["billing_info"], notify=False)
            self.require_open(account)
            sub = self._new_subscription(account, plan, currency, body, created)
            collection = body.get("collection_method", "automatic")
            if sub["state"] == "future":
                # starts later: nothing is invoiced until it starts (no clock runs here)
                for code_ in body.get("coupon_codes") or []:
                    self.redeem(account, self.coupon("code-" + str(code_)), sub["id"])
                self._price(sub)
                self.notify("subscription", "created", uuid=sub["uuid"])
                return sub
            invoice = self._invoice_subscription(sub, origin="purchase", collection=collection)
            for code_ in body.get("coupon_codes") or []:
                self.redeem(account, self.coupon("code-" + str(code_)), sub["id"])
            if body.get("coupon_codes"):
                self._price(sub)
                self._reprice_invoice(invoice, sub)
            self.notify("subscription", "created", uuid=sub["uuid"])
            if collection == "automatic" and invoice["total"] > 0:
                txn = self.charge(invoice, origin="api", fail_state=None)
                if not txn["success"]:
                    raise self.transaction_error(txn)
        except RecurlyError:
            self._restore(snapshot)
            raise
        return sub

    def _new_subscription(self, account, plan, currency, body, created):
        unit_amount = body.get("unit_amount")
        unit_amount = (
            money(unit_amount) if unit_amount is not None else self._plan_amount(plan, currency)
        )
        quantity = int(body.get("quantity", 1))
        if quantity < 1:
            raise validation("quantity", "must be greater than 0")
        now = created if created is not None else self.now()
        future = False
        if body.get("starts_at") is not None:
            starts = parse_time(body["starts_at"], "starts_at")
            future = starts > self.now()
            now = starts if future else now
        period = self._period(plan)
        total_cycles = body.get("total_billing_cycles", plan.get("total_billing_cycles"))
        sub_id = new_id()
        sub = {
            "id": sub_id,
            "object": "subscription",
            "uuid": new_uuid(),
            "account": self.account_mini(account),
            "plan": self.plan_mini(plan),
            "state": "future" if future else "active",
            "shipping": None,
            "coupon_redemptions": [],
            "pending_change": None,
            "current_period_started_at": iso(now),
            "current_period_ends_at": iso(now + period),
            "current_term_started_at": iso(now),
            "current_term_ends_at": iso(now + period * int(total_cycles or 1)),
            "trial_started_at": None,
            "trial_ends_at": None,
            "remaining_billing_cycles": (int(total_cycles) - 1) if total_cycles else None,
            "total_billing_cycles": int(total_cycles) if total_cycles else None,
            "renewal_billing_cycles": body.get("renewal_billing_cycles"),
            "auto_renew": bool(body.get("auto_renew", plan["auto_renew"])),
            "ramp_intervals": [],
            "paused_at": None,
            "remaining_pause_cycles": None,
            "currency": currency,
            "revenue_schedule_type": "evenly",
            "unit_amount": unit_amount,
            "tax_inclusive": False,
            "quantity": quantity,
            "add_ons": self._sub_add_ons(plan, body.get("add_ons"), currency, sub_id),
            "collection_method": body.get("collection_method", "automatic"),
            "po_number": body.get("po_number"),
            "net_terms": int(body.get("net_terms", 0)),
            "net_terms_type": "net",
            "terms_and_conditions": body.get("terms_and_conditions"),
            "customer_notes": body.get("customer_notes"),
            "expiration_reason": None,
            "custom_fields": self.custom_fields("subscription", body.get("custom_fields"), []),
            "activated_at": None if future else iso(now),
            "canceled_at": None,
            "expires_at": None,
            "bank_account_authorized_at": None,
            "gateway_code": None,
            "billing_info_id": (account.get("billing_info") or {}).get("id"),
            "active_invoice_id": None,
            "started_with_gift": False,
            "converted_at": None,
            "_period_s": period,
        }
        if sub["collection_method"] not in ("automatic", "manual"):
            raise validation("collection_method", "is not included in the list")
        self.stamp(sub, created if created is not None else None)
        self.subscriptions[sub_id] = sub
        self._price(sub)
        self.refresh_flags(account)
        return sub

    @staticmethod
    def _period(plan: dict[str, Any]) -> float:
        length = max(int(plan.get("interval_length") or 1), 1)
        return length * (DAY if plan["interval_unit"] == "days" else MONTH)

    def _snapshot(self) -> dict[str, Any]:
        import copy

        tables = (
            "accounts",
            "subscriptions",
            "invoices",
            "transactions",
            "redemptions",
            "line_items",
        )
        return {
            "tables": {t: copy.deepcopy(getattr(self, t)) for t in tables},
            "pending": list(self.pending),
            "number": self.invoice_number,
        }

    def _restore(self, snap: dict[str, Any]) -> None:
        # a declined purchase leaves only its failed transaction (Recurly keeps declines)
        declined = {
            k: v
            for k, v in self.transactions.items()
            if k not in snap["tables"]["transactions"] and not v["success"]
        }
        for t, value in snap["tables"].items():
            setattr(self, t, value)
        for k, v in declined.items():
            v["invoice"] = None
            self.transactions[k] = v
        self.pending[:] = snap["pending"]
        self.invoice_number = snap["number"]

    def update_subscription(self, sub: dict[str, Any], body: dict[str, Any]):
        """PUT /subscriptions/{id}: non-plan fields only."""
        if sub["state"] in ("expired", "failed"):
            raise immutable_subscription(f"Subscription is {sub['state']} and can't be changed")
        for name in ("terms_and_conditions", "customer_notes", "po_number", "auto_renew"):
            if name in body:
                sub[name] = body[name]
        if "net_terms" in body:
            sub["net_terms"] = int(body["net_terms"])
        if "collection_method" in body:
            sub["collection_method"] = body["collection_method"]
        if "renewal_billing_cycles" in body:
            sub["renewal_billing_cycles"] = body["renewal_billing_cycles"]
        sub["custom_fields"] = self.custom_fields(
            "subscription", body.get("custom_fields"), sub["custom_fields"]
        )
        self.stamp(sub)
        self.notify("subscription", "updated", uuid=sub["uuid"])
        return sub

    def change_subscription(self, sub: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """POST /subscriptions/{id}/change. ``timeframe`` now: applied at once, with proration
        line items (a credit for the unused old amount, a charge for the new one) on an invoice;
        renewal / term_end: a pending change applied at the next renewal."""
        if sub["state"] not in ("active", "paused", "future", "canceled"):
            raise immutable_subscription(f"Subscription is {sub['state']} and can't be changed")
        timeframe = body.get("timeframe", "now")
        if timeframe not in ("now", "bill_date", "renewal", "term_end"):
            raise validation("timeframe", "is not included in the list")
        old_plan = self.plans[sub["plan"]["id"]]
        plan = old_plan
        if body.get("plan_code"):
            plan = self.plan("code-" + str(body["plan_code"]))
        elif body.get("plan_id"):
            plan = self.plan(str(body["plan_id"]))
        unit_amount = body.get("unit_amount")
        if unit_amount is None:
            unit_amount = (
                sub["unit_amount"] if plan is old_plan else self._plan_amount(plan, sub["currency"])
            )
        quantity = int(body.get("quantity", sub["quantity"]))
        if quantity < 1:
            raise validation("quantity", "must be greater than 0")
        add_ons = (
            self._sub_add_ons(plan, body["add_ons"], sub["currency"], sub["id"])
            if body.get("add_ons") is not None
            else [dict(a) for a in sub["add_ons"]]
            if plan is old_plan
            else []
        )
        change = {
            "id": new_id(),
            "object": "subscription_change",
            "subscription_id": sub["id"],
            "plan": self.plan_mini(plan),
            "add_ons": add_ons,
            "unit_amount": money(unit_amount),
            "tax_inclusive": False,
            "quantity": quantity,
            "shipping": None,
            "activate_at": None,
            "activated": False,
            "revenue_schedule_type": "evenly",
            "invoice_collection": None,
            "custom_fields": [],
            "deleted_at": None,
            "billing_info": None,
            "ramp_intervals": [],
        }
        self.stamp(change)
        if timeframe in ("renewal", "term_end"):
            change["activate_at"] = sub["current_period_ends_at"]
            sub["pending_change"] = change
            self.stamp(sub)
            self.notify("subscription", "updated", uuid=sub["uuid"])
            return change
        before = self._recurring(sub)
        sub["plan"] = self.plan_mini(plan)
        sub["unit_amount"] = money(unit_amount)
        sub["quantity"] = quantity
        sub["add_ons"] = add_ons
        sub["pending_change"] = None
        self._price(sub)
        after = self._recurring(sub)
        change["activate_at"] = iso(self.now())
        change["activated"] = True
        self.stamp(sub)
        self._prorate(sub, before, after)
        self.notify("subscription", "updated", uuid=sub["uuid"])
        for coupon_code in body.get("coupon_codes") or []:
            account = self.accounts[sub["account"]["id"]]
            self.redeem(account, self.coupon("code-" + str(coupon_code)), sub["id"])
        return change

    @staticmethod
    def _recurring(sub: dict[str, Any]) -> float:
        """The subscription's recurring amount per period before discounts."""
        return sub["subtotal"]

    def _prorate(self, sub: dict[str, Any], before: float, after: float) -> None:
        """Two line items for an immediate change, as Recurly writes them: a credit for the
        unused part of the old amount and a charge for the new one, invoiced together."""
        start = self._t(sub["current_period_started_at"])
        end = self._t(sub["current_period_ends_at"])
        now = self.now()
        rate = max(min((end - now) / max(end - start, 1), 1.0), 0.0)
        rate = round(rate, 4)
        account = self.accounts[sub["account"]["id"]]
        items = []
        for kind, amount in (("credit", -before), ("charge", after)):
            items.append(
                self._line_item(
                    account,
                    {
                        "type": kind,
                        "currency": sub["currency"],
                        "unit_amount": abs(amount),
                        "quantity": 1,
                        "description": (
                            "Unused time on " if kind == "credit" else "Remaining time on "
                        )
                        + sub["plan"]["name"],
                        "origin": "plan",
                    },
                    subscription=sub,
                    proration_rate=rate,
                )
            )
        if any(abs(li["amount"]) > 0 for li in items):
            self.invoice_pending(account, origin="immediate_change", items=items)

    @staticmethod
    def _t(value: str | None) -> float:
        if not value:
            return 0.0
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()

    def cancel_pending_change(self, sub: dict[str, Any]) -> None:
        if sub["pending_change"] is None:
            raise not_found("SubscriptionChange", sub["id"])
        sub["pending_change"] = None
        self.stamp(sub)

    def cancel(self, sub: dict[str, Any], timeframe: str = "term_end") -> dict[str, Any]:
        """PUT /subscriptions/{id}/cancel: stops renewal; the subscription stays ``canceled``
        (live) until the end of the period, then expires."""
        if sub["state"] not in ("active", "future", "paused"):
            raise immutable_subscription(f"Subscription is {sub['state']} and can't be canceled")
        if timeframe not in ("bill_date", "term_end"):
            raise validation("timeframe", "is not included in the list")
        sub["state"] = "canceled"
        sub["canceled_at"] = iso(self.now())
        sub["expires_at"] = (
            sub["current_period_ends_at"]
            if timeframe == "bill_date"
            else sub["current_term_ends_at"]
        )
        self.stamp(sub)
        self.refresh_flags(self.accounts[sub["account"]["id"]])
        self.notify("subscription", "canceled", uuid=sub["uuid"])
        return sub

    def reactivate(self, sub: dict[str, Any]) -> dict[str, Any]:
        if sub["state"] != "canceled":
            raise immutable_subscription(f"Subscription is {sub['state']}, not canceled")
        sub["state"] = "active"
        sub["canceled_at"] = None
        sub["expires_at"] = None
        self.stamp(sub)
        self.notify("subscription", "reactivated", uuid=sub["uuid"])
        return sub

    def terminate(self, sub: dict[str, Any], refund: str = "none") -> dict[str, Any]:
        """DELETE /subscriptions/{id}: expires it now."""
        if sub["state"] in ("expired", "failed"):
            raise immutable_subscription(f"Subscription is {sub['state']} and can't be terminated")
        if refund not in ("full", "partial", "none"):
            raise validation("refund", "is not included in the list")
        now = self.now()
        sub["state"] = "expired"
        sub["canceled_at"] = sub["canceled_at"] or iso(now)
        sub["expires_at"] = iso(now)
        sub["expiration_reason"] = "terminated"
        sub["pending_change"] = None
        self.stamp(sub)
        if refund != "none":
            for inv in list(self.invoices.values()):
                if sub["id"] in inv["subscription_ids"] and inv["state"] == "paid":
                    self.refund(inv, {"type": "amount", "amount": inv["paid"]})
                    break
        self.refresh_flags(self.accounts[sub["account"]["id"]])
        self.notify("subscription", "expired", uuid=sub["uuid"])
        return sub

    def pause(self, sub: dict[str, Any], cycles: int) -> dict[str, Any]:
        if sub["state"] != "active":
            raise immutable_subscription(f"Subscription is {sub['state']} and can't be paused")
        if cycles < 0:
            raise validation("remaining_pause_cycles", "must be greater than or equal to 0")
        # Recurly pauses at the next renewal; the sandbox pauses at once (no clock runs here)
        sub["state"] = "paused"
        sub["paused_at"] = iso(self.now())
        sub["remaining_pause_cycles"] = cycles
        self.stamp(sub)
        self.refresh_flags(self.accounts[sub["account"]["id"]])
        self.notify("subscription", "paused", uuid=sub["uuid"])
        return sub

    def resume(self, sub: dict[str, Any]) -> dict[str, Any]:
        if sub["state"] != "paused":
            raise immutable_subscription(f"Subscription is {sub['state']}, not paused")
        sub["state"] = "active"
        sub["paused_at"] = None
        sub["remaining_pause_cycles"] = None
        self.stamp(sub)
        self.refresh_flags(self.accounts[sub["account"]["id"]])
        self.notify("subscription", "resumed", uuid=sub["uuid"])
        return sub

    # --- usage ---------------------------------------------------------------------------------

    def record_usage(
        self, sub: dict[str, Any], add_on_ident: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        if sub["state"] not in ("active", "canceled"):
            raise immutable_subscription(f"Subscription is {sub['state']}")
        sa = next(
            (
                a
                for a in sub["add_ons"]
                if a["add_on"]["id"] == add_on_ident
                or (add_on_ident.startswith("code-") and a["add_on"]["code"] == add_on_ident[5:])
            ),
            None,
        )
        if sa is None:
            raise not_found("SubscriptionAddOn", add_on_ident)
        if sa["add_on"]["add_on_type"] != "usage":
            raise validation("add_on", "is not a usage add-on")
        amount = body.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0:
            raise validation("amount", "must be a number ≥ 0")
        now = self.now()
        usage_ts = parse_time(body.get("usage_timestamp", now), "usage_timestamp")
        usage = {
            "id": new_id(),
            "object": "usage",
            "merchant_tag": body.get("merchant_tag"),
            "amount": float(amount),
            "usage_type": "price",
            "tier_type": "flat",
            "tiers": [],
            "percentage_tiers": [],
            "measured_unit_id": None,
            "recording_timestamp": iso(
                parse_time(body.get("recording_timestamp", now), "recording_timestamp")
            ),
            "usage_timestamp": iso(usage_ts),
            "usage_percentage": None,
            "unit_amount": sa["unit_amount"],
            "unit_amount_decimal": None,
            "billed_at": None,
            "_subscription_id": sub["id"],
            "_add_on_id": sa["add_on"]["id"],
        }
        self.stamp(usage)
        self.usage[usage["id"]] = usage
        return usage

    # --- invoices and transactions -------------------------------------------------------------

    def _line_item(
        self,
        account: dict[str, Any],
        body: dict[str, Any],
        subscription: dict[str, Any] | None = None,
        proration_rate: float | None = None,
    ) -> dict[str, Any]:
        kind = body.get("type", "charge")
        if kind not in ("charge", "credit"):
            raise validation("type", "is not included in the list")
        currency = str(body.get("currency") or "").upper()
        if not currency:
            raise validation("currency", "can't be blank")
        unit = body.get("unit_amount")
        if isinstance(unit, bool) or not isinstance(unit, int | float) or unit < 0:
            raise validation("unit_amount", "must be a number ≥ 0")
        quantity = int(body.get("quantity", 1))
        amount = money(unit * quantity * (proration_rate if proration_rate is not None else 1))
        if kind == "credit":
            amount = -amount
        # a plan's or add-on's line covers the subscription's period (a proration: from now on)
        period = subscription is not None and body.get("origin") in ("plan", "add_on")
        li = {
            "id": new_id(),
            "object": "line_item",
            "uuid": new_uuid(),
            "type": kind,
            "item_code": None,
            "item_id": None,
            "external_sku": None,
            "revenue_schedule_type": "at_invoice",
            "state": "pending",
            "legacy_category": None,
            "account": self.account_mini(account),
            "bill_for_account_id": account["id"],
            "subscription_id": subscription["id"] if subscription else None,
            "plan_id": subscription["plan"]["id"] if subscription else None,
            "plan_code": subscription["plan"]["code"] if subscription else None,
            "add_on_id": None,
            "add_on_code": None,
            "invoice_id": None,
            "invoice_number": None,
            "previous_line_item_id": None,
            "original_line_item_invoice_id": None,
            "origin": body.get("origin") or ("credit" if kind == "credit" else "debit"),
            "accounting_code": body.get("accounting_code"),
            "product_code": body.get("product_code"),
            "credit_reason_code": body.get("credit_reason_code", "general")
            if kind == "credit"
            else None,
            "currency": currency,
            "amount": amount,
            "description": body.get("description"),
            "quantity": quantity,
            "unit_amount": money(unit),
            "tax_inclusive": False,
            "subtotal": amount,
            "discount": 0.0,
            "tax": 0.0,
            "taxable": False,
            "tax_exempt": True,
            "proration_rate": proration_rate,
            "refund": False,
            "credit_applied": 0.0,
            "start_date": subscription["current_period_started_at"]
            if period and proration_rate is None
            else iso(self.now()),
            "end_date": subscription["current_period_ends_at"] if period else None,
            "custom_fields": [],
        }
        self.stamp(li)
        self.line_items[li["id"]] = li
        return li

    def create_line_item(self, account: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """POST /accounts/{id}/line_items: a pending charge or credit adjustment, invoiced
        with the account's next invoice."""
        self.require_open(account)
        if not body.get("description") and body.get("type") == "credit":
            raise validation("description", "can't be blank")
        return self._line_item(account, body)

    def _new_invoice(
        self,
        account: dict[str, Any],
        currency: str,
        origin: str,
        kind: str = "charge",
        subscription_ids: Iterable[str] = (),
        collection: str = "automatic",
        net_terms: int = 0,
        created: float | None = None,
    ) -> dict[str, Any]:
        self.invoice_number += 1
        now = created if created is not None else self.now()
        inv = {
            "id": new_id(),
            "uuid": new_uuid(),
            "object": "invoice",
            "type": kind,
            "origin": origin,
            "state": "pending",
            "account": self.account_mini(account),
            "billing_info_id": (account.get("billing_info") or {}).get("id"),
            "subscription_ids": list(subscription_ids),
            "previous_invoice_id": None,
            "number": str(self.invoice_number),
            "collection_method": collection,
            "po_number": None,
            "net_terms": net_terms,
            "net_terms_type": "net",
            "address": None,
            "shipping_address": None,
            "currency": currency,
            "discount": 0.0,
            "subtotal": 0.0,
            "tax": 0.0,
            "total": 0.0,
            "refundable_amount": 0.0,
            "paid": 0.0,
            "balance": 0.0,
            "tax_info": None,
            "used_tax_service": False,
            "vat_number": None,
            "vat_reverse_charge_notes": None,
            "terms_and_conditions": None,
            "customer_notes": None,
            "line_items": [],
            "has_more_line_items": False,
            "transactions": [],
            "credit_payments": [],
            "due_at": iso(now + net_terms * DAY),
            "closed_at": None,
            "dunning_campaign_id": None,
            "dunning_events_sent": 0,
            "final_dunning_event": False,
            "business_entity_id": None,
        }
        self.stamp(inv, created)
        self.invoices[inv["id"]] = inv
        return inv

    def _attach(self, inv: dict[str, Any], items: list[dict[str, Any]]) -> None:
        for li in items:
            li["state"] = "invoiced"
            li["invoice_id"] = inv["id"]
            li["invoice_number"] = inv["number"]
            inv["line_items"].append(li)
        self._totals(inv)

    def _totals(self, inv: dict[str, Any]) -> None:
        charges = sum(li["amount"] for li in inv["line_items"] if li["amount"] > 0)
        credits = -sum(li["amount"] for li in inv["line_items"] if li["amount"] < 0)
        discount = inv.get("_discount", 0.0)
        inv["subtotal"] = money(charges - credits)
        inv["discount"] = money(discount)
        inv["total"] = money(max(charges - credits - discount, 0.0))
        inv["balance"] = money(max(inv["total"] - inv["paid"], 0.0))
        inv["refundable_amount"] = money(inv["paid"])

    def _invoice_subscription(
        self, sub: dict[str, Any], origin: str, collection: str, created: float | None = None
    ) -> dict[str, Any]:
        account = self.accounts[sub["account"]["id"]]
        inv = self._new_invoice(
            account,
            sub["currency"],
            origin,
            subscription_ids=[sub["id"]],
            collection=collection,
            net_terms=sub["net_terms"],
            created=created,
        )
        items = [
            self._line_item(
                account,
                {
                    "type": "charge",
                    "currency": sub["currency"],
                    "unit_amount": sub["unit_amount"],
                    "quantity": sub["quantity"],
                    "description": sub["plan"]["name"],
                    "origin": "plan",
                },
                subscription=sub,
            )
        ]
        for a in sub["add_ons"]:
            if a["add_on"]["add_on_type"] != "fixed" or a["quantity"] == 0:
                continue
            li = self._line_item(
                account,
                {
                    "type": "charge",
                    "currency": sub["currency"],
                    "unit_amount": a["unit_amount"],
                    "quantity": a["quantity"],
                    "description": a["add_on"]["name"],
                    "origin": "add_on",
                },
                subscription=sub,
            )
            li["add_on_id"], li["add_on_code"] = a["add_on"]["id"], a["add_on"]["code"]
            items.append(li)
        # pending account credits are consumed by the next charge invoice
        items += [
            li
            for li in self.line_items.values()
            if li["account"]["id"] == account["id"]
            and li["state"] == "pending"
            and li["currency"] == sub["currency"]
            and li not in items
        ]
        self._attach(inv, items)
        self._reprice_invoice(inv, sub)
        sub["active_invoice_id"] = inv["id"]
        self.notify("charge_invoice", "created", uuid=inv["uuid"], invoice_number=inv["number"])
        if inv["total"] == 0:
            self._mark_paid(inv)
        return inv

    def _reprice_invoice(self, inv: dict[str, Any], sub: dict[str, Any]) -> None:
        recurring = sum(
            li["amount"] for li in inv["line_items"] if li.get("subscription_id") == sub["id"]
        )
        inv["_discount"] = money(max(recurring - sub["total"], 0.0)) if recurring > 0 else 0.0
        self._totals(inv)

    def invoice_pending(
        self, account: dict[str, Any], origin: str = "one_time", items: list | None = None
    ) -> dict[str, Any]:
        """POST /accounts/{id}/invoices: invoice the account's pending line items."""
        self.require_open(account)
        pending = items or [
            li
            for li in self.line_items.values()
            if li["account"]["id"] == account["id"] and li["state"] == "pending"
        ]
        if not pending:
            raise validation("line_items", "there are no pending line items to invoice")
        currency = pending[0]["currency"]
        subs = sorted({li["subscription_id"] for li in pending if li["subscription_id"]})
        inv = self._new_invoice(account, currency, origin, subscription_ids=subs)
        self._attach(inv, pending)
        net = sum(li["amount"] for li in pending)
        if net < 0:
            # a net credit: Recurly issues a credit invoice, its amount becomes account credit
            inv["type"] = "credit"
            inv["origin"] = "credit" if origin == "one_time" else origin
            inv["total"] = money(net)
            inv["balance"] = 0.0
            inv["state"] = "open"
            self._issue_credit(account, currency, -net, inv)
            self.notify("credit_invoice", "created", uuid=inv["uuid"], invoice_number=inv["number"])
            return inv
        self.notify("charge_invoice", "created", uuid=inv["uuid"], invoice_number=inv["number"])
        if inv["total"] == 0:
            self._mark_paid(inv)
        elif inv["collection_method"] == "automatic" and origin != "immediate_change":
            self.charge(inv, origin="api", fail_state="past_due")
        return inv

    def _issue_credit(self, account, currency: str, amount: float, inv: dict[str, Any]) -> None:
        li = self._line_item(
            account,
            {
                "type": "credit",
                "currency": currency,
                "unit_amount": amount,
                "description": f"Credit from invoice #{inv['number']}",
                "origin": "carryforward",
            },
        )
        li["original_line_item_invoice_id"] = inv["id"]

    def _mark_paid(self, inv: dict[str, Any]) -> None:
        inv["paid"] = inv["total"]
        inv["balance"] = 0.0
        inv["state"] = "paid"
        inv["closed_at"] = iso(self.now())
        self.stamp(inv)
        self._totals(inv)
        self.refresh_flags(self.accounts[inv["account"]["id"]])
        self.notify("charge_invoice", "paid", uuid=inv["uuid"], invoice_number=inv["number"])

    def transaction_error(self, txn: dict[str, Any]) -> RecurlyError:
        code = txn["status_code"] or "declined"
        return RecurlyError(
            422,
            "transaction",
            txn["status_message"] or "Your transaction was declined.",
            transaction_error={
                "object": "transaction_error",
                "transaction_id": txn["id"],
                "category": "hard" if code in HARD_DECLINES else "soft",
                "code": code,
                "decline_code": txn.get("_decline_code"),
                "message": txn["status_message"],
                "merchant_advice": txn["customer_message"],
                "three_d_secure_action_token_id": None,
                "fraud_info": None,
            },
        )

    def charge(
        self,
        inv: dict[str, Any],
        origin: str,
        fail_state: str | None = "past_due",
        decline_code: str | None = None,
        force_success: bool = False,
    ) -> dict[str, Any]:
        """One payment attempt on the invoice with the account's billing info. Success pays the
        invoice; a decline leaves it ``fail_state`` (past_due: in dunning under the account's
        campaign) and sends ``payment`` / ``failed`` (and ``charge_invoice`` / ``past_due``)."""
        account = self.accounts[inv["account"]["id"]]
        info = account.get("billing_info")
        if force_success:
            code = None
        elif decline_code:
            code = decline_code
        elif info is None:
            code = "no_billing_information"
        else:
            code = info.get("_decline_code")
        success = code is None
        decline_code = None
        if code is not None:
            code, decline_code = recurly_decline(code)
        txn = {
            "id": new_id(),
            "object": "transaction",
            "uuid": new_uuid(),
            "original_transaction_id": None,
            "account": self.account_mini(account),
            "invoice": self.invoice_mini(inv),
            "voided_by_invoice": None,
            "subscription_ids": list(inv["subscription_ids"]),
            "type": "purchase",
            "origin": origin,
            "currency": inv["currency"],
            "amount": inv["balance"],
            "status": "success" if success else "declined",
            "success": success,
            "backup_payment_method_used": False,
            "refunded": False,
            "billing_address": None,
            "collection_method": "automatic",
            "payment_method": (info or {}).get("payment_method"),
            "ip_address_v4": None,
            "ip_address_country": None,
            "status_code": code,
            "_decline_code": decline_code,
            "status_message": None if success else DECLINE_MESSAGES.get(code, "Declined."),
            "customer_message": None if success else DECLINE_MESSAGES.get(code, "Declined."),
            "customer_message_locale": "en-US",
            "payment_gateway": {
                "id": "gw1",
                "object": "payment_gateway",
                "type": "test",
                "name": "Test Gateway",
            },
            "gateway_message": None if success else code,
            "gateway_reference": new_id(10),
            "gateway_approval_code": None,
            "gateway_response_code": None if success else code,
            "gateway_response_time": 0.1,
            "gateway_response_values": {},
            "cvv_check": None,
            "avs_check": None,
            "voided_at": None,
            "collected_at": iso(self.now()) if success else None,
            "action_result": None,
            "vat_number": None,
            "fraud_info": None,
        }
        self.stamp(txn)
        self.transactions[txn["id"]] = txn
        inv["transactions"].append(txn)
        if success:
            self._mark_paid(inv)
            txn["invoice"] = self.invoice_mini(inv)
            self.notify("payment", "succeeded", uuid=txn["uuid"])
            return txn
        self.notify("payment", "failed", uuid=txn["uuid"])
        if fail_state == "past_due" and inv["state"] != "past_due":
            inv["state"] = "past_due"
            campaign = self.campaign_for(account)
            inv["dunning_campaign_id"] = campaign["id"] if campaign else None
            self.stamp(inv)
            self.refresh_flags(account)
            self.notify(
                "charge_invoice", "past_due", uuid=inv["uuid"], invoice_number=inv["number"]
            )
        elif fail_state == "past_due":
            inv["dunning_events_sent"] += 1
            self.stamp(inv)
        txn["invoice"] = self.invoice_mini(inv)
        return txn

    def collect(self, inv: dict[str, Any]) -> dict[str, Any]:
        """PUT /invoices/{id}/collect: force a collection attempt now (origin force_collect)."""
        if inv["type"] != "charge" or inv["state"] not in ("pending", "past_due", "processing"):
            raise invalid_transition(f"Invoice is {inv['state']} and can't be collected")
        txn = self.charge(inv, origin="force_collect", fail_state="past_due")
        if not txn["success"]:
            raise self.transaction_error(txn)
        return inv

    def mark_failed(self, inv: dict[str, Any]) -> dict[str, Any]:
        if inv["state"] not in ("pending", "past_due", "processing"):
            raise invalid_transition(f"Invoice is {inv['state']} and can't be marked failed")
        inv["state"] = "failed"
        inv["closed_at"] = iso(self.now())
        self.stamp(inv)
        self.refresh_flags(self.accounts[inv["account"]["id"]])
        self.notify("charge_invoice", "failed", uuid=inv["uuid"], invoice_number=inv["number"])
        return inv

    def mark_successful(self, inv: dict[str, Any]) -> dict[str, Any]:
        """Paid outside Recurly (check, wire): records an external transaction."""
        if inv["state"] not in ("pending", "past_due", "processing", "failed"):
            raise invalid_transition(f"Invoice is {inv['state']} and can't be marked successful")
        self.charge(inv, origin="merchant", fail_state=None, force_success=True)
        return inv

    def void(self, inv: dict[str, Any]) -> dict[str, Any]:
        if inv["state"] not in ("pending", "past_due", "processing", "failed"):
            raise invalid_transition(f"Invoice is {inv['state']} and can't be voided")
        inv["state"] = "voided"
        inv["closed_at"] = iso(self.now())
        inv["balance"] = 0.0
        self.stamp(inv)
        self.refresh_flags(self.accounts[inv["account"]["id"]])
        self.notify("charge_invoice", "voided", uuid=inv["uuid"], invoice_number=inv["number"])
        return inv

    def reopen(self, inv: dict[str, Any]) -> dict[str, Any]:
        if inv["state"] != "failed":
            raise invalid_transition(f"Invoice is {inv['state']} and can't be reopened")
        inv["state"] = "past_due"
        inv["closed_at"] = None
        self.stamp(inv)
        self.notify("charge_invoice", "reopened", uuid=inv["uuid"], invoice_number=inv["number"])
        return inv

    def refund(self, inv: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """POST /invoices/{id}/refund (``type: amount``): a credit invoice, refunded to the card."""
        if inv["state"] != "paid":
            raise invalid_transition(f"Invoice is {inv['state']} and can't be refunded")
        if body.get("type") != "amount":
            raise validation("type", "only 'amount' refunds are supported by this sandbox")
        amount = body.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount <= 0:
            raise validation("amount", "must be greater than 0")
        if amount > inv["refundable_amount"]:
            raise validation("amount", "exceeds the refundable amount")
        account = self.accounts[inv["account"]["id"]]
        credit = self._new_invoice(account, inv["currency"], "refund", kind="credit")
        credit["previous_invoice_id"] = inv["id"]
        li = self._line_item(
            account,
            {
                "type": "credit",
                "currency": inv["currency"],
                "unit_amount": amount,
                "description": f"Refund for invoice #{inv['number']}",
                "origin": "credit",
                "credit_reason_code": "refund",
            },
        )
        self._attach(credit, [li])
        credit["total"] = money(-amount)
        credit["state"] = "closed"
        credit["closed_at"] = iso(self.now())
        inv["refundable_amount"] = money(inv["refundable_amount"] - amount)
        self.stamp(inv)
        self.notify(
            "credit_invoice", "created", uuid=credit["uuid"], invoice_number=credit["number"]
        )
        return credit


def require_object(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object")
    return body


#: the parts of Recurly's ``Address`` (accounts)
ADDRESS_PARTS = ("phone", "street1", "street2", "city", "region", "postal_code", "country")


def _address(value: Any) -> dict[str, Any] | None:
    """An account's ``address`` as Recurly answers it: every part, null when not set."""
    if not isinstance(value, dict):
        return None
    return {k: (value.get(k) or None) for k in ADDRESS_PARTS}
