"""``ChargebeeEmulator``: a stateful Chargebee API v2 (Product Catalog 2.0) site.

Point the official client at it with the recipe of the reference (§2a)::

    Chargebee.verify_ca_certs = False
    cb = Chargebee(api_key=KEY, site="acme-test", protocol="http")
    cb.env.api_url = lambda url, subDomain=None: base_url + "/api/v2" + url
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.framework import Emulator, WebhookTarget

from . import credit_notes, models
from .errors import ChargebeeError, auth_failed, for_status, param_error, rate_limited
from .forms import FormError, parse_form, parse_query
from .handlers import Api, Call
from .state import IdempotencyRecord, Store, public

log = logging.getLogger("sandbox.chargebee")

IDEMPOTENCY_HEADER = "chargebee-idempotency-key"
REPLAYED_HEADER = "chargebee-idempotency-replayed"
API = "/api/v2"

Handler = Callable[[Call], dict[str, Any]]

#: the custom field RevBridge's install guide asks for, made searchable by Chargebee support
DEFAULT_CUSTOM_FIELDS: tuple[Mapping[str, Any], ...] = (
    {
        "entity_type": "customer",
        "api_name": "cf_crm_link",
        "display_name": "CRM link",
        "field_datatype": "string",
        "searchable": True,
    },
)

#: Payment terms (Net D) a site offers out of the box: Due Upon Receipt (0) and Net 7 to Net 90
#: (Settings > Configure Chargebee > Billing LogIQ > Payment Terms; support article 251161).
#: Any other term (1-180 days) exists only once the site adds it.
FRESH_NET_TERMS: tuple[int, ...] = (0, 7, 15, 30, 45, 60, 90)

#: Chargebee's documented limit on test sites: 150 API requests per minute (billing-apis.md §2f)
TEST_SITE_RATE_PER_MINUTE = 150

#: the documented maximum length of a comment's ``notes``
COMMENT_MAX_CHARS = 1000


class ChargebeeEmulator(Emulator):
    """Chargebee API v2 under ``/api/v2`` plus scenario controls under ``/_sandbox/chargebee``.

    - ``api_key``: the only key accepted (HTTP Basic username, empty password).
    - ``idempotency_window_s``: how long a ``chargebee-idempotency-key`` is remembered (docs: 30 min).
    - ``rate_limit_per_minute``: off by default; when set, requests beyond it in a sliding
      ``rate_limit_window_s`` answer 429 ``api_request_limit_exceeded`` with ``Retry-After``.
      Rejected requests do not count, so the limit always lifts (the client retries 429 forever).
    - ``payment_error_status``: HTTP status of a declined payment. Chargebee's error-handling page
      shows 400 for ``payment_processing_failed`` (``type: payment``); the client classifies by
      ``type``, so either works with it.
    - ``default_card``: customers created without card details get a working test card.
    - ``dunning_retry_days``: days to ``next_retry_at`` after the 1st, 2nd, ... failed attempt;
      after the last one the invoice goes ``not_paid`` with ``dunning_status: exhausted``.
    - ``custom_fields``: the site's custom field configuration (Settings > Custom Fields), each
      ``{"entity_type": "customer", "api_name": "cf_...", "searchable": bool}``. ``searchable``
      stands for the per-site switch Chargebee support turns on to make ``cf_x[is]`` list filters
      work; filters on any other custom field are silently ignored, as on a real site. The default
      is the setup RevBridge's Chargebee connector expects (a searchable ``cf_crm_link``).
    - ``net_terms``: the payment terms (days) the site offers; ``net_term_days`` outside them is
      refused (400 ``param_wrong_value`` on ``net_term_days``). None: any value (a site set up for
      every term RevBridge sends).
    - ``contract_terms``: whether Contract Terms are enabled on the site; when off a
      ``contract_term[...]`` is refused (400 ``configuration_incompatible``).
    - ``comment_max_chars``: the documented 1,000-character limit on a comment's ``notes``
      (None: no limit).

    The two error bodies above use codes of Chargebee's error catalogue; their message texts are
    ours (not checked against a live site). ``ChargebeeEmulator.fresh_site()`` is a site as
    Chargebee hands it over: no custom fields, the out-of-the-box payment terms, Contract Terms
    off, the test-site rate limit.

    Realistic limits are on by default: ``rate_limit_per_minute`` is a test site's 150 and
    ``comment_max_chars`` 1,000. ``ChargebeeEmulator(..., limits=False)`` turns both off for a
    focused unit test.
    """

    name = "chargebee"

    def __init__(
        self,
        api_key: str = "test_chargebee_key",
        webhook_targets: Iterable[WebhookTarget] = (),
        idempotency_window_s: float = 1800,
        rate_limit_per_minute: int | None = TEST_SITE_RATE_PER_MINUTE,
        rate_limit_window_s: float = 60.0,
        payment_error_status: int = 400,
        default_card: bool = True,
        dunning_retry_days: Sequence[float] = (3, 5, 7),
        clock: Callable[[], float] = time.time,
        custom_fields: Iterable[Mapping[str, Any]] = DEFAULT_CUSTOM_FIELDS,
        api_user: str = "revbridge-integration",
        net_terms: Iterable[int] | None = None,
        contract_terms: bool = True,
        comment_max_chars: int | None = COMMENT_MAX_CHARS,
        limits: bool = True,
    ) -> None:
        if not limits:
            rate_limit_per_minute = None
            comment_max_chars = None
        self.api_key = api_key
        self._site_default = {
            "net_terms": None if net_terms is None else sorted({int(d) for d in net_terms}),
            "contract_terms": bool(contract_terms),
        }
        self.comment_max_chars = comment_max_chars
        #: who an event caused through the API names in its ``user`` field (``source: "api"``)
        self.api_user = api_user
        self._custom_fields_default = [dict(c) for c in custom_fields]
        self.idempotency_window_s = idempotency_window_s
        self._rate_limit_default = (rate_limit_per_minute, rate_limit_window_s)
        self.payment_error_status = payment_error_status
        self.default_card = default_card
        self.dunning_retry_days = tuple(dunning_retry_days)
        self.clock = clock
        self.api = Api(self)
        super().__init__(webhook_targets)

    # --- framework hooks ---------------------------------------------------------------------

    def reset_state(self) -> None:
        """Drop all state; a rate limit set through the control route goes back to the default."""
        self.store = Store(clock=self.clock)
        self.store.custom_fields = {c["api_name"]: dict(c) for c in self._custom_fields_default}
        self.store.site = dict(self._site_default)
        self.rate_limit_per_minute, self.rate_limit_window_s = self._rate_limit_default

    @classmethod
    def fresh_site(cls, **kwargs: Any) -> ChargebeeEmulator:
        """A site as Chargebee hands it over: no custom fields (so no ``cf_crm_link``), only the
        out-of-the-box payment terms, Contract Terms off. Keyword arguments override."""
        kwargs.setdefault("custom_fields", ())
        kwargs.setdefault("net_terms", FRESH_NET_TERMS)
        kwargs.setdefault("contract_terms", False)
        return cls(**kwargs)

    def configure_site(
        self,
        net_terms: Iterable[int] | None = None,
        contract_terms: bool | None = None,
        custom_field: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What a site admin (or Chargebee support) changes in the site settings: add payment
        terms, enable Contract Terms, create a custom field or make it searchable."""
        with self.lock:
            site = self.store.site
            if net_terms is not None and site["net_terms"] is not None:
                site["net_terms"] = sorted({*site["net_terms"], *(int(d) for d in net_terms)})
            if contract_terms is not None:
                site["contract_terms"] = bool(contract_terms)
            if custom_field is not None:
                name = str(custom_field.get("api_name", ""))
                if not name.startswith("cf_"):
                    raise ValueError("a custom field's api_name starts with cf_")
                current = self.store.custom_fields.get(name, {"entity_type": "customer"})
                self.store.custom_fields[name] = {**current, **custom_field}
            return {**site, "custom_fields": sorted(self.store.custom_fields)}

    def error_response(self, status: int, message: str) -> Response:
        return for_status(status, message).response()

    def seed(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Load a scenario (see the module docstring of :mod:`sandbox.chargebee`)."""
        from .seeding import seed

        return seed(self, data)

    def vendor_routes(self) -> list[BaseRoute]:
        a = self.api
        r = self._route
        routes = [
            r("GET", "/customers", a.list_customers),
            r("POST", "/customers", a.create_customer),
            r("GET", "/customers/{id}", a.retrieve_customer),
            r("POST", "/customers/{id}", a.update_customer),
            r("POST", "/customers/{id}/update_billing_info", a.update_billing_info),
            r("POST", "/customers/{id}/delete", a.delete_customer),
            r("POST", "/customers/{id}/add_promotional_credits", a.add_promotional_credits),
            r("POST", "/customers/{customer_id}/subscription_for_items", a.create_subscription),
            r("GET", "/customers/{id}/subscriptions", a.subscriptions_for_customer),
            r("GET", "/customers/{id}/invoices", a.invoices_for("customer_id")),
            r("GET", "/customers/{id}/transactions", a.transactions_for("customer_id")),
            r("POST", "/promotional_credits/add", a.promotional_credits_add),
            r("GET", "/subscriptions", a.list_subscriptions),
            r("GET", "/subscriptions/{id}", a.retrieve_subscription),
            r("POST", "/subscriptions/{id}/update_for_items", a.update_subscription),
            r("POST", "/subscriptions/{id}/cancel_for_items", a.cancel_subscription),
            r("GET", "/subscriptions/{id}/invoices", a.invoices_for("subscription_id")),
            r("GET", "/subscriptions/{id}/transactions", a.transactions_for("subscription_id")),
            r("GET", "/invoices", a.list_invoices),
            r("GET", "/invoices/{id}", a.retrieve_invoice),
            r("POST", "/invoices/{id}/collect_payment", a.collect_payment),
            r("POST", "/invoices/{id}/record_payment", a.record_payment),
            r("GET", "/invoices/{id}/payments", a.transactions_for("_invoice_id")),
            r("GET", "/transactions", a.list_transactions),
            r("GET", "/credit_notes", credit_notes.Handlers(self).list),
            r("GET", "/credit_notes/{id}", credit_notes.Handlers(self).retrieve),
            r("GET", "/transactions/{id}", a.retrieve_transaction),
            r("GET", "/comments", a.list_comments),
            r("POST", "/comments", a.create_comment),
            r("GET", "/comments/{id}", a.retrieve_comment),
            r("POST", "/comments/{id}/delete", a.delete_comment),
            r("POST", "/coupons/create_for_items", a.create_coupon),
            r("GET", "/coupons", a.list_coupons),
            r("GET", "/coupons/{id}", a.retrieve_coupon),
            r("GET", "/item_prices", a.list_item_prices),
            r("GET", "/item_prices/{id}", a.retrieve_item_price),
            r("GET", "/events", a.list_events),
            r("GET", "/events/{id}", a.retrieve_event),
            r("POST", "/usage_events", a.create_usage_event),
            r("POST", "/subscriptions/{id}/usages", a.create_usage),
            r("GET", "/usages", a.list_usages),
            r("GET", "/custom_field_configs", a.list_custom_field_configs),
            r("POST", "/estimates/create_subscription_for_items", a.estimate_subscription),
        ]
        control = "/_sandbox/chargebee"
        return [
            *routes,
            Route(f"{API}/{{rest:path}}", self._unknown_endpoint, methods=_ALL_METHODS),
            Route(f"{control}/invoices/{{id}}/fail_payment", self._ctl_fail, methods=["POST"]),
            Route(f"{control}/invoices/{{id}}/pay", self._ctl_pay, methods=["POST"]),
            Route(f"{control}/customers/{{id}}/card", self._ctl_card, methods=["POST"]),
            Route(f"{control}/rate_limit", self._ctl_rate_limit, methods=["POST"]),
            Route(f"{control}/site", self._ctl_site, methods=["POST"]),
            Route(f"{control}/events", self._ctl_events, methods=["GET"]),
        ]

    # --- scenario controls (Python) ------------------------------------------------------------

    def set_card_decline(self, customer_id: str, decline_code: str | None) -> None:
        """Make the customer's card decline with ``decline_code`` (None: the card works).
        A customer without a card gets one."""
        with self.lock:
            customer = self.store.customers.get(customer_id)
            if customer is None:
                raise KeyError(f"unknown customer {customer_id!r}")
            card = self.store.cards.get(customer_id)
            if card is None:
                card = self.store.cards[customer_id] = models.new_card(self.store, customer, {})
            card["_decline_code"] = decline_code or None
            expired = decline_code == "expired_card"
            card["status"] = "expired" if expired else "valid"
            customer["card_status"] = card["status"]
            self.store.stamp(card)
            self.store.stamp(customer)

    async def fail_payment(
        self, invoice_id: str, decline_code: str | None = None
    ) -> dict[str, Any]:
        """A (dunning) charge attempt on ``invoice_id`` fails: failed transaction, invoice in
        dunning, ``payment_failed`` webhook. Returns the event. Run it in the emulator's loop."""
        return await self._control_charge(invoice_id, "failure", decline_code)

    async def pay_invoice(self, invoice_id: str) -> dict[str, Any]:
        """A charge on ``invoice_id`` succeeds (whatever the card scenario): the invoice is paid,
        ``payment_succeeded`` is sent. Returns the event. Run it in the emulator's loop."""
        return await self._control_charge(invoice_id, "success", None)

    async def _control_charge(
        self, invoice_id: str, outcome: str, decline_code: str | None
    ) -> dict[str, Any]:
        call = Call(params={}, source="scheduled_job")
        with self.lock:
            inv = self.api.invoice(invoice_id)
            self.api.charge(call, inv, outcome=outcome, decline_code=decline_code)
        await self._emit(call.events)
        return public(call.events[-1])

    async def _emit(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            body = json.dumps(public(ev), separators=(",", ":")).encode()
            await self.emit_webhook(body, event_id=ev["id"])

    # --- control routes ------------------------------------------------------------------------

    async def _ctl_body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ChargebeeError(400, "invalid_request", "control body must be a JSON object")
        return data

    async def _ctl_fail(self, request: Request) -> Response:
        try:
            body = await self._ctl_body(request)
            ev = await self.fail_payment(request.path_params["id"], body.get("decline_code"))
        except ChargebeeError as exc:
            return exc.response()
        return JSONResponse(ev)

    async def _ctl_pay(self, request: Request) -> Response:
        try:
            ev = await self.pay_invoice(request.path_params["id"])
        except ChargebeeError as exc:
            return exc.response()
        return JSONResponse(ev)

    async def _ctl_card(self, request: Request) -> Response:
        try:
            body = await self._ctl_body(request)
            self.set_card_decline(request.path_params["id"], body.get("decline_code"))
        except ChargebeeError as exc:
            return exc.response()
        except KeyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        with self.lock:
            return JSONResponse({"card": public(self.store.cards[request.path_params["id"]])})

    async def _ctl_rate_limit(self, request: Request) -> Response:
        try:
            body = await self._ctl_body(request)
        except ChargebeeError as exc:
            return exc.response()
        with self.lock:
            self.rate_limit_per_minute = body.get("per_minute")
            self.rate_limit_window_s = float(body.get("window_s", self.rate_limit_window_s))
            self.store.rate_hits.clear()
        return JSONResponse(
            {"per_minute": self.rate_limit_per_minute, "window_s": self.rate_limit_window_s}
        )

    async def _ctl_site(self, request: Request) -> Response:
        try:
            body = await self._ctl_body(request)
            site = self.configure_site(
                net_terms=body.get("net_terms"),
                contract_terms=body.get("contract_terms"),
                custom_field=body.get("custom_field"),
            )
        except ChargebeeError as exc:
            return exc.response()
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(site)

    async def _ctl_events(self, request: Request) -> Response:
        with self.lock:
            events = sorted(self.store.events.values(), key=lambda e: e["_seq"])
            return JSONResponse({"events": [public(e) for e in events]})

    # --- the vendor route wrapper ----------------------------------------------------------------

    def _route(self, method: str, path: str, handler: Handler) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self._serve(request, method, handler)

        return Route(API + path, endpoint, methods=[method])

    async def _unknown_endpoint(self, request: Request) -> Response:
        def handler(call: Call) -> dict[str, Any]:
            raise ChargebeeError(
                404,
                "resource_not_found",
                f"Sorry, {request.method} {request.url.path} is not an endpoint this sandbox knows",
                type="invalid_request",
            )

        return await self._serve(request, request.method, handler)

    def _authenticate(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, _password = base64.b64decode(token).decode("latin-1").partition(":")
        except (binascii.Error, ValueError):
            return False
        return user == self.api_key

    def _rate_limit(self) -> float | None:
        """Seconds to wait when over the limit (the request is then not counted), else None."""
        limit = self.rate_limit_per_minute
        if not limit:
            return None
        now = time.monotonic()
        hits = self.store.rate_hits
        while hits and hits[0] <= now - self.rate_limit_window_s:
            hits.popleft()
        if len(hits) >= limit:
            return max(hits[0] + self.rate_limit_window_s - now, 0.0)
        hits.append(now)
        return None

    def _parse(self, request: Request, method: str, body: bytes) -> dict[str, Any]:
        if method == "GET":
            return parse_query(request.url.query)
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("JSON body must be an object")
            return data
        return parse_form(body)

    async def _serve(self, request: Request, method: str, handler: Handler) -> Response:
        body = await request.body()
        if not self._authenticate(request):
            return auth_failed().response()
        call = Call(params={}, path=dict(request.path_params))
        key = request.headers.get(IDEMPOTENCY_HEADER) if method == "POST" else None
        with self.lock:
            wait = self._rate_limit()
            if wait is not None:
                return rate_limited().response({"Retry-After": str(max(1, math.ceil(wait)))})
            fingerprint = _fingerprint(method, request.url.path, body)
            if key is not None:
                replay = self._idempotency_lookup(key, fingerprint)
                if replay is not None:
                    return replay
            try:
                call.params = self._parse(request, method, body)
                status, payload = 200, handler(call)
            except FormError as exc:
                status, payload = 400, param_error(exc.param, str(exc)).body()
            except ValueError as exc:
                status, payload = (
                    400,
                    ChargebeeError(
                        400, "invalid_request", f"Malformed request: {exc}", type="invalid_request"
                    ).body(),
                )
            except ChargebeeError as exc:
                status, payload = exc.status, exc.body()
            except Exception as exc:  # a sandbox bug still answers a body the client understands
                log.exception("chargebee sandbox: %s %s failed", method, request.url.path)
                status, payload = (
                    500,
                    ChargebeeError(
                        500, "internal_error", f"Sandbox error: {type(exc).__name__}: {exc}"
                    ).body(),
                )
            raw = json.dumps(payload, separators=(",", ":")).encode()
            if key is not None and status < 500:
                self.store.idempotency[key] = IdempotencyRecord(
                    fingerprint, status, raw, time.monotonic()
                )
        await self._emit(call.events)
        return Response(raw, status_code=status, media_type="application/json")

    def _idempotency_lookup(
        self, key: str, fingerprint: tuple[str, str, tuple[tuple[str, str], ...]]
    ) -> Response | None:
        if len(key) > 100:
            return param_error(
                IDEMPOTENCY_HEADER, f"{IDEMPOTENCY_HEADER} : cannot be more than 100 characters"
            ).response()
        record = self.store.idempotency.get(key)
        if record is None or time.monotonic() - record.stored_at > self.idempotency_window_s:
            return None
        if record.fingerprint != fingerprint:
            # Chargebee documents replays only for "the same idempotency key and parameters" and
            # does not document the mismatch answer. We refuse it (nothing changes) with 400
            # invalid_request (type invalid_request -> the client's InvalidRequestError), the
            # generic client-error code of its error catalogue.
            return ChargebeeError(
                400,
                "invalid_request",
                f"The idempotency key {key!r} was already used with different request "
                "parameters within the idempotency window",
                type="invalid_request",
                param=IDEMPOTENCY_HEADER,
            ).response()
        return Response(
            record.body,
            status_code=record.status,
            media_type="application/json",
            headers={REPLAYED_HEADER: "true"},
        )


def _fingerprint(
    method: str, path: str, body: bytes
) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """What "the same parameters" means: the same form pairs, in any order."""
    text = body.decode("utf-8", "replace")
    if text.lstrip().startswith(("{", "[")):
        return (method, path, (("json", text),))
    pairs = parse_qsl(text, keep_blank_values=True)
    return (method, path, tuple(sorted(pairs)))


_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
