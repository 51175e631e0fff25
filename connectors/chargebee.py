"""Chargebee (API v2, Product Catalog 2.0) through the official ``chargebee`` client.

Quote-to-cash, churn and support context (billing-apis.md §2):

- **The CRM link** lives twice on the customer: in ``meta_data`` (``crm``, ``crm_account_id``:
  what the protocol promises, read by people and other tools) and in the customer custom field
  ``cf_crm_link`` = ``"<crm>:<account id>"``. Chargebee's list API cannot filter on
  ``meta_data``, but it filters on a custom field (``cf_crm_link[is]=...``) once the site has
  made it searchable, so finding the link is one indexed call instead of a scan of the book.
- **Idempotency** beyond the 30-minute ``chargebee-idempotency-key`` window: customers,
  subscriptions and retention coupons are created with an ID derived from the idempotency key,
  so a late retry meets ``duplicate_entry`` and reads the existing object instead of making a
  second one.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import httpx
from chargebee import Chargebee
from chargebee import http_request as _sdk_http
from chargebee.api_error import APIError

from connectors import limits
from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.churn.chargebee import ChargebeeSweepReader, baseline_of
from connectors.timeouts import call_timeout
from domain.churn import SweepSnapshot
from domain.messages import locale_language
from domain.models import (
    BillingCustomer,
    Invoice,
    InvoiceContext,
    InvoicePaid,
    InvoiceStatus,
    NoteTarget,
    Payment,
    PaymentAttempt,
    PaymentFailed,
)
from domain.preflight import Check, CheckStatus
from domain.quote import STANDARD_PAYMENT_TERMS
from domain.quote import net_term_days as quote_net_term_days
from domain.records import (
    CustomerDraft,
    CustomerPage,
    CustomerSnapshot,
    Price,
    Subscription,
    SubscriptionDraft,
    SubscriptionRef,
)
from domain.settings import ChargebeeSettings

_STATUS = {
    "paid": InvoiceStatus.PAID,
    "payment_due": InvoiceStatus.OPEN,
    "not_paid": InvoiceStatus.OPEN,
    "posted": InvoiceStatus.OPEN,
    "voided": InvoiceStatus.VOID,
}
_PERMANENT_4XX = {400, 401, 402, 403, 404, 405, 409, 422}

#: the searchable customer custom field that holds the CRM link (see the module docstring)
CRM_LINK_FIELD = "cf_crm_link"
#: the documented maximum length of a comment's ``notes``; longer audit text is cut to it
COMMENT_MAX_CHARS = 1000
TRUNCATED_MARKER = " […truncated by RevBridge]"
#: payment terms RevBridge's quotes use without an approval (Net 30): the site must offer them
STANDARD_NET_TERM_DAYS = tuple(
    sorted(d for d in map(quote_net_term_days, STANDARD_PAYMENT_TERMS) if d is not None)
)
#: what to do about each site setting RevBridge needs (one line each; ``revbridge doctor``)
FIX_CUSTOM_FIELD = (
    f"create the customer custom field {CRM_LINK_FIELD} (single-line text) in Settings > "
    "Configure Chargebee > Custom Fields, then ask Chargebee support to make it searchable"
)
FIX_SEARCHABLE = (
    f"ask Chargebee support to make the customer custom field {CRM_LINK_FIELD} searchable"
)
FIX_CONTRACT_TERMS = "enable Contract Terms in Settings > Configure Chargebee > Contract Terms"
FIX_CREDENTIALS = "set CHARGEBEE_SITE and CHARGEBEE_API_KEY to a full-access API key of the site"


def fix_net_terms(days: Iterable[int]) -> str:
    terms = ", ".join(f"Net {d}" for d in sorted(days))
    return f"add {terms} in Settings > Configure Chargebee > Billing LogIQ > Payment Terms"


class ConfigurationError(ConnectorError):
    """The Chargebee site lacks a setting RevBridge needs (a payment term, Contract Terms, the
    CRM-link custom field or its searchability). Permanent, and the same for every run until a
    person changes the site: the activity fails non-retryably as ``chargebee.needs_configuration``
    and ``preflight()`` reports the same ``check`` with its ``fix`` before go-live."""

    def __init__(self, check: str, problem: str, fix: str, status: int | None = None) -> None:
        super().__init__(
            "chargebee",
            ErrorKind.PERMANENT,
            f"needs configuration ({check}): {problem}; fix: {fix}",
            status=status,
            code="needs_configuration",
        )
        self.check = check
        self.fix = fix


DAY_S = 86_400
#: how far back downgrades count, and how many event pages one snapshot may read for them
DOWNGRADE_WINDOW_S = 90 * DAY_S
EVENT_PAGES_MAX = 10
USAGE_PAGES_MAX = 10
#: IDs per ``[in]`` filter in the sweep's bulk reads (Chargebee's list limit)
BULK_IN_MAX = 100
#: how long the sweep reuses one walk of the downgrade window's events (one sweep, not a page)
SWEEP_EVENTS_TTL_S = 900
#: subscription events whose content carries the subscription as it is after the event
_SUBSCRIPTION_EVENTS = ["subscription_created", "subscription_changed"]
_MONTHS = {"month": 1, "year": 12}


def _ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


# --- one keep-alive HTTP client per connector ------------------------------------------------------
#
# The chargebee client (3.x) sends every request through ``chargebee.http_request._make_request``,
# which opens ``with httpx.Client(verify=...)`` for that one request: a new TCP (and TLS)
# connection and, with its default CA checks, the CA bundle loaded again (~30 ms CPU) per call.
# The client offers no way to pass an HTTP client in, so this is the one seam: that function is
# replaced once per process by one that sends through the ``httpx.Client`` of the connector
# making the call (a context variable set around each call in ``_call``) and hands every other
# caller to the SDK's own function unchanged.

_HTTP: contextvars.ContextVar[httpx.Client | None] = contextvars.ContextVar(
    "chargebee_http_client", default=None
)
_SDK_MAKE_REQUEST = getattr(_sdk_http, "_make_request", None)
_seam_lock = threading.Lock()


def _make_request(request_args: dict[str, Any]) -> Any:
    client = _HTTP.get()
    if client is None or _SDK_MAKE_REQUEST is None:
        return _SDK_MAKE_REQUEST(request_args)  # type: ignore[misc]
    request_args.pop("verify", None)  # the shared client verifies TLS with httpx's defaults
    response = client.request(**request_args)
    return _sdk_http._handle_response(request_args, response)


def _install_shared_client_seam() -> bool:
    """Route the SDK's requests through the calling connector's client; False when this SDK
    version has no such function (then every call opens its own client, as before)."""
    with _seam_lock:
        if _SDK_MAKE_REQUEST is None or not hasattr(_sdk_http, "_handle_response"):
            return False
        if _sdk_http._make_request is not _make_request:
            _sdk_http._make_request = _make_request
        return True


class ChargebeeBilling:
    name = "chargebee"

    def __init__(self, settings: ChargebeeSettings, timeout_s: float = 20.0) -> None:
        # below the activity's start-to-close (connectors/timeouts.py)
        timeout_s = self.call_timeout_s = call_timeout(timeout_s)
        key = settings.api_key.get_secret_value()
        protocol = urlparse(settings.api_url).scheme if settings.api_url else "https"
        # The client picks http only when this *class* attribute is off; TLS to the real API is
        # still verified by httpx's defaults (see billing-apis.md §2a).
        Chargebee.verify_ca_certs = False
        self._cb = Chargebee(
            api_key=key,
            site=settings.site,
            protocol=protocol,
            connection_time_out=max(1, int(timeout_s)),
            read_time_out=max(1, int(timeout_s)),
        )
        if settings.api_url:
            base = settings.api_url.rstrip("/")
            self._cb.env.api_url = lambda url, subDomain=None: f"{base}/api/v2{url}"
        # SDK retries stay off (the default RetryConfig): Temporal owns retries.
        # One keep-alive client for every call this connector makes (see _make_request above),
        # with at most Chargebee's concurrency limit in flight (test sites 100: billing-apis.md
        # §2f; policies/limits.yaml).
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
        self.keep_alive = _install_shared_client_seam()
        #: the churn sweep's page reader (connectors/churn/chargebee.py) and the customer objects
        #: of the page ``list_customers`` last returned
        self._sweep_reader: Any = None
        self._listed_customers: dict[str, Any] = {}

    def close(self) -> None:
        """Close the connector's HTTP connections (at shutdown)."""
        self._http.close()

    # --- BillingPlatform ---------------------------------------------------------------------------

    def get_invoice_context(self, invoice_id: str, payments: int = 5) -> InvoiceContext:
        """The invoice, then its subscription — whose retrieve carries the customer too (one call
        for both, and the MRR) — or the customer alone for an invoice without a subscription;
        then the customer's last ``payments`` payment transactions (the decline code lives only
        on the transaction: neither the invoice's ``linked_payments`` nor its
        ``dunning_attempts`` carry it). ``payments=0`` skips them: two calls."""
        inv = self._call(
            lambda: self._cb.Invoice.retrieve(invoice_id), what=f"invoice {invoice_id}"
        ).invoice
        mrr = 0
        if inv.subscription_id:
            both = self._call(
                lambda: self._cb.Subscription.retrieve(inv.subscription_id),
                what=f"subscription {inv.subscription_id}",
            )
            cust = both.customer
            mrr = int(getattr(both.subscription, "mrr", 0) or 0)
        else:
            cust = self._call(
                lambda: self._cb.Customer.retrieve(inv.customer_id),
                what=f"customer {inv.customer_id}",
            ).customer
        recent: list[Payment] = []
        if payments > 0:
            txns = self._call(
                lambda: self._cb.Transaction.list(
                    {
                        "customer_id": {"is": inv.customer_id},
                        "type": {"is": "payment"},
                        "sort_by": {"desc": "date"},
                        "limit": min(payments, 100),
                    }
                ),
                what="transactions",
            )
            recent = [self._payment(entry.transaction, invoice_id) for entry in txns.list]
        return InvoiceContext(
            invoice=_invoice(inv),
            customer=BillingCustomer(
                id=cust.id,
                company=cust.company,
                created_at=_ts(cust.created_at),
                metadata=_metadata(getattr(cust, "meta_data", None)),
                mrr=mrr,
                currency=inv.currency_code,
                email=getattr(cust, "email", None) or None,
                language=locale_language(getattr(cust, "locale", None)),
            ),
            recent_payments=recent,
        )

    def add_note(self, target: NoteTarget, target_id: str, text: str, idempotency_key: str) -> str:
        """A comment; text beyond Chargebee's 1,000 characters is cut, with a marker saying so
        (the full entry stays in the CRM's audit log and the workflow's history)."""
        text = note_text(text)
        if limits.retry_attempt():
            # The key is remembered for 30 minutes only: a retry after an outage or a wait for
            # the rate limit looks for the earlier attempt's note (same text: the entry names
            # its workflow, run, action and outcome) before writing again.
            found = self._note_with_text(target, target_id, text)
            if found is not None:
                return found
        resp = self._call(
            lambda: self._cb.Comment.create(
                {"entity_type": target.value, "entity_id": target_id, "notes": text},
                headers={"chargebee-idempotency-key": idempotency_key},
            ),
            what=f"{target.value} {target_id}",
        )
        return resp.comment.id

    def retry_payment(self, invoice_id: str, idempotency_key: str) -> PaymentAttempt:
        if limits.retry_attempt():
            # Past the key's 30-minute window a re-sent collect would charge again: an invoice
            # an earlier attempt already collected is that attempt's success.
            inv = self._call(
                lambda: self._cb.Invoice.retrieve(invoice_id), what=f"invoice {invoice_id}"
            ).invoice
            if inv.status == "paid":
                return PaymentAttempt(succeeded=True)
        try:
            self._call(
                lambda: self._cb.Invoice.collect_payment(
                    invoice_id, {}, headers={"chargebee-idempotency-key": idempotency_key}
                ),
                what=f"invoice {invoice_id}",
            )
        except ConnectorError as err:
            if err.status in (400, 402) and err.code == "payment_processing_failed":
                return PaymentAttempt(succeeded=False, decline_code=None, message=str(err)[:200])
            raise
        return PaymentAttempt(succeeded=True)

    def apply_credit(
        self, customer_id: str, amount: int, currency: str, reason: str, idempotency_key: str
    ) -> str:
        resp = self._call(
            lambda: self._cb.PromotionalCredit.add(
                {"customer_id": customer_id, "amount": amount, "description": reason[:250]},
                headers={"chargebee-idempotency-key": idempotency_key},
            ),
            what=f"customer {customer_id}",
        )
        return resp.promotional_credit.id

    def _note_with_text(self, target: NoteTarget, target_id: str, text: str) -> str | None:
        resp = self._call(
            lambda: self._cb.Comment.list(
                {"entity_type": target.value, "entity_id": target_id, "limit": 100}
            ),
            what=f"{target.value} {target_id}",
        )
        return next((e.comment.id for e in resp.list if e.comment.notes == text), None)

    def list_notes(self, target: NoteTarget, target_id: str) -> list[str]:
        resp = self._call(
            lambda: self._cb.Comment.list(
                {"entity_type": target.value, "entity_id": target_id, "limit": 100}
            ),
            what=f"{target.value} {target_id}",
        )
        return [entry.comment.notes for entry in resp.list]

    # --- quote-to-cash -----------------------------------------------------------------------------

    def find_customer_by_crm(self, crm: str, account_id: str) -> BillingCustomer | None:
        """One indexed lookup: ``cf_crm_link[is]=<crm>:<account id>``, oldest first.

        Why a custom field: Chargebee's List customers filters on its own attributes and on
        *searchable* custom fields, never on ``meta_data``. So create_customer / set_crm_link
        write the link to ``meta_data`` (the protocol's contract) and to ``cf_crm_link`` (the
        index). Chargebee silently drops a filter on a custom field the site has not made
        searchable and answers the unfiltered list; every row is therefore checked, and rows that
        do not carry the link mean a misconfigured site: a ConfigurationError, never a wrong match
        (which would link the deal to someone else's customer) or a silent None (a duplicate).
        """
        link = crm_link(crm, account_id)
        resp = self._call(
            lambda: self._cb.Customer.list(
                {CRM_LINK_FIELD: {"is": link}, "sort_by": {"asc": "created_at"}, "limit": 10}
            ),
            what="customers",
        )
        rows = [entry.customer for entry in resp.list]
        matches = [c for c in rows if getattr(c, CRM_LINK_FIELD, None) == link]
        if len(matches) != len(rows):
            raise ConfigurationError(
                f"searchable:{CRM_LINK_FIELD}",
                f"the customer list ignored {CRM_LINK_FIELD}[is] (not searchable)",
                FIX_SEARCHABLE,
            )
        return self._billing_customer(matches[0]) if matches else None

    def find_customers(self, email: str | None, company: str | None) -> list[BillingCustomer]:
        """``email[is]`` and ``company[starts_with]`` (which includes ``company[is]``; Chargebee
        has no "contains"). Exact email first, then exact company, then company prefix."""
        ranked: dict[str, tuple[int, int, Any]] = {}
        if email:
            for c in self._list_customers({"email": {"is": email}, "limit": 10}):
                ranked[c.id] = (0, int(c.created_at or 0), c)
        if company:
            for c in self._list_customers({"company": {"starts_with": company}, "limit": 10}):
                rank = 1 if (c.company or "").casefold() == company.casefold() else 2
                if c.id not in ranked or ranked[c.id][0] > rank:
                    ranked[c.id] = (rank, int(c.created_at or 0), c)
        best = sorted(ranked.values(), key=lambda r: (r[0], r[1]))[:10]
        return [self._billing_customer(c) for _, _, c in best]

    def create_customer(self, draft: CustomerDraft) -> BillingCustomer:
        """POST /customers with the key as header and (a hash of it) as the customer ID."""
        params: dict[str, Any] = {
            "id": object_id(draft.key),
            "company": draft.company,
            "preferred_currency_code": draft.currency.upper(),
            **crm_link_params({}, draft.crm, draft.crm_account_id),
        }
        for name in ("email", "first_name", "last_name"):
            if getattr(draft, name):
                params[name] = getattr(draft, name)
        if draft.net_term_days is not None:
            # Net terms mean the customer pays invoices, not a card charged on creation.
            params["net_term_days"] = draft.net_term_days
            params["auto_collection"] = "off"
        try:
            resp = self._call(
                lambda: self._cb.Customer.create(params, headers=_key(draft.key)),
                what="customer",
            )
            return self._billing_customer(resp.customer)
        except ConnectorError as err:
            if not _duplicate_id(err):
                raise
        # The key's customer exists (a retry after the idempotency window): the same object.
        existing = self._call(
            lambda: self._cb.Customer.retrieve(params["id"]), what=f"customer {params['id']}"
        )
        return self._billing_customer(existing.customer)

    def set_crm_link(
        self, customer_id: str, crm: str, account_id: str | None, idempotency_key: str
    ) -> None:
        """Read ``meta_data``, change only the link keys, write both places back (Chargebee
        replaces ``meta_data`` as a whole on update). Clearing leaves another CRM's link alone."""
        cust = self._call(
            lambda: self._cb.Customer.retrieve(customer_id), what=f"customer {customer_id}"
        ).customer
        meta = _json_object(getattr(cust, "meta_data", None))
        if account_id is None and meta.get("crm") not in (None, crm):
            return
        params = crm_link_params(meta, crm, account_id)
        self._call(
            lambda: self._cb.Customer.update(customer_id, params, headers=_key(idempotency_key)),
            what=f"customer {customer_id}",
        )

    def delete_customer(self, customer_id: str, idempotency_key: str) -> None:
        try:
            self._call(
                lambda: self._cb.Customer.delete(customer_id, {}, headers=_key(idempotency_key)),
                what=f"customer {customer_id}",
            )
        except NotFound:
            return  # already gone: the compensation's goal is reached

    def get_price(self, price_id: str) -> Price:
        ip = self._item_price(price_id)
        return Price(
            id=ip.id,
            product=ip.item_id or "",
            unit_amount=int(ip.price or 0),
            currency=ip.currency_code,
            period=ip.period_unit or "month",
            period_count=int(ip.period or 1),
        )

    def create_subscription(self, draft: SubscriptionDraft) -> SubscriptionRef:
        """``subscription_for_items`` with item prices (and price overrides), a contract term of
        ``term_months`` in billing cycles that renews, net terms, the deal's discount as a
        subscription discount, and the opportunity in ``meta_data``. Idempotent by key (header
        and subscription ID)."""
        prices = [self._item_price(line.price_id) for line in draft.lines]
        wrong = [p.id for p in prices if (p.currency_code or "").upper() != draft.currency.upper()]
        if wrong:
            raise ConnectorError(
                self.name,
                ErrorKind.PERMANENT,
                f"item prices {wrong} are not in {draft.currency}",
                code="currency_mismatch",
            )
        plan = next((p for p in prices if p.item_type == "plan"), prices[0])
        params: dict[str, Any] = {
            "id": object_id(draft.key),
            "subscription_items": [_item_params(line) for line in draft.lines],
            "meta_data": json.dumps(
                {"crm": draft.crm, "crm_opportunity_id": draft.crm_opportunity_id}
            ),
        }
        cycles = _billing_cycles(draft.term_months, int(plan.period or 1), plan.period_unit)
        if cycles:
            params["billing_cycles"] = cycles
            params["contract_term"] = {"action_at_term_end": "renew"}
            params["contract_term_billing_cycle_on_renewal"] = cycles
        start = _start_ts(draft.start_date)
        if start is not None:
            params["start_date"] = start
        if draft.net_term_days is not None:
            params["net_term_days"] = draft.net_term_days
        if draft.discount_percent:
            params["discounts"] = [
                {
                    "apply_on": "invoice_amount",
                    "duration_type": "forever",
                    "percentage": round(float(draft.discount_percent), 4),
                }
            ]
        created = True
        try:
            resp = self._call(
                lambda: self._cb.Subscription.create_with_items(
                    draft.customer_id, params, headers=_key(draft.key)
                ),
                what=f"customer {draft.customer_id}",
            )
            created = not resp.is_idempotency_replayed
            sub = resp.subscription
        except ConnectorError as err:
            if not _duplicate_id(err):
                raise
            created = False
            sub = self._subscription_raw(params["id"])
        return SubscriptionRef(
            id=sub.id,
            customer_id=sub.customer_id,
            status=sub.status,
            mrr=int(getattr(sub, "mrr", 0) or 0),
            currency=(sub.currency_code or draft.currency).upper(),
            created=created,
        )

    def cancel_subscription(self, subscription_id: str, idempotency_key: str, reason: str) -> str:
        """``cancel_for_items`` now (``end_of_term=false``), no credit for the current term,
        and an active contract term terminated with it. Already cancelled is success.
        ``reason`` is free text: Chargebee only takes configured reason codes, so the audit
        note carries it, not the cancel call."""
        sub = self._subscription_raw(subscription_id)
        if sub.status == "cancelled":
            return "cancelled"
        params: dict[str, Any] = {
            "end_of_term": False,
            "credit_option_for_current_term_charges": "none",
        }
        term = getattr(sub, "contract_term", None)
        if term is not None and term.status == "active":
            params["contract_term_cancel_option"] = "terminate_immediately"
        try:
            resp = self._call(
                lambda: self._cb.Subscription.cancel_for_items(
                    subscription_id, params, headers=_key(idempotency_key)
                ),
                what=f"subscription {subscription_id}",
            )
        except ConnectorError as err:
            # A concurrent cancel got there first (invalid_state_for_request): re-read.
            if err.code != "invalid_state_for_request":
                raise
            return self._subscription_raw(subscription_id).status
        return resp.subscription.status

    # --- churn and support context ------------------------------------------------------------

    def list_customers(self, cursor: str | None = None, limit: int = 100) -> CustomerPage:
        params: dict[str, Any] = {
            "limit": max(1, min(limit, 100)),
            "sort_by": {"asc": "created_at"},
        }
        if cursor:
            params["offset"] = cursor
        resp = self._call(lambda: self._cb.Customer.list(params), what="customers")
        # the page's customer objects, for the sweep's bulk read of the same page (it does not
        # read them again by ID: connectors/churn/chargebee.py)
        self._listed_customers = {e.customer.id: e.customer for e in resp.list}
        return CustomerPage(
            customers=[self._billing_customer(e.customer) for e in resp.list],
            next_cursor=resp.next_offset or None,
        )

    def customer_snapshot(self, customer_id: str, invoices: int = 5) -> CustomerSnapshot:
        raw_subs = list(
            self._pages(
                lambda offset: self._cb.Subscription.list(
                    _paged({"customer_id": {"is": customer_id}, "limit": 100}, offset)
                ),
                "subscriptions",
                max_pages=5,
            )
        )
        # each entry of the subscription list carries its customer (and card): the customer is
        # read on its own only when it has no subscription — one request fewer per churn score
        # (issue 15); an unknown customer still ends in the retrieve's not-found
        cust = getattr(raw_subs[0], "customer", None) if raw_subs else None
        if cust is None:
            cust = self._call(
                lambda: self._cb.Customer.retrieve(customer_id), what=f"customer {customer_id}"
            ).customer
        coupons: dict[str, Any] = {}
        subs = [self._subscription(e.subscription, coupons) for e in raw_subs]
        invs = self._call(
            lambda: self._cb.Invoice.list(
                {
                    "customer_id": {"is": customer_id},
                    "sort_by": {"desc": "date"},
                    "limit": max(1, min(invoices, 100)),
                }
            ),
            what="invoices",
        )
        txns = self._call(
            lambda: self._cb.Transaction.list(
                {
                    "customer_id": {"is": customer_id},
                    "type": {"is": "payment"},
                    "sort_by": {"desc": "date"},
                    "limit": 10,
                }
            ),
            what="transactions",
        )
        now = int(time.time())
        sub_ids = [s.id for s in subs]
        usage = self._usage(sub_ids, now)
        currency = (subs[0].currency if subs else None) or getattr(
            cust, "preferred_currency_code", None
        )
        baselines: dict[str, float] = {}
        downgrades = self._downgrades(set(sub_ids), now, baselines)
        # the MRR baseline from the event log, as the churn sweep takes it (so a customer's
        # score is the same from either read): SweepSnapshot, a CustomerSnapshot with it
        return SweepSnapshot(
            baseline_mrr=baseline_of(subs, baselines),
            customer=self._billing_customer(cust, mrr=sum(s.mrr for s in subs), currency=currency),
            subscriptions=subs,
            invoices=[_invoice(e.invoice) for e in invs.list],
            payments=[self._payment(e.transaction, "") for e in txns.list],
            credit_balance=int(getattr(cust, "promotional_credits", 0) or 0)
            + int(getattr(cust, "refundable_credits", 0) or 0),
            downgrades_90d=downgrades,
            usage_30d=usage[0] if usage else None,
            usage_prev_30d=usage[1] if usage else None,
        )

    def apply_discount(
        self, subscription_id: str, percent: float, months: int, idempotency_key: str
    ) -> str:
        """A limited-period percentage coupon (ID derived from the key, so a retry finds it)
        added to the subscription with ``update_for_items`` ``coupon_ids[0]``."""
        coupon_id = "rb-retention-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]
        params = {
            "id": coupon_id,
            "name": f"Retention {percent:g}% for {months} months"[:50],
            "discount_type": "percentage",
            "discount_percentage": round(float(percent), 4),
            "duration_type": "limited_period",
            "period": months,
            "period_unit": "month",
            "apply_on": "invoice_amount",
        }
        try:
            self._call(
                lambda: self._cb.Coupon.create_for_items(
                    params, headers=_key(derived_key(idempotency_key, "coupon"))
                ),
                what=f"coupon {coupon_id}",
            )
        except ConnectorError as err:
            if not _duplicate_id(err):
                raise
            existing = self._call(
                lambda: self._cb.Coupon.retrieve(coupon_id), what=f"coupon {coupon_id}"
            ).coupon
            if float(existing.discount_percentage or 0) != params["discount_percentage"]:
                raise ConnectorError(
                    self.name,
                    ErrorKind.PERMANENT,
                    f"coupon {coupon_id} exists with other terms",
                    code="coupon_conflict",
                ) from None
        self._call(
            lambda: self._cb.Subscription.update_for_items(
                subscription_id,
                {"coupon_ids": [coupon_id]},
                headers=_key(derived_key(idempotency_key, "apply")),
            ),
            what=f"subscription {subscription_id}",
        )
        return coupon_id

    # --- preflight (revbridge doctor) -------------------------------------------------------------

    def preflight(
        self,
        net_term_days: Iterable[int] = STANDARD_NET_TERM_DAYS,
        site_net_terms: Iterable[int] | None = None,
    ) -> list[Check]:
        """What this site must offer before go-live, one :class:`Check` each, read-only (list
        reads and a subscription *estimate*, which creates nothing):

        - ``credentials``: the key opens the site (a one-row customer list);
        - ``custom-field:cf_crm_link``: the customer custom field exists (``GET
          /custom_field_configs``);
        - ``searchable:cf_crm_link``: a ``cf_crm_link[is]`` filter on a value no customer has
          answers nothing (Chargebee silently ignores a filter on a field it has not made
          searchable and answers the unfiltered list);
        - ``contract-terms``: an estimate of a plan with a contract term is accepted;
        - ``net-terms``: the payment terms quotes need (``net_term_days``: Net 30 unless told)
          against ``site_net_terms``. Chargebee's API does not expose the site's payment terms,
          so without ``site_net_terms`` this is a WARN that names what to check by hand.
        """
        system = self.name
        try:
            sample = self._call(lambda: self._cb.Customer.list({"limit": 1}), what="customers")
        except ConnectorError as err:
            auth = err.status in (401, 403)
            checks = [
                Check(
                    system=system,
                    name="credentials",
                    status=CheckStatus.FAIL,
                    detail="the API key was refused" if auth else f"site unreachable ({err.kind})",
                    fix=FIX_CREDENTIALS if auth else "check CHARGEBEE_SITE and the network path",
                )
            ]
            reason = "credentials failed"
            names = (f"custom-field:{CRM_LINK_FIELD}", f"searchable:{CRM_LINK_FIELD}")
            for name in (*names, "contract-terms", "net-terms"):
                checks.append(
                    Check(system=system, name=name, status=CheckStatus.SKIP, detail=reason)
                )
            return checks
        checks = [Check(system=system, name="credentials", status=CheckStatus.OK)]
        try:
            checks += self._preflight_custom_field(bool(sample.list))
        except ConnectorError as err:  # a probe failed for another reason: say so, go on
            for name in (f"custom-field:{CRM_LINK_FIELD}", f"searchable:{CRM_LINK_FIELD}"):
                checks.append(_not_checked(name, err))
        try:
            checks.append(self._preflight_contract_terms())
        except ConnectorError as err:
            checks.append(_not_checked("contract-terms", err))
        checks.append(_net_terms_check(set(net_term_days), site_net_terms))
        return checks

    def _preflight_custom_field(self, has_customers: bool) -> list[Check]:
        system, field_ = self.name, CRM_LINK_FIELD
        exists_name, search_name = f"custom-field:{field_}", f"searchable:{field_}"
        try:
            body, _headers, _status = self._call(
                lambda: _sdk_http.request(
                    "get",
                    "/custom_field_configs",
                    self._cb.env,
                    params={"entity_type": "customer", "limit": 100},
                ),
                what="custom field configs",
            )
            names = {
                (e.get("custom_field_config") or {}).get("api_name") for e in body.get("list", [])
            }
            exists: bool | None = field_ in names
        except ConnectorError:
            exists = None  # an older API without custom field configs: the filter probe decides
        if exists is False:
            return [
                Check(
                    system=system,
                    name=exists_name,
                    status=CheckStatus.FAIL,
                    detail="no such customer custom field",
                    fix=FIX_CUSTOM_FIELD,
                ),
                Check(
                    system=system,
                    name=search_name,
                    status=CheckStatus.FAIL,
                    detail="the field does not exist",
                    fix=FIX_SEARCHABLE,
                ),
            ]
        checks = []
        if exists:
            checks.append(Check(system=system, name=exists_name, status=CheckStatus.OK))
        probe = "revbridge-preflight:no-such-link"
        rows = self._call(
            lambda: self._cb.Customer.list({field_: {"is": probe}, "limit": 1}), what="customers"
        ).list
        if rows:
            checks.append(
                Check(
                    system=system,
                    name=search_name,
                    status=CheckStatus.FAIL,
                    detail=f"a {field_}[is] filter was ignored",
                    fix=FIX_SEARCHABLE,
                )
            )
        elif has_customers:
            checks.append(Check(system=system, name=search_name, status=CheckStatus.OK))
        else:
            checks.append(
                Check(
                    system=system,
                    name=search_name,
                    status=CheckStatus.WARN,
                    detail="the site has no customers yet, so the filter cannot be tested",
                    fix=f"run revbridge doctor again after the first customer, or {FIX_SEARCHABLE}",
                )
            )
        if exists is None:
            checks.insert(
                0,
                Check(
                    system=system,
                    name=exists_name,
                    status=CheckStatus.SKIP,
                    detail="custom field configs cannot be listed on this site",
                ),
            )
        return checks

    def _preflight_contract_terms(self) -> Check:
        system, name = self.name, "contract-terms"
        plans = self._call(
            lambda: self._cb.ItemPrice.list(
                {"item_type": {"is": "plan"}, "status": {"is": "active"}, "limit": 1}
            ),
            what="item prices",
        ).list
        if not plans:
            return Check(
                system=system,
                name=name,
                status=CheckStatus.SKIP,
                detail="no plan item price to estimate a contract term with",
            )
        try:
            self._call(
                lambda: self._cb.Estimate.create_sub_item_estimate(
                    {
                        "subscription_items": [{"item_price_id": plans[0].item_price.id}],
                        "billing_cycles": 12,
                        "contract_term": {"action_at_term_end": "renew"},
                    }
                ),
                what="estimate",
            )
        except ConfigurationError as err:
            return Check(
                system=system,
                name=name,
                status=CheckStatus.FAIL,
                detail="a subscription with a contract term is refused",
                fix=err.fix,
            )
        return Check(system=system, name=name, status=CheckStatus.OK)

    @property
    def client(self) -> Chargebee:
        """The configured official client (the demo and tests drive the sandbox with it)."""
        return self._cb

    # --- helpers ------------------------------------------------------------------------------------

    @staticmethod
    def _payment(txn: Any, invoice_id: str | None) -> Payment:
        linked = [li.invoice_id for li in (getattr(txn, "linked_invoices", None) or [])]
        return Payment(
            id=txn.id,
            invoice_id=linked[0] if linked else invoice_id if txn.status == "failure" else None,
            succeeded=txn.status == "success",
            amount=int(txn.amount or 0),
            currency=txn.currency_code,
            decline_code=getattr(txn, "error_code", None),
            decline_message=getattr(txn, "error_text", None),
            at=_ts(txn.date),
        )

    def _billing_customer(
        self, c: Any, mrr: int = 0, currency: str | None = None
    ) -> BillingCustomer:
        return BillingCustomer(
            id=c.id,
            company=getattr(c, "company", None),
            created_at=_ts(getattr(c, "created_at", None)),
            mrr=mrr,
            currency=(currency or getattr(c, "preferred_currency_code", None) or "USD").upper(),
            metadata=_metadata(getattr(c, "meta_data", None)),
            email=getattr(c, "email", None) or None,
            language=locale_language(getattr(c, "locale", None)),
        )

    def _list_customers(self, params: dict[str, Any]) -> list[Any]:
        resp = self._call(lambda: self._cb.Customer.list(params), what="customers")
        return [entry.customer for entry in resp.list]

    def _item_price(self, price_id: str) -> Any:
        return self._call(
            lambda: self._cb.ItemPrice.retrieve(price_id), what=f"item price {price_id}"
        ).item_price

    def _subscription_raw(self, subscription_id: str) -> Any:
        return self._call(
            lambda: self._cb.Subscription.retrieve(subscription_id),
            what=f"subscription {subscription_id}",
        ).subscription

    # --- the dunning catch-up -------------------------------------------------------------------

    def paid_invoices(self, since: datetime, limit: int = 200) -> list[InvoicePaid]:
        """Invoices paid or voided (a credit note that settles an invoice marks it paid) and
        updated at or after ``since``, oldest first, as ``InvoicePaid``."""
        params = {
            "status": {"in": ["paid", "voided"]},
            "updated_at": {"after": int(since.timestamp()) - 1},
            "sort_by": {"asc": "updated_at"},
            "limit": min(limit, 100),
        }
        found: list[InvoicePaid] = []
        for entry in self._pages(
            lambda offset: self._cb.Invoice.list(_paged(params, offset)),
            "invoices",
            math.ceil(limit / 100),
        ):
            inv = entry.invoice
            at = _ts(getattr(inv, "paid_at", None) or getattr(inv, "updated_at", None))
            found.append(
                InvoicePaid(
                    billing=self.name,
                    event_id=f"catch-up:{inv.id}:{inv.status}",
                    invoice_id=inv.id,
                    customer_id=inv.customer_id,
                    occurred_at=at or datetime.now(UTC),
                )
            )
        return found[:limit]

    def failed_payments(self, since: datetime, limit: int = 200) -> list[PaymentFailed]:
        """``payment_failed`` events at or after ``since``, oldest first, as the webhook reads
        them (the same event ID, so a run that had the webhook counts the failure once)."""
        params = {
            "event_type": {"in": ["payment_failed"]},
            "occurred_at": {"after": int(since.timestamp()) - 1},
            "sort_by": {"asc": "occurred_at"},
            "limit": min(limit, 100),
        }
        found: list[PaymentFailed] = []
        for entry in self._pages(
            lambda offset: self._cb.Event.list(_paged(params, offset)),
            "events",
            math.ceil(limit / 100),
        ):
            ev = entry.event
            content = ev.content or {}
            inv = content.get("invoice") or {}
            txn = content.get("transaction") or {}
            if not inv.get("id") or not inv.get("customer_id"):
                continue  # a failure not tied to an invoice: nothing to dun
            found.append(
                PaymentFailed(
                    billing=self.name,
                    event_id=ev.id,
                    invoice_id=inv["id"],
                    customer_id=inv["customer_id"],
                    subscription_id=inv.get("subscription_id"),
                    amount_due=int(inv.get("amount_due") or 0),
                    currency=inv.get("currency_code") or "USD",
                    decline_code=txn.get("error_code"),
                    occurred_at=_ts(ev.occurred_at) or datetime.now(UTC),
                )
            )
        return found[:limit]

    def _pages(
        self, fetch: Callable[[str | None], Any], what: str, max_pages: int
    ) -> Iterator[Any]:
        """Entries of a list endpoint, following ``next_offset`` for at most ``max_pages``."""
        offset: str | None = None
        for _ in range(max_pages):
            resp = self._call(lambda o=offset: fetch(o), what=what)
            yield from resp.list
            offset = resp.next_offset
            if not offset:
                return

    def _subscription(self, raw: Any, coupons: dict[str, Any]) -> Subscription:
        items = list(raw.subscription_items or [])
        plan = next((i for i in items if i.item_type == "plan"), items[0] if items else None)
        now = int(time.time())
        keep = 1.0  # the share of the price left after every percentage discount
        for disc in raw.discounts or []:
            if disc.type == "percentage" and (disc.apply_till or now + 1) > now:
                keep *= 1 - float(disc.percentage or 0) / 100
        for applied in raw.coupons or []:
            if (applied.apply_till or now + 1) <= now:
                continue
            if applied.coupon_id not in coupons:
                coupons[applied.coupon_id] = self._call(
                    lambda cid=applied.coupon_id: self._cb.Coupon.retrieve(cid),
                    what=f"coupon {applied.coupon_id}",
                ).coupon
            coupon = coupons[applied.coupon_id]
            if coupon.discount_type == "percentage":
                keep *= 1 - float(coupon.discount_percentage or 0) / 100
        return Subscription(
            id=raw.id,
            customer_id=raw.customer_id,
            status=raw.status,
            plan=plan.item_price_id if plan else "",
            quantity=int(plan.quantity or 1) if plan else 1,
            mrr=int(raw.mrr or 0),
            currency=(raw.currency_code or "USD").upper(),
            started_at=_ts(raw.started_at),
            current_term_end=_ts(raw.current_term_end),
            cancel_at=_ts(raw.cancelled_at)
            if raw.status in ("non_renewing", "cancelled")
            else None,
            discount_percent=round((1 - keep) * 100, 4),
        )

    def _downgrades(
        self, sub_ids: set[str], now: int, baselines: dict[str, float] | None = None
    ) -> int:
        """Plan or quantity decreases in the last 90 days, from the event log.

        Chargebee's events carry the subscription *after* the change and no previous values,
        and the events list cannot be filtered by customer. So: walk ``subscription_created`` /
        ``subscription_changed`` events of the window oldest first (bounded pages), keep this
        customer's subscriptions, and count a change whose recurring item value went down
        against the subscription's previous event; for a subscription whose first event in the
        window is a change, the baseline is its last event before the window (one bounded look
        back). The value is the items' monthly amount *before* discounts: a retention coupon
        lowers MRR but is not the customer downgrading.

        ``baselines``, when given, receives each subscription's value at the start of the window
        (its last event before it, else its first in it): the MRR baseline, as the churn sweep
        takes it (connectors/churn/chargebee.py), so both score a customer alike.
        """
        if not sub_ids:
            return 0
        since = now - DOWNGRADE_WINDOW_S
        window: list[tuple[str, str, float]] = []
        for entry in self._events({"occurred_at": {"after": since}}, "asc"):
            ev = entry.event
            sub = (ev.content or {}).get("subscription") or {}
            if sub.get("id") in sub_ids:
                window.append((sub["id"], ev.event_type, _items_monthly(sub)))
        last: dict[str, float] = {}
        need = {sid for sid, kind, _ in _firsts(window) if kind == "subscription_changed"}
        if need:
            for entry in self._events({"occurred_at": {"before": since}}, "desc"):
                sub = (entry.event.content or {}).get("subscription") or {}
                if sub.get("id") in need:
                    last[sub["id"]] = _items_monthly(sub)
                    need.discard(sub["id"])
                    if not need:
                        break
        if baselines is not None:
            baselines.update(last)
            for sid, _, value in _firsts(window):
                baselines.setdefault(sid, value)
        count = 0
        for sid, kind, value in window:
            before = last.get(sid)
            if kind == "subscription_changed" and before is not None and value < before:
                count += 1
            last[sid] = value
        return count

    def _events(self, time_filter: dict[str, Any], direction: str) -> Iterator[Any]:
        base = {
            "event_type": {"in": _SUBSCRIPTION_EVENTS},
            "sort_by": {direction: "occurred_at"},
            "limit": 100,
            **time_filter,
        }
        return self._pages(
            lambda offset: self._cb.Event.list(_paged(base, offset)), "events", EVENT_PAGES_MAX
        )

    def _usage(self, sub_ids: list[str], now: int) -> tuple[float, float] | None:
        """Metered usage (``GET /usages``) of the last 30 days and the 30 before; None when the
        customer has no usage records in those 60 days or the site has no metered billing."""
        if not sub_ids:
            return None
        cut = now - 30 * DAY_S
        params = {
            "subscription_id": {"in": sub_ids},
            "usage_date": {"after": now - 60 * DAY_S},
            "limit": 100,
        }
        recent = previous = 0.0
        seen = False
        try:
            for entry in self._pages(
                lambda offset: self._cb.Usage.list(_paged(params, offset)),
                "usages",
                USAGE_PAGES_MAX,
            ):
                seen = True
                quantity = float(entry.usage.quantity or 0)
                if int(entry.usage.usage_date or 0) >= cut:
                    recent += quantity
                else:
                    previous += quantity
        except ConnectorError as err:
            if err.kind is not ErrorKind.PERMANENT:
                raise
            return None  # no metered billing on this site (or nothing we may read): no usage
        return (recent, previous) if seen else None

    def _call(self, fn: Any, what: str) -> Any:
        limits.pace(self.name)  # one HTTP request per call
        token = _HTTP.set(self._http)
        try:
            return fn()
        except APIError as exc:
            raise _classify(exc, what) from None
        except httpx.TimeoutException as exc:
            raise ConnectorError(
                self.name, ErrorKind.RETRYABLE, f"timeout: {type(exc).__name__}"
            ) from None
        except httpx.HTTPError as exc:
            raise ConnectorError(
                self.name, ErrorKind.RETRYABLE, f"network: {type(exc).__name__}"
            ) from None
        except Exception as exc:
            # The client raises plain Exceptions for non-JSON 5xx bodies ("http_status_code: 503").
            text = str(exc)
            if "http_status_code: 5" in text:
                raise ConnectorError(
                    self.name, ErrorKind.RETRYABLE, "server error (non-JSON body)"
                ) from None
            raise
        finally:
            _HTTP.reset(token)

    # --- the churn sweep's bulk reads -------------------------------------------------------------

    def customer_snapshots(
        self, customer_ids: list[str], invoices: int = 5
    ) -> dict[str, CustomerSnapshot]:
        """The churn sweep's page read: ≤ 4 Chargebee calls for 100 customers, only what the
        score uses (``connectors/churn/chargebee.py``); ``invoices`` is not used (the sweep
        reads the invoices of failed payments only)."""
        del invoices
        if self._sweep_reader is None:
            kit = SimpleNamespace(
                _paged=_paged,
                _ts=_ts,
                _STATUS=_STATUS,
                _items_monthly=_items_monthly,
                BULK_IN_MAX=BULK_IN_MAX,
                SWEEP_EVENTS_TTL_S=SWEEP_EVENTS_TTL_S,
                DOWNGRADE_WINDOW_S=DOWNGRADE_WINDOW_S,
            )
            self._sweep_reader = ChargebeeSweepReader(self, kit)
        return dict(self._sweep_reader.snapshots(customer_ids))

    def _usage_by_sub(self, sub_ids: list[str], now: int) -> dict[str, tuple[float, float]]:
        """``_usage`` for many subscriptions at once, per subscription (``subscription_id[in]``,
        at most 100 IDs a request); absent: no usage records in the 60 days."""
        cut = now - 30 * DAY_S
        out: dict[str, tuple[float, float]] = {}
        for start in range(0, len(sub_ids), BULK_IN_MAX):
            params = {
                "subscription_id": {"in": sub_ids[start : start + BULK_IN_MAX]},
                "usage_date": {"after": now - 60 * DAY_S},
                "limit": 100,
            }
            try:
                for entry in self._pages(
                    lambda offset, p=params: self._cb.Usage.list(_paged(p, offset)),
                    "usages",
                    USAGE_PAGES_MAX,
                ):
                    u = entry.usage
                    recent, previous = out.get(u.subscription_id, (0.0, 0.0))
                    quantity = float(u.quantity or 0)
                    if int(u.usage_date or 0) >= cut:
                        recent += quantity
                    else:
                        previous += quantity
                    out[u.subscription_id] = (recent, previous)
            except ConnectorError as err:
                if err.kind is not ErrorKind.PERMANENT:
                    raise
                return {}  # no metered billing on this site: no usage
        return out


def _classify(exc: APIError, what: str) -> ConnectorError:
    status = int(exc.http_status_code or 0)
    code = exc.api_error_code
    if status == 404 or code == "resource_not_found":
        return NotFound("chargebee", what, status)
    if status == 429 or code == "api_request_limit_exceeded":
        headers = exc.http_headers or {}
        retry_after = _float(headers.get("Retry-After") or headers.get("retry-after")) or 60.0
        return ConnectorError(
            "chargebee",
            ErrorKind.RATE_LIMITED,
            "rate limited",
            status=status,
            code=code,
            retry_after=retry_after,
        )
    config = _configuration_error(exc)
    if config is not None:
        return config
    kind = ErrorKind.PERMANENT if status in _PERMANENT_4XX else ErrorKind.RETRYABLE
    return ConnectorError("chargebee", kind, f"{code}: {exc}", status=status, code=code)


def _configuration_error(exc: APIError) -> ConfigurationError | None:
    """A 400 that names a site setting RevBridge needs: the payment term (``net_term_days``),
    Contract Terms (``contract_term[...]``), or the CRM-link custom field (unknown until created)."""
    status = int(exc.http_status_code or 0)
    param = str(getattr(exc, "param", None) or "")
    if status != 400 or not param:
        return None
    if param == "net_term_days":
        return ConfigurationError(
            "net-terms",
            f"the site refused the payment term ({str(exc)[:120]})",
            "add the deal's payment term in Settings > Configure Chargebee > Billing LogIQ > "
            "Payment Terms",
            status,
        )
    if param.startswith("contract_term"):
        return ConfigurationError(
            "contract-terms", "Contract Terms are not enabled", FIX_CONTRACT_TERMS, status
        )
    if param == CRM_LINK_FIELD:
        return ConfigurationError(
            f"custom-field:{CRM_LINK_FIELD}",
            "the site has no such customer custom field",
            FIX_CUSTOM_FIELD,
            status,
        )
    return None


def _metadata(raw: Any) -> dict[str, str]:
    """Chargebee's meta_data is free-form JSON; keep its top level as strings."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {"meta_data": raw[:500]}
    if not isinstance(raw, dict):
        return {}
    return {str(k)[:40]: (v if isinstance(v, str) else json.dumps(v))[:500] for k, v in raw.items()}


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --- quote-to-cash helpers -------------------------------------------------------------------------


def _not_checked(name: str, err: ConnectorError) -> Check:
    return Check(
        system="chargebee",
        name=name,
        status=CheckStatus.SKIP,
        detail=f"could not be checked ({err.code or err.kind.value})",
    )


def _net_terms_check(needed: set[int], site: Iterable[int] | None) -> Check:
    wanted = ", ".join(f"Net {d}" for d in sorted(needed))
    if site is None:
        return Check(
            system="chargebee",
            name="net-terms",
            status=CheckStatus.WARN,
            detail=f"quotes need {wanted}; Chargebee's API does not show the site's payment terms",
            fix=f"make sure the site offers them: {fix_net_terms(needed)}",
        )
    missing = needed - set(site)
    if missing:
        return Check(
            system="chargebee",
            name="net-terms",
            status=CheckStatus.FAIL,
            detail=f"the site does not offer {', '.join(f'Net {d}' for d in sorted(missing))}",
            fix=fix_net_terms(missing),
        )
    return Check(system="chargebee", name="net-terms", status=CheckStatus.OK, detail=wanted)


def note_text(text: str) -> str:
    """``text`` as a Chargebee comment holds it: at most 1,000 characters, cut with a marker."""
    if len(text) <= COMMENT_MAX_CHARS:
        return text
    return text[: COMMENT_MAX_CHARS - len(TRUNCATED_MARKER)] + TRUNCATED_MARKER


def crm_link(crm: str, account_id: str) -> str:
    """The value of ``cf_crm_link``: one searchable string for the pair (CRM, account ID)."""
    return f"{crm}:{account_id}"


def crm_link_params(meta: dict[str, Any], crm: str, account_id: str | None) -> dict[str, Any]:
    """Customer params that write (or, with ``account_id=None``, clear) the CRM link in both
    places: ``meta_data`` (merged into ``meta``) and the ``cf_crm_link`` custom field. Also used
    by the sandbox driver, so a hand-made linked customer looks like one RevBridge made."""
    meta = {k: v for k, v in meta.items() if k not in ("crm", "crm_account_id")}
    if account_id is not None:
        meta.update(crm=crm, crm_account_id=account_id)
    return {
        # a "json key": the client sends it as given, so it must be JSON text already
        "meta_data": json.dumps(meta),
        CRM_LINK_FIELD: crm_link(crm, account_id) if account_id is not None else "",
    }


def object_id(idempotency_key: str) -> str:
    """A Chargebee object ID for the object an idempotency key creates (≤ 50 characters)."""
    if len(idempotency_key) <= 50 and all(ch.isalnum() or ch in "-_" for ch in idempotency_key):
        return idempotency_key
    return "rb-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


def derived_key(idempotency_key: str, step: str) -> str:
    """The key of one of several calls made under one idempotency key (≤ 100 characters)."""
    key = f"{idempotency_key}-{step}"
    return key if len(key) <= 100 else "rb-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def _key(idempotency_key: str) -> dict[str, str]:
    return {"chargebee-idempotency-key": idempotency_key}


def _duplicate_id(err: ConnectorError) -> bool:
    """Chargebee's answer to an ID that is taken: 400 ``duplicate_entry`` on ``id``."""
    return err.code == "duplicate_entry"


def _json_object(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return dict(raw) if isinstance(raw, dict) else {}


def _item_params(line: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"item_price_id": line.price_id, "quantity": line.quantity}
    if line.unit_amount is not None:
        item["unit_price"] = line.unit_amount  # a non-standard price for this deal
    return item


def _billing_cycles(term_months: int, period: int, unit: str | None) -> int | None:
    """``term_months`` as billing cycles of the plan (12 months of a yearly plan: 1 cycle)."""
    months = _MONTHS.get(unit or "")
    if months is None or term_months <= 0:
        return None  # day/week plans: no month-based contract term
    return max(1, math.ceil(term_months / (months * max(period, 1))))


def _start_ts(start: date | None) -> int | None:
    """A future start date as midnight UTC; today or past: start now (backdating is a site
    setting we do not assume)."""
    if start is None:
        return None
    ts = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    return ts if ts > time.time() else None


def _paged(params: dict[str, Any], offset: str | None) -> dict[str, Any]:
    return {**params, "offset": offset} if offset else dict(params)


def _invoice(inv: Any) -> Invoice:
    return Invoice(
        id=inv.id,
        customer_id=inv.customer_id,
        subscription_id=getattr(inv, "subscription_id", None),
        status=_STATUS.get(inv.status, InvoiceStatus.OTHER),
        total=int(inv.total or 0),
        amount_due=int(inv.amount_due or 0),
        currency=inv.currency_code,
        issued_at=_ts(inv.date),
    )


def _items_monthly(sub: dict[str, Any]) -> float:
    """The subscription's recurring item amounts per month, before discounts (raw event JSON)."""
    total = 0.0
    for item in sub.get("subscription_items") or []:
        months = _MONTHS.get(item.get("billing_period_unit") or "")
        if months is None:
            continue
        per = months * max(int(item.get("billing_period") or 1), 1)
        total += float(item.get("amount") or 0) / per
    return total


def _firsts(events: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    """The first event of each subscription, in order."""
    seen: set[str] = set()
    out = []
    for ev in events:
        if ev[0] not in seen:
            seen.add(ev[0])
            out.append(ev)
    return out
