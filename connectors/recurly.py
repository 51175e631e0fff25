"""Recurly (API v2021-02-25) through the official ``recurly`` client (billing-apis.md §4).

- **One client per connector.** ``recurly.Client`` holds one persistent HTTPS connection
  (keep-alive) that is not thread-safe, so calls are serialized with a lock; a connection left
  half-used by a timeout is closed before the next call. The client never retries: Temporal owns
  retries.
- **IDs.** A billing customer is a Recurly account and its ID is the account ``code`` (our
  external key; API paths use ``code-<code>``); invoices and subscriptions are Recurly IDs.
  Prices are plan codes, or ``<plan code>:<add-on code>`` for an add-on of a plan.
- **Idempotency.** v2021-02-25 documents no idempotency header. Every POST still carries our key
  as ``Idempotency-Key`` (harmless, and visible in request logs), but what makes a retried
  write a no-op is a natural key looked up before (or after) creating: the account ``code`` and
  coupon ``code`` derived from the key (Recurly answers 422 "has already been taken" to a
  second create), the subscription custom field ``revbridge_key``, and a ``[revbridge:<hash>]``
  marker at the end of account notes and credit adjustments.
- **The CRM link** lives in the account custom fields ``crm`` and ``crm_account_id`` (the site
  admin defines them). Recurly's account list cannot filter on custom fields, so finding a link
  is a bounded scan of the book (``SCAN_PAGES_MAX`` pages of 200).
- **Dunning campaigns.** A past-due invoice that one of Recurly's dunning campaigns is retrying is
  left to it: ``retry_payment`` does not force a collection then (see :meth:`retry_payment`).
"""

from __future__ import annotations

import hashlib
import http.client
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlparse

import recurly
from recurly import errors as rerr

from connectors import limits
from connectors import recurly_hot as hot
from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.churn.recurly import snapshots as sweep_snapshots
from connectors.timeouts import call_timeout
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
from domain.records import (
    CustomerDraft,
    CustomerPage,
    CustomerSnapshot,
    Price,
    Subscription,
    SubscriptionDraft,
    SubscriptionRef,
)
from domain.settings import RecurlySettings

VENDOR = "recurly"
#: the client keeps one connection; idle longer than this, it is closed before the next request:
#: servers close idle keep-alive connections (uvicorn after 5 s, load balancers after tens of
#: seconds) and the first request on a closed one failed and waited out an activity retry (the
#: sync's immediate writes on Recurly: p50 1.2 s instead of ~0.3 s)
IDLE_RECONNECT_S = 4.0
DAY_S = 86_400
SCAN_PAGES_MAX = 25
#: how long the churn sweep reuses one walk of the site lists (a sweep), and its page bound
SWEEP_WALK_TTL_S = 900
SWEEP_WALK_PAGES_MAX = 5_000
#: custom fields the site defines for RevBridge (account: the CRM link; subscription: the deal)
CF_CRM, CF_CRM_ACCOUNT = "crm", "crm_account_id"
CF_OPPORTUNITY, CF_KEY = "crm_opportunity_id", "revbridge_key"
_ZERO_DECIMAL = {"JPY", "KRW", "CLP", "VND", "ISK", "UGX", "XAF", "XOF", "PYG"}
_STATUS = {
    "paid": InvoiceStatus.PAID,
    "pending": InvoiceStatus.OPEN,
    "past_due": InvoiceStatus.OPEN,
    "processing": InvoiceStatus.OPEN,
    "open": InvoiceStatus.OPEN,
    "voided": InvoiceStatus.VOID,
}
#: Recurly's "canceled" is a live subscription that will not renew (it expires at the period's
#: end): the state Chargebee calls non_renewing, the spelling the domain's scorecard knows
_LIVE_ENDING = {"canceled": "non_renewing"}
_MARKER = re.compile(r"\[revbridge:([0-9a-f]{16})\]")
_CODE_OK = re.compile(r"[a-z0-9@\-_.+]{1,50}")
#: the custom fields the site must define (related type, API name): ``revbridge doctor`` checks them
REQUIRED_CUSTOM_FIELDS: tuple[tuple[str, str], ...] = (
    ("account", CF_CRM),
    ("account", CF_CRM_ACCOUNT),
    ("subscription", CF_CRM),
    ("subscription", CF_OPPORTUNITY),
    ("subscription", CF_KEY),
)


def marker(idempotency_key: str) -> str:
    return f"[revbridge:{hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]}]"


def object_code(idempotency_key: str, prefix: str = "rb-") -> str:
    """A Recurly code (≤ 50 of a-z 0-9 @ - _ . +) for the object an idempotency key creates."""
    lowered = idempotency_key.lower()
    if _CODE_OK.fullmatch(lowered) and lowered == idempotency_key:
        return idempotency_key
    return prefix + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


def to_minor(amount: Any, currency: str | None) -> int:
    value = float(amount or 0)
    if (currency or "").upper() in _ZERO_DECIMAL:
        return int(round(value))
    return int(round(value * 100))


def to_major(amount: int, currency: str) -> float:
    if currency.upper() in _ZERO_DECIMAL:
        return float(amount)
    return round(amount / 100, 2)


def _fields(resource: Any) -> dict[str, str]:
    return {f.name: f.value for f in (getattr(resource, "custom_fields", None) or [])}


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class RecurlyBilling:
    name = VENDOR

    def __init__(self, settings: RecurlySettings, timeout_s: float = 20.0) -> None:
        # below the activity's start-to-close (connectors/timeouts.py)
        timeout_s = self.call_timeout_s = call_timeout(timeout_s)
        key = settings.api_key.get_secret_value()
        self._rc = recurly.Client(key, timeout=timeout_s, region=settings.region)
        if settings.api_url:
            # The client has no base-URL option: swap its one connection (billing-apis.md §4a)
            url = urlparse(settings.api_url)
            conn_cls = (
                http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
            )
            port = url.port or (443 if url.scheme == "https" else 80)
            self._rc._BaseClient__conn = conn_cls(url.hostname, port, timeout=timeout_s)  # type: ignore[attr-defined]
        self._lock = threading.Lock()
        self._last_call = time.monotonic()
        self._plans: dict[str, Any] = {}
        #: invoice ID → its account's code, as read (an invoice never changes account): an
        #: invoice's note finds its account without reading the invoice again (issue 15)
        self._invoice_accounts: dict[str, str] = {}

    @property
    def client(self) -> recurly.Client:
        """The configured official client (the demo and tests drive the sandbox with it)."""
        return self._rc

    # --- BillingPlatform -------------------------------------------------------------------------

    def get_invoice_context(self, invoice_id: str, payments: int = 5) -> InvoiceContext:
        inv = self._call(lambda c: c.get_invoice(invoice_id), f"invoice {invoice_id}")
        code = inv.account.code
        self._remember_account(invoice_id, code)
        account = self._call(lambda c: c.get_account(f"code-{code}"), f"account {code}")
        # the hot path (payments=0: the event carried the attempt) takes the MRR from the
        # invoice's subscription lines when they say it (issue 15; connectors/recurly_hot.py)
        lines_mrr = hot.mrr_from_lines(inv, to_minor) if payments == 0 else None
        mrr = lines_mrr or 0
        subs = list(inv.subscription_ids or []) if lines_mrr is None else []
        for sid in subs:
            sub = self._call(lambda c, s=sid: c.get_subscription(s), f"subscription {sid}")
            mrr += self._mrr(sub)
        txns = []
        if payments > 0:  # 0: the caller has the attempt (the event carried it)
            txns = self._call(
                lambda c: c.list_account_transactions(
                    f"code-{code}",
                    params={"limit": min(payments, 200), "order": "desc", "type": "payment"},
                ).take(min(payments, 200)),
                "transactions",
            )
        return InvoiceContext(
            invoice=_invoice(inv),
            customer=self._customer(account, mrr=mrr, currency=inv.currency),
            recent_payments=[_payment(t) for t in txns or []],
        )

    def invoice_context_customer_later(self, invoice_id: str) -> InvoiceContext:
        """The invoice alone (issue 15): its customer as the invoice names it (the AccountMini:
        code, company, email), the MRR from its subscription lines (else the subscriptions'
        reads), no payment attempts; the account (tenure, language, CRM link) is the caller's
        to read after the case (:meth:`billing_customer`)."""
        inv = self._call(lambda c: c.get_invoice(invoice_id), f"invoice {invoice_id}")
        code = self._remember_account(invoice_id, inv.account.code)
        mrr = hot.mrr_from_lines(inv, to_minor)
        if mrr is None:
            mrr = sum(
                self._mrr(self._call(lambda c, s=sid: c.get_subscription(s), f"subscription {sid}"))
                for sid in inv.subscription_ids or []
            )
        customer = BillingCustomer(
            id=code,
            company=inv.account.company,
            mrr=mrr,
            currency=(inv.currency or "USD").upper(),
            email=inv.account.email or None,
        )
        return InvoiceContext(invoice=_invoice(inv), customer=customer, customer_later=True)

    def billing_customer(self, customer_id: str) -> BillingCustomer:
        """The account (one read): its tenure, language, contact and CRM link; no MRR."""
        account = self._call(
            lambda c: c.get_account(f"code-{customer_id}"), f"account {customer_id}"
        )
        return self._customer(account)

    def add_note(self, target: NoteTarget, target_id: str, text: str, idempotency_key: str) -> str:
        """An account note (Recurly has notes on accounts only). An invoice's note goes on its
        account, prefixed with the invoice. Looked up by its key marker before it is created."""
        return self.add_notes(target, target_id, [(text, idempotency_key)])[-1]

    def add_notes(
        self, target: NoteTarget, target_id: str, notes: list[tuple[str, str]]
    ) -> list[str]:
        """Several notes (``(text, idempotency key)``, oldest first) as :meth:`add_note` writes
        one, each once per its key (issue 15). Recurly creates notes one at a time (no batch,
        no idempotency header), so entries written together go as ONE note, each entry ending
        with its key's marker (``recurly_hot.one_note``; one note each where they would not
        fit). An activity's first attempt creates without looking: the keys are the calling
        activity's alone, so no earlier attempt can have written them; a retry, or a call
        outside an activity, first looks up the account's notes for each key's marker and
        writes only the missing entries. Returns each entry's note ID."""
        code, prefix = self._note_account(target, target_id)
        existing = [] if limits.first_attempt() else self._notes(code)
        found_ids = {
            tag: next((n.id for n in existing if tag in (n.message or "")), None)
            for tag in (marker(k) for _, k in notes)
        }
        missing = [(t, k) for t, k in notes if found_ids[marker(k)] is None]
        message = hot.one_note(prefix, [(t, marker(k)) for t, k in missing])
        if len(missing) > 1 and message is not None:
            note = self._call(
                lambda c: c.create_account_note(
                    f"code-{code}", {"message": message}, headers=_key(missing[-1][1])
                ),
                f"account {code}",
            )
            for _, k in missing:
                found_ids[marker(k)] = note.id
        ids = []
        for text, idempotency_key in notes:
            tag = marker(idempotency_key)
            found = found_ids[tag]
            if found is not None:
                ids.append(found)
                continue
            message = f"{prefix}{text}"[: 2048 - len(tag) - 2] + "\n" + tag
            note = self._call(
                lambda c, m=message, k=idempotency_key: c.create_account_note(
                    f"code-{code}", {"message": m}, headers=_key(k)
                ),
                f"account {code}",
            )
            ids.append(note.id)
        return ids

    def list_notes(self, target: NoteTarget, target_id: str) -> list[str]:
        code, prefix = self._note_account(target, target_id)
        out = []
        for note in self._notes(code):
            for entry in hot.split_note(note.message or ""):  # a note may carry several
                if entry.startswith(prefix):
                    out.append(_MARKER.sub("", entry[len(prefix) :]).rstrip())
        return out

    def retry_payment(self, invoice_id: str, idempotency_key: str) -> PaymentAttempt:
        """``PUT /invoices/{id}/collect`` ("force a collection attempt"), unless:

        - the invoice is paid already (an earlier attempt whose answer was lost succeeded):
          success, nothing is charged again;
        - a Recurly dunning campaign is retrying it (the invoice's campaign, else the account's,
          exists and is not deleted, and its last dunning event is not sent): Recurly's own
          schedule is not fought — no collection, an unsuccessful attempt whose message says so.
        """
        inv = self._call(lambda c: c.get_invoice(invoice_id), f"invoice {invoice_id}")
        if inv.state == "paid":
            return PaymentAttempt(succeeded=True)
        if inv.state not in ("pending", "past_due"):
            return PaymentAttempt(succeeded=False, message=f"invoice is {inv.state}")
        campaign = self.active_dunning_campaign(inv)
        if campaign is not None:
            return PaymentAttempt(
                succeeded=False,
                decline_code=None,
                message=f"deferred: Recurly dunning campaign {campaign} is retrying this invoice",
            )
        try:
            self._call(
                lambda c: c.collect_invoice(invoice_id, headers=_key(idempotency_key)),
                f"invoice {invoice_id}",
            )
        except _Declined as declined:
            return PaymentAttempt(
                succeeded=False, decline_code=declined.code, message=declined.message[:200]
            )
        return PaymentAttempt(succeeded=True)

    def active_dunning_campaign(self, inv: Any) -> str | None:
        """The code of the Recurly dunning campaign retrying this invoice, or None."""
        if inv.state != "past_due" or getattr(inv, "final_dunning_event", False):
            return None
        campaign_id = getattr(inv, "dunning_campaign_id", None) or getattr(
            inv.account, "dunning_campaign_id", None
        )
        if not campaign_id:
            return None
        try:
            campaign = self._call(
                lambda c: c.get_dunning_campaign(campaign_id), f"dunning campaign {campaign_id}"
            )
        except NotFound:
            return None
        if getattr(campaign, "deleted_at", None):
            return None
        return campaign.code

    def apply_credit(
        self, customer_id: str, amount: int, currency: str, reason: str, idempotency_key: str
    ) -> str:
        """A credit adjustment (``POST /accounts/{id}/line_items`` type credit), used by the
        account's next invoice. Looked up by its key marker first."""
        tag = marker(idempotency_key)
        for item in self._scan(
            lambda c: c.list_account_line_items(
                f"code-{customer_id}", params={"limit": 200, "type": "credit"}
            ),
            "line items",
            pages=5,
        ):
            if (item.description or "").endswith(tag):
                return item.id
        item = self._call(
            lambda c: c.create_line_item(
                f"code-{customer_id}",
                {
                    "type": "credit",
                    "currency": currency.upper(),
                    "unit_amount": to_major(amount, currency),
                    "quantity": 1,
                    "description": f"{reason[:200]} {tag}",
                    "credit_reason_code": "service",
                },
                headers=_key(idempotency_key),
            ),
            f"account {customer_id}",
        )
        return item.id

    # --- quote-to-cash -------------------------------------------------------------------------

    def find_customer_by_crm(self, crm: str, account_id: str) -> BillingCustomer | None:
        """The oldest open account whose custom fields hold this CRM link (a bounded scan:
        Recurly's list cannot filter on custom fields)."""
        for account in self._accounts_scan():
            f = _fields(account)
            if f.get(CF_CRM) == crm and f.get(CF_CRM_ACCOUNT) == account_id:
                return self._customer(account)
        return None

    def find_customers(self, email: str | None, company: str | None) -> list[BillingCustomer]:
        """Exact email (the list's ``email`` filter) first, then company name (case-insensitive;
        exact before contains) from a bounded scan of open accounts."""
        ranked: dict[str, tuple[int, float, Any]] = {}
        if email:
            for a in self._scan(
                lambda c: c.list_accounts(params={"email": email, "limit": 200, "order": "asc"}),
                "accounts",
                pages=1,
            ):
                if a.state == "active":
                    ranked[a.code] = (0, _epoch(a.created_at), a)
        if company:
            wanted = company.casefold()
            for a in self._accounts_scan():
                name = (a.company or "").casefold()
                if not name or wanted not in name:
                    continue
                rank = 1 if name == wanted else 2
                if a.code not in ranked or ranked[a.code][0] > rank:
                    ranked[a.code] = (rank, _epoch(a.created_at), a)
        best = sorted(ranked.values(), key=lambda r: (r[0], r[1]))[:10]
        return [self._customer(a) for _, _, a in best]

    def create_customer(self, draft: CustomerDraft) -> BillingCustomer:
        """``POST /accounts`` with a code derived from the key: a retry meets 422 "code has
        already been taken" and reads the same account."""
        code = object_code(draft.key)
        body: dict[str, Any] = {
            "code": code,
            "company": draft.company,
            "custom_fields": _link_fields(draft.crm, draft.crm_account_id),
        }
        for name in ("email", "first_name", "last_name"):
            if getattr(draft, name):
                body[name] = getattr(draft, name)
        try:
            account = self._call(
                lambda c: c.create_account(body, headers=_key(draft.key)), "account"
            )
        except ConnectorError as err:
            if err.code != "code_taken":
                raise
            account = self._call(lambda c: c.get_account(f"code-{code}"), f"account {code}")
        return self._customer(account, currency=draft.currency.upper())

    def set_crm_link(
        self, customer_id: str, crm: str, account_id: str | None, idempotency_key: str
    ) -> None:
        """Write (or clear) the ``crm`` / ``crm_account_id`` custom fields; clearing leaves
        another CRM's link alone."""
        account = self._call(
            lambda c: c.get_account(f"code-{customer_id}"), f"account {customer_id}"
        )
        if account_id is None and _fields(account).get(CF_CRM) not in (None, crm):
            return
        self._call(
            lambda c: c.update_account(
                f"code-{customer_id}", {"custom_fields": _link_fields(crm, account_id)}
            ),
            f"account {customer_id}",
        )

    def delete_customer(self, customer_id: str, idempotency_key: str) -> None:
        """Deactivate the account (Recurly never deletes one; its live subscriptions are
        terminated with it). Already closed or gone is success."""
        try:
            self._call(
                lambda c: c.deactivate_account(f"code-{customer_id}"), f"account {customer_id}"
            )
        except NotFound:
            return

    def get_price(self, price_id: str) -> Price:
        plan_code, _, add_on_code = price_id.partition(":")
        plan = self._plan(plan_code)
        source = plan
        if add_on_code:
            source = self._call(
                lambda c: c.get_plan_add_on(f"code-{plan_code}", f"code-{add_on_code}"),
                f"add-on {price_id}",
            )
        currencies = list(source.currencies or [])
        if not currencies:
            raise NotFound(VENDOR, f"price {price_id}")
        chosen = next((c for c in currencies if c.currency == "USD"), currencies[0])
        months = _plan_months(plan)
        return Price(
            id=price_id,
            product=plan.code if not add_on_code else f"{plan.code}:{add_on_code}",
            unit_amount=to_minor(chosen.unit_amount, chosen.currency),
            currency=chosen.currency,
            period="year" if months == 12 else "month",
            period_count=1 if months == 12 else max(1, months),
        )

    def create_subscription(self, draft: SubscriptionDraft) -> SubscriptionRef:
        """``POST /subscriptions`` with the plan line as the plan and the other lines as its
        add-ons, the term in billing cycles (renewing), net terms (manual collection), the
        deal's discount as a single-use coupon code, and the deal in custom fields. Looked up by
        the ``revbridge_key`` custom field before it is created."""
        existing = self._subscription_by_key(draft.customer_id, draft.key)
        if existing is not None:
            return self._ref(existing, created=False)
        plans = [line for line in draft.lines if ":" not in line.price_id]
        if len(plans) != 1:
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                "a Recurly subscription needs exactly one plan line (others must be its add-ons)",
                code="plan_lines",
            )
        plan_line = plans[0]
        plan = self._plan(plan_line.price_id)
        currency = draft.currency.upper()
        add_ons = []
        for line in draft.lines:
            if line is plan_line:
                continue
            plan_code, _, add_on_code = line.price_id.partition(":")
            if plan_code != plan.code:
                raise ConnectorError(
                    VENDOR,
                    ErrorKind.PERMANENT,
                    f"{line.price_id} is not an add-on of plan {plan.code}",
                    code="add_on_plan",
                )
            entry: dict[str, Any] = {"code": add_on_code, "quantity": line.quantity}
            if line.unit_amount is not None:
                entry["unit_amount"] = to_major(line.unit_amount, currency)
            add_ons.append(entry)
        body: dict[str, Any] = {
            "plan_code": plan.code,
            "currency": currency,
            "account": {"code": draft.customer_id},
            "quantity": plan_line.quantity,
            "add_ons": add_ons,
            "auto_renew": True,
            "custom_fields": [
                {"name": CF_CRM, "value": draft.crm},
                {"name": CF_OPPORTUNITY, "value": draft.crm_opportunity_id},
                {"name": CF_KEY, "value": _key_value(draft.key)},
            ],
        }
        if plan_line.unit_amount is not None:
            body["unit_amount"] = to_major(plan_line.unit_amount, currency)
        months = _plan_months(plan)
        if draft.term_months > 0 and months:
            cycles = max(1, -(-draft.term_months // months))
            body["total_billing_cycles"] = cycles
            body["renewal_billing_cycles"] = cycles
        if draft.net_term_days is not None:
            body["net_terms"] = draft.net_term_days
            body["collection_method"] = "manual"
        elif not self._has_billing_info(draft.customer_id):
            # nothing to charge yet (an account quote-to-cash just made): Recurly invoices it
            # for the customer to pay instead of declining the purchase
            body["collection_method"] = "manual"
        start = _future(draft.start_date)
        if start is not None:
            body["starts_at"] = start
        if draft.discount_percent:
            body["coupon_codes"] = [self._deal_coupon(draft)]
        try:
            sub = self._call(
                lambda c: c.create_subscription(body, headers=_key(draft.key)),
                f"account {draft.customer_id}",
            )
        except _Declined as declined:
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                f"the first invoice was declined: {declined.code}",
                code="transaction",
            ) from None
        except ConnectorError as err:
            # the answer to an earlier attempt was lost: it may exist after all
            again = self._subscription_by_key(draft.customer_id, draft.key)
            if again is None:
                raise err from None
            return self._ref(again, created=False)
        return self._ref(sub, created=True)

    def cancel_subscription(self, subscription_id: str, idempotency_key: str, reason: str) -> str:
        """Terminate now (``DELETE /subscriptions/{id}?refund=none``): no refund, no proration.
        Already expired (or failed) is success. ``reason`` goes to the audit note, not Recurly."""
        sub = self._call(
            lambda c: c.get_subscription(subscription_id), f"subscription {subscription_id}"
        )
        if sub.state in ("expired", "failed"):
            return sub.state
        try:
            done = self._call(
                lambda c: c.terminate_subscription(subscription_id, params={"refund": "none"}),
                f"subscription {subscription_id}",
            )
        except ConnectorError as err:
            if err.code != "immutable_subscription":
                raise
            return self._call(
                lambda c: c.get_subscription(subscription_id), f"subscription {subscription_id}"
            ).state
        return done.state

    # --- churn and support context ----------------------------------------------------------------

    def list_customers(self, cursor: str | None = None, limit: int = 100) -> CustomerPage:
        """One page of accounts, oldest first; the cursor is Recurly's own."""
        params: dict[str, Any] = {
            "limit": max(1, min(limit, 200)),
            "order": "asc",
            "sort": "created_at",
        }
        if cursor:
            params["cursor"] = cursor
        page = self._call(
            lambda c: c._make_request("GET", "/accounts", None, params=params), "accounts"
        )
        if not cursor:  # a new pass over the book: the sweep's walks are read again
            self._sweep_cache = None
        self._listed_accounts = {a.code: a for a in page.data}  # the sweep's page read
        next_cursor = None
        if page.has_more and page.next:
            next_cursor = dict(parse_qsl(urlparse(page.next).query)).get("cursor")
        return CustomerPage(
            customers=[self._customer(a) for a in page.data], next_cursor=next_cursor
        )

    def customer_snapshot(self, customer_id: str, invoices: int = 5) -> CustomerSnapshot:
        code = f"code-{customer_id}"
        account = self._call(lambda c: c.get_account(code), f"account {customer_id}")
        raw_subs = list(
            self._scan(
                lambda c: c.list_account_subscriptions(code, params={"limit": 200}),
                "subscriptions",
                pages=5,
            )
        )
        subs = [self._subscription(s) for s in raw_subs]
        live = [s for s in subs if s.status in ("active", "non_renewing", "paused", "future")]
        n = max(1, min(invoices, 200))
        invs = self._call(
            lambda c: c.list_account_invoices(code, params={"limit": n, "order": "desc"}).take(n),
            "invoices",
        )
        txns = self._call(
            lambda c: c.list_account_transactions(
                code, params={"limit": 10, "order": "desc", "type": "payment"}
            ).take(10),
            "transactions",
        )
        now = time.time()
        credit = 0
        for item in self._scan(
            lambda c: c.list_account_line_items(
                code, params={"limit": 200, "state": "pending", "type": "credit"}
            ),
            "line items",
            pages=5,
        ):
            credit += -to_minor(item.amount, item.currency)
        currency = (live[0].currency if live else None) or (subs[0].currency if subs else "USD")
        usage = self._usage(raw_subs, now)
        return CustomerSnapshot(
            customer=self._customer(account, mrr=sum(s.mrr for s in live), currency=currency),
            subscriptions=subs,
            invoices=[_invoice(i) for i in invs or []],
            payments=[_payment(t) for t in txns or []],
            credit_balance=max(credit, 0),
            downgrades_90d=self._downgrades(code, now),
            usage_30d=usage[0] if usage else None,
            usage_prev_30d=usage[1] if usage else None,
        )

    def apply_discount(
        self, subscription_id: str, percent: float, months: int, idempotency_key: str
    ) -> str:
        """A retention offer as a coupon redemption: a temporal percent coupon (code derived from
        the key) redeemed on the subscription. Both steps are looked up before they are made."""
        sub = self._call(
            lambda c: c.get_subscription(subscription_id), f"subscription {subscription_id}"
        )
        code = object_code(idempotency_key, prefix="rb-ret-")[:50]
        pct = max(1, min(100, int(round(percent))))
        coupon = self._ensure_coupon(
            {
                "code": code,
                "name": f"Retention {pct}% for {months} months"[:255],
                "discount_type": "percent",
                "discount_percent": pct,
                "duration": "temporal",
                "temporal_amount": max(1, months),
                "temporal_unit": "month",
                "redemption_resource": "subscription",
                "max_redemptions_per_account": 1,
                "applies_to_all_plans": True,
            },
            idempotency_key,
        )
        redeemed = self._scan(
            lambda c: c.list_subscription_coupon_redemptions(
                subscription_id, params={"limit": 200}
            ),
            "coupon redemptions",
            pages=2,
        )
        if any(r.coupon.code == code for r in redeemed):
            return code
        try:
            self._call(
                lambda c: c.create_coupon_redemption(
                    f"code-{sub.account.code}",
                    {"coupon_id": coupon.id, "subscription_id": subscription_id},
                    headers=_key(derived_key(idempotency_key, "redeem")),
                ),
                f"subscription {subscription_id}",
            )
        except ConnectorError as err:
            # redeemed by an attempt whose answer was lost (max one per account)
            if err.code != "validation" or "redeemed" not in str(err):
                raise
        return code

    # --- helpers ---------------------------------------------------------------------------------

    def _call(self, fn: Callable[[recurly.Client], Any], what: str) -> Any:
        limits.pace(VENDOR)  # connectors/limits.py: this process's share of the rate
        with self._lock:
            if time.monotonic() - self._last_call > IDLE_RECONNECT_S:
                # the server has likely closed the idle connection: a request on it would fail
                # (and wait out an activity retry) — start a fresh one instead
                self._rc._BaseClient__conn.close()  # type: ignore[attr-defined]
            try:
                return fn(self._rc)
            except rerr.TransactionError as exc:
                te = getattr(exc.error, "transaction_error", None)
                code = (getattr(te, "code", None) or "declined") if te else "declined"
                raise _Declined(code, getattr(exc.error, "message", "") or "declined") from None
            except recurly.ApiError as exc:
                raise _classify(exc, what) from None
            except (TypeError, KeyError, ValueError) as exc:
                # the client cannot read the answer (an error body that is not Recurly's shape,
                # from a proxy or an outage page): not the request's fault, try again
                self._rc._BaseClient__conn.close()  # type: ignore[attr-defined]
                raise ConnectorError(
                    VENDOR, ErrorKind.RETRYABLE, f"unreadable response: {type(exc).__name__}"
                ) from None
            except (TimeoutError, recurly.NetworkError, OSError, http.client.HTTPException) as exc:
                # the one connection may be mid-response: start afresh next time
                self._rc._BaseClient__conn.close()  # type: ignore[attr-defined]
                raise ConnectorError(
                    VENDOR, ErrorKind.RETRYABLE, f"network: {type(exc).__name__}"
                ) from None
            finally:
                self._last_call = time.monotonic()

    def _scan(self, fetch: Callable[[recurly.Client], Any], what: str, pages: int) -> Iterator[Any]:
        """Items of a list, page by page (each page one locked call), at most ``pages``."""
        with self._lock:
            try:
                it = fetch(self._rc).pages()
            except recurly.ApiError as exc:
                raise _classify(exc, what) from None
        for _ in range(pages):
            try:
                page = self._call(lambda c: next(it), what)
            except StopIteration:
                return
            yield from page

    def _accounts_scan(self) -> Iterator[Any]:
        # Recurly's account list has no state filter: deactivated accounts are skipped here
        pages = self._scan(
            lambda c: c.list_accounts(params={"limit": 200, "order": "asc"}),
            "accounts",
            pages=SCAN_PAGES_MAX + 1,
        )
        for n, account in enumerate(pages):
            if n >= SCAN_PAGES_MAX * 200:
                raise ConnectorError(
                    VENDOR,
                    ErrorKind.PERMANENT,
                    f"more than {SCAN_PAGES_MAX * 200} accounts to scan for a CRM link",
                    code="book_too_large",
                )
            if account.state == "active":
                yield account

    def _notes(self, code: str) -> list[Any]:
        return list(
            self._scan(
                lambda c: c.list_account_notes(f"code-{code}", params={"limit": 200}),
                "account notes",
                pages=5,
            )
        )

    def _note_account(self, target: NoteTarget, target_id: str) -> tuple[str, str]:
        if target == NoteTarget.CUSTOMER:
            return target_id, ""
        code = self._invoice_accounts.get(target_id)
        if code is None:
            inv = self._call(lambda c: c.get_invoice(target_id), f"invoice {target_id}")
            code = self._remember_account(target_id, inv.account.code)
        return code, f"Invoice {target_id}: "

    def _remember_account(self, invoice_id: str, code: str) -> str:
        if len(self._invoice_accounts) >= 10_000:
            self._invoice_accounts.clear()  # bounded: a miss costs one invoice read
        self._invoice_accounts[invoice_id] = code
        return code

    def _plan(self, plan_code: str) -> Any:
        if plan_code not in self._plans:
            self._plans[plan_code] = self._call(
                lambda c: c.get_plan(f"code-{plan_code}"), f"plan {plan_code}"
            )
        return self._plans[plan_code]

    def _mrr(self, sub: Any) -> int:
        if sub.state not in ("active", "canceled", "paused", "future"):
            return 0
        months = _plan_months(self._plan(sub.plan.code)) or 1
        return int(round(to_minor(sub.total, sub.currency) / months))

    def _customer(self, a: Any, mrr: int = 0, currency: str | None = None) -> BillingCustomer:
        f = _fields(a)
        metadata = {k: v for k, v in f.items() if k in (CF_CRM, CF_CRM_ACCOUNT)}
        return BillingCustomer(
            id=a.code,
            company=a.company,
            created_at=_aware(a.created_at),
            mrr=mrr,
            currency=(currency or "USD").upper(),
            metadata=metadata,
            email=a.email or None,
            language=locale_language(getattr(a, "preferred_locale", None)),
        )

    def _subscription(self, s: Any) -> Subscription:
        subtotal = float(s.subtotal or 0)
        total = float(s.total or 0)
        discount = (1 - total / subtotal) * 100 if subtotal > 0 else 0.0
        return Subscription(
            id=s.id,
            customer_id=s.account.code,
            status=_LIVE_ENDING.get(s.state, s.state),
            plan=s.plan.code,
            quantity=int(s.quantity or 1),
            mrr=self._mrr(s),
            currency=(s.currency or "USD").upper(),
            started_at=_aware(s.activated_at or s.created_at),
            current_term_end=_aware(s.current_period_ends_at),
            cancel_at=_aware(s.expires_at) if s.state == "canceled" else None,
            discount_percent=round(max(discount, 0.0), 4),
        )

    def _ref(self, sub: Any, created: bool) -> SubscriptionRef:
        return SubscriptionRef(
            id=sub.id,
            customer_id=sub.account.code,
            status=sub.state,
            mrr=self._mrr(sub),
            currency=(sub.currency or "USD").upper(),
            created=created,
        )

    def _has_billing_info(self, customer_id: str) -> bool:
        account = self._call(
            lambda c: c.get_account(f"code-{customer_id}"), f"account {customer_id}"
        )
        return getattr(account, "billing_info", None) is not None

    def _subscription_by_key(self, customer_id: str, key: str) -> Any | None:
        value = _key_value(key)
        try:
            for s in self._scan(
                lambda c: c.list_account_subscriptions(
                    f"code-{customer_id}", params={"limit": 200}
                ),
                "subscriptions",
                pages=5,
            ):
                if _fields(s).get(CF_KEY) == value:
                    return s
        except NotFound:
            return None
        return None

    def _deal_coupon(self, draft: SubscriptionDraft) -> str:
        """The deal's discount as a coupon for this subscription only (code from the key).
        Recurly's percent coupons take whole percents."""
        pct = float(draft.discount_percent)
        code = object_code(derived_key(draft.key, "coupon"), prefix="rb-deal-")[:50]
        body: dict[str, Any] = {
            "code": code,
            "name": f"Deal discount {pct:g}%"[:255],
            "duration": "forever",
            "redemption_resource": "subscription",
            "max_redemptions": 1,
            "applies_to_all_plans": True,
        }
        if pct.is_integer():
            body.update(discount_type="percent", discount_percent=int(pct))
        else:
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                f"Recurly percent coupons take whole percents, not {pct:g}",
                code="discount_percent",
            )
        self._ensure_coupon(body, derived_key(draft.key, "coupon"))
        return code

    def _ensure_coupon(self, body: dict[str, Any], idempotency_key: str) -> Any:
        code = body["code"]
        try:
            return self._call(
                lambda c: c.create_coupon(body, headers=_key(idempotency_key)), f"coupon {code}"
            )
        except ConnectorError as err:
            if err.code != "code_taken":
                raise
        existing = self._call(lambda c: c.get_coupon(f"code-{code}"), f"coupon {code}")
        discount = existing.discount
        if getattr(discount, "percent", None) != body.get("discount_percent"):
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                f"coupon {code} exists with other terms",
                code="coupon_conflict",
            )
        return existing

    def _downgrades(self, code: str, now: float) -> int:
        """Immediate plan / quantity decreases in the last 90 days, from the proration line
        items Recurly writes for them: per change (subscription, time), the credit for the
        unused old amount against the charge for the new one — full-period amounts before
        discounts, so a retention coupon is not a downgrade."""
        since = datetime.fromtimestamp(now - 90 * DAY_S, UTC)
        groups: dict[tuple[str, str], dict[str, float]] = {}
        for li in self._scan(
            lambda c: c.list_account_line_items(
                code, params={"limit": 200, "begin_time": since, "order": "asc"}
            ),
            "line items",
            pages=5,
        ):
            if (
                li.proration_rate is None
                or not li.subscription_id
                or li.origin not in ("plan", "add_on")
            ):
                continue
            key = (li.subscription_id, str(li.created_at))
            groups.setdefault(key, {})[li.type] = float(li.unit_amount or 0) * int(li.quantity or 1)
        return sum(1 for g in groups.values() if "credit" in g and g.get("charge", 0) < g["credit"])

    def _usage(self, subs: list[Any], now: float) -> tuple[float, float] | None:
        """Usage on the subscriptions' usage add-ons: last 30 days and the 30 before."""
        cut = now - 30 * DAY_S
        since = datetime.fromtimestamp(now - 60 * DAY_S, UTC)
        seen = False
        recent = previous = 0.0
        for s in subs:
            if s.state not in ("active", "canceled", "paused"):
                continue
            for sa in s.add_ons or []:
                if getattr(sa.add_on, "add_on_type", None) != "usage":
                    continue
                for u in self._scan(
                    lambda c, sid=s.id, aid=sa.add_on.id: c.list_usage(
                        sid, aid, params={"limit": 200, "begin_time": since}
                    ),
                    "usage",
                    pages=10,
                ):
                    seen = True
                    ts = _epoch(u.usage_timestamp)
                    if ts >= cut:
                        recent += float(u.amount or 0)
                    elif ts >= now - 60 * DAY_S:
                        previous += float(u.amount or 0)
        return (recent, previous) if seen else None

    # --- the dunning catch-up (issue 13: a lost webhook repaired within one period) -------------

    def paid_invoices(self, since: datetime, limit: int = 200) -> list[InvoicePaid]:
        """Invoices paid or voided and updated at or after ``since``, oldest first."""
        params = {
            "state": "paid,voided",
            "sort": "updated_at",
            "order": "asc",
            "begin_time": since,
            "limit": max(1, min(limit, 200)),
        }
        found: list[InvoicePaid] = []
        for inv in self._scan(
            lambda c: c.list_invoices(params=params), "invoices", pages=-(-limit // 200)
        ):
            found.append(
                InvoicePaid(
                    billing=self.name,
                    event_id=f"catch-up:{inv.id}:{inv.state}",
                    invoice_id=inv.id,
                    customer_id=inv.account.code,
                    occurred_at=_aware(inv.updated_at) or datetime.now(UTC),
                )
            )
        return found[:limit]

    def failed_payments(self, since: datetime, limit: int = 200) -> list[PaymentFailed]:
        """Declined payment transactions on invoices since ``since``, oldest first, keyed by the
        transaction UUID as the webhook keys them; RevBridge's own attempts (``force_collect``)
        are left out, as the webhook leaves them out."""
        params = {
            "type": "payment",
            "success": "false",
            "sort": "created_at",
            "order": "asc",
            "begin_time": since,
            "limit": max(1, min(limit, 200)),
        }
        found: list[PaymentFailed] = []
        for t in self._scan(
            lambda c: c.list_transactions(params=params), "transactions", pages=-(-limit // 200)
        ):
            if getattr(t, "invoice", None) is None or getattr(t, "origin", None) == "force_collect":
                continue
            currency = str(t.currency or "USD").upper()
            found.append(
                PaymentFailed(
                    billing=self.name,
                    event_id=t.uuid,
                    invoice_id=t.invoice.id,
                    customer_id=t.account.code,
                    amount_due=to_minor(t.amount, currency),
                    currency=currency,
                    decline_code=(t.status_code or None) and str(t.status_code)[:200],
                    occurred_at=_aware(t.created_at) or datetime.now(UTC),
                )
            )
        return found[:limit]

    # --- preflight (revbridge doctor) ------------------------------------------------------------

    def preflight(self) -> list[Check]:
        """The API key works on this site, and the custom fields RevBridge writes are defined
        (Recurly refuses a write naming an undefined one: the CRM link, the deal, our key)."""
        try:
            defined = {
                (d.related_type, d.name)
                for d in self._scan(
                    lambda c: c.list_custom_field_definitions(params={"limit": 200}),
                    "custom field definitions",
                    pages=10,
                )
                if not getattr(d, "deleted_at", None)
            }
        except ConnectorError as exc:
            refused = exc.status in (401, 403) or exc.code in (
                "unauthorized",
                "invalid_api_key",
                "invalid_permissions",
            )
            return [
                Check(
                    system=VENDOR,
                    name="credentials",
                    status=CheckStatus.FAIL,
                    detail=f"the API key was refused ({exc.code or exc.status})"
                    if refused
                    else f"the site did not answer: {exc}"[:240],
                    fix="set RECURLY_API_KEY to a private API key of the site (Integrations > "
                    "API Credentials) and RECURLY_REGION to its region"
                    if refused
                    else "check RECURLY_REGION / RECURLY_API_URL and the network, then retry",
                )
            ]
        checks = [
            Check(
                system=VENDOR,
                name="credentials",
                status=CheckStatus.OK,
                detail="API key accepted; custom field definitions readable",
            )
        ]
        for related, name in REQUIRED_CUSTOM_FIELDS:
            ok = (related, name) in defined
            checks.append(
                Check(
                    system=VENDOR,
                    name=f"custom-field:{related}.{name}",
                    status=CheckStatus.OK if ok else CheckStatus.FAIL,
                    detail="defined" if ok else f"not defined on {related}s of this site",
                    fix=""
                    if ok
                    else f"define the {related} custom field '{name}' (Configuration "
                    "> Custom Fields; API name exactly as shown)",
                )
            )
        return checks

    # --- the churn sweep's page read ----------------------------------------------------------

    #: the sweep's page of accounts: Recurly's list limit (the sweep asks for at least this many)
    sweep_page_size = 200

    def customer_snapshots(
        self, customer_ids: list[str], invoices: int = 5
    ) -> dict[str, CustomerSnapshot]:
        """The churn sweep's page read (``connectors/churn/recurly.py``): the site lists walked
        once per sweep, grouped by account code; only the failed payments."""
        kit = SimpleNamespace(
            to_minor=to_minor,
            _invoice=_invoice,
            _payment=_payment,
            DAY_S=DAY_S,
            SWEEP_WALK_TTL_S=SWEEP_WALK_TTL_S,
            SWEEP_WALK_PAGES_MAX=SWEEP_WALK_PAGES_MAX,
        )
        return dict(sweep_snapshots(self, kit, customer_ids, invoices))


class _Declined(Exception):
    """A payment the gateway declined (Recurly ``transaction`` error): an outcome."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _classify(exc: recurly.ApiError, what: str) -> ConnectorError:
    error = getattr(exc, "error", None)
    etype = getattr(error, "type", None)
    response = (
        error.get_response() if error is not None and hasattr(error, "get_response") else None
    )
    status = getattr(response, "status", None)
    if isinstance(exc, rerr.NotFoundError) or etype == "not_found":
        return NotFound(VENDOR, what)
    if isinstance(exc, rerr.TooManyRequestsError) or etype == "rate_limited":
        wait = _retry_after(response)
        return ConnectorError(
            VENDOR,
            ErrorKind.RATE_LIMITED,
            "rate limited",
            status=429,
            code="rate_limited",
            retry_after=wait,
        )
    if isinstance(exc, rerr.ServerError | rerr.SimultaneousRequestError) or etype in (
        "simultaneous_request",
        "internal_server_error",
        "service_not_available",
        "tax_service_error",
    ):
        return ConnectorError(
            VENDOR,
            ErrorKind.RETRYABLE,
            f"{etype or 'server error'}: {what}",
            status=status,
            code=etype,
        )
    if etype is None and status is None:
        # "Unknown Error" without a body (5xx from a proxy, or a body we cannot read)
        return ConnectorError(VENDOR, ErrorKind.RETRYABLE, f"unknown error: {what}")
    code = etype
    params = getattr(error, "params", None) or []
    if etype == "validation" and any(
        (p.get("param") if isinstance(p, dict) else getattr(p, "param", None)) == "code"
        and "taken" in str(p.get("message") if isinstance(p, dict) else getattr(p, "message", ""))
        for p in params
    ):
        code = "code_taken"
    message = (getattr(error, "message", None) or str(exc)).split(". Recurly Request Id")[0]
    return ConnectorError(
        VENDOR, ErrorKind.PERMANENT, f"{etype}: {message}"[:300], status=status or 422, code=code
    )


def _retry_after(response: Any) -> float:
    """Seconds until the limit lifts: a ``Retry-After`` when a proxy in front sends one, else
    Recurly's ``X-RateLimit-Reset`` (epoch seconds), else a minute."""
    headers = getattr(response, "_Response__headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    try:
        if value is not None:
            return max(0.0, float(value))
    except ValueError:
        pass
    reset = getattr(response, "rate_limit_reset", None)
    if reset is not None:
        return max(1.0, _epoch(reset) - time.time())
    return 60.0


def _invoice(inv: Any) -> Invoice:
    sub_ids = list(inv.subscription_ids or [])
    return Invoice(
        id=inv.id,
        customer_id=inv.account.code,
        subscription_id=sub_ids[0] if sub_ids else None,
        status=_STATUS.get(inv.state, InvoiceStatus.OTHER),
        total=to_minor(inv.total, inv.currency),
        amount_due=to_minor(inv.balance, inv.currency),
        currency=inv.currency,
        issued_at=_aware(inv.created_at),
    )


def _payment(t: Any) -> Payment:
    return Payment(
        id=t.id,
        invoice_id=t.invoice.id if getattr(t, "invoice", None) else None,
        succeeded=t.status == "success",
        amount=to_minor(t.amount, t.currency),
        currency=t.currency,
        decline_code=None if t.status == "success" else t.status_code,
        decline_message=None if t.status == "success" else t.status_message,
        at=_aware(t.created_at),
    )


def _plan_months(plan: Any) -> int:
    """The plan's billing interval in months (0 for day-based plans)."""
    if plan.interval_unit == "months":
        return max(1, int(plan.interval_length or 1))
    return 0


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return _aware(value).timestamp()  # type: ignore[union-attr]
    return 0.0


def _future(start: date | None) -> str | None:
    if start is None:
        return None
    ts = datetime(start.year, start.month, start.day, tzinfo=UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ") if ts.timestamp() > time.time() else None


def _link_fields(crm: str, account_id: str | None) -> list[dict[str, str]]:
    """The CRM link as account custom fields; an empty value clears a field on Recurly."""
    return [
        {"name": CF_CRM, "value": crm if account_id is not None else ""},
        {"name": CF_CRM_ACCOUNT, "value": account_id or ""},
    ]


def _key_value(key: str) -> str:
    return key if len(key) <= 255 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def derived_key(idempotency_key: str, step: str) -> str:
    return f"{idempotency_key}-{step}"


def _key(idempotency_key: str) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key}
