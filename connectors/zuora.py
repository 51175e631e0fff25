"""Zuora (REST v1, Orders, Object Query) on ``httpx``, behind ``BillingPlatform``.

Why httpx and not ``zuora-sdk``: the official SDK pins ``urllib3<2.1`` and a 2023 ``certifi``
for the whole environment; its generated models are the field-name reference the sandbox is
tested against instead (billing-apis.md §3, ``../shared/specs/zuora``).

- **One client per connector**: a keep-alive ``httpx.Client``; the OAuth token
  (client credentials, 1 hour) is cached until a minute before it expires and fetched again
  once on a 401 (expired or revoked mid-run). Temporal owns retries: no retry loop here.
- **Errors**: Zuora answers business errors with HTTP 200 ``success:false`` and 8-digit reason
  codes; the last two digits are the category, and the category decides: 40 not found,
  50/60/61 retryable, 70 rate limited, the rest permanent (``CATEGORY``). CRUD endpoints
  answer ``Success:false`` + ``Errors``; 429 (rate or concurrency) → rate limited with
  ``Retry-After`` (or ``ratelimit-reset``).
- **Idempotency**: every POST/PATCH carries ``Idempotency-Key`` (ours, ≤255 characters; Zuora
  keeps it 24 hours). Beyond that window, creates are found again by business keys: an
  account number and a subscription number derived from the key, an order number per order.
- **IDs**: customers are account IDs; subscriptions are subscription *numbers* (Zuora gives a
  subscription a new ID at every version, its number never changes).
- **The CRM link** lives in Zuora's own ``crmId`` field plus the custom field
  ``RevBridgeCrm__c`` (which CRM); Object Query filters on both.
- **Audit notes** go to the ``notes`` fields (there is no comment object): the whole note as
  one line of the account's notes, and for an invoice a short line on its subscription's notes
  (500 characters: the oldest lines make room). Each line is marked with a hash of its
  idempotency key, so a retried note is found instead of appended twice.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from types import SimpleNamespace
from typing import Any
from xml.etree import ElementTree

import httpx

from connectors import limits
from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.churn.zuora import snapshots as sweep_snapshots
from connectors.timeouts import call_timeout
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
from domain.settings import ZuoraSettings

VENDOR = "zuora"
#: the custom field that says which CRM ``crmId`` belongs to
CRM_SYSTEM_FIELD = "RevBridgeCrm__c"
#: the subscription custom field that holds the won opportunity / deal
OPPORTUNITY_FIELD = "CrmOpportunityId__c"
#: the order custom field carrying our idempotency key (Order Processed echoes carry it back)
ORDER_KEY_FIELD = "RevBridgeKey__c"
ACCOUNT_NOTES_MAX = 65_535
SUBSCRIPTION_NOTES_MAX = 500
#: how much of a note an invoice's subscription keeps (its notes hold 500 characters)
SUBSCRIPTION_LINE_MAX = 110
#: the custom fields the tenant must have, by object: ``revbridge doctor`` checks them
REQUIRED_CUSTOM_FIELDS: dict[str, tuple[str, ...]] = {
    "Account": (CRM_SYSTEM_FIELD,),
    "Subscription": (OPPORTUNITY_FIELD, CRM_SYSTEM_FIELD),
    "Order": (ORDER_KEY_FIELD,),
}
TOKEN_MARGIN_S = 60.0
DAY_S = 86_400
DOWNGRADE_WINDOW_S = 90 * DAY_S
USAGE_PAGES_MAX = 10
#: customers per Object Query ``IN`` list (a page of the sweep), and pages read per bulk query
BULK_IN_MAX = 99
BULK_PAGES_MAX = 50
#: how long the churn sweep reuses one walk of the orders (a sweep), and its page bound
SWEEP_WALK_TTL_S = 900
ORDER_PAGES_MAX = 2_500
#: reason-code category (last two digits) → how to treat it
CATEGORY = {
    10: ErrorKind.PERMANENT,  # permission
    11: ErrorKind.PERMANENT,  # authentication failed
    20: ErrorKind.PERMANENT,  # invalid value
    21: ErrorKind.PERMANENT,  # unknown field
    22: ErrorKind.PERMANENT,  # missing required field
    23: ErrorKind.PERMANENT,  # missing parameter
    30: ErrorKind.PERMANENT,  # business rule
    45: ErrorKind.PERMANENT,  # unsupported method
    50: ErrorKind.RETRYABLE,  # lock contention: resubmit
    60: ErrorKind.RETRYABLE,  # internal
    61: ErrorKind.RETRYABLE,  # temporary: resubmit
    70: ErrorKind.RATE_LIMITED,  # request exceeded limit: resubmit after Retry-After
    90: ErrorKind.PERMANENT,  # malformed JSON
    99: ErrorKind.PERMANENT,  # integration (gateway or tax): an outcome, not a glitch
}
#: Zuora subscription statuses in the vocabulary the domain uses (lowercase, Chargebee's words)
_SUB_STATUS = {
    "Active": "active",
    "Cancelled": "cancelled",
    "Suspended": "paused",
    "Pending Activation": "future",
    "Pending Acceptance": "future",
    "Expired": "cancelled",
    "Draft": "future",
}
_ZERO_DECIMAL = {"JPY", "KRW", "CLP", "VND", "ISK", "HUF", "TWD", "UGX"}
_PERIOD = {"Month": ("month", 1), "Quarter": ("month", 3), "Semi_Annual": ("month", 6)}
_PERIOD |= {"Annual": ("year", 1), "Eighteen_Months": ("month", 18), "Two_Years": ("year", 2)}
_MONTHS = {"Month": 1, "Quarter": 3, "Semi_Annual": 6, "Annual": 12}


def minor(amount: Any, currency: str | None) -> int:
    """A Zuora decimal amount in the currency's minor unit."""
    try:
        value = Decimal(str(amount or 0))
    except InvalidOperation:
        return 0
    scale = 1 if (currency or "").upper() in _ZERO_DECIMAL else 100
    return int((value * scale).to_integral_value())


def major(amount: int, currency: str) -> float:
    scale = 1 if currency.upper() in _ZERO_DECIMAL else 100
    return round(amount / scale, 2)


def _ts(value: Any) -> datetime | None:
    """Zuora dates (``2026-01-01``) and timestamps (``2026-01-01T10:00:00.000+00:00``)."""
    if not value:
        return None
    text = str(value)
    try:
        if len(text) == 10:
            return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def key_hash(idempotency_key: str, n: int = 16) -> str:
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:n]


def header_key(idempotency_key: str) -> str:
    """Zuora takes keys of up to 255 characters."""
    return idempotency_key if len(idempotency_key) <= 255 else "rb-" + key_hash(idempotency_key, 60)


def derived_key(idempotency_key: str, step: str) -> str:
    return header_key(f"{idempotency_key}-{step}")


def account_number(idempotency_key: str) -> str:
    """The account number a create under this key gets (found again after the 24 h window)."""
    return "RB-" + key_hash(idempotency_key, 20).upper()


def subscription_number(idempotency_key: str) -> str:
    return "RB-S-" + key_hash(idempotency_key, 20).upper()


def order_number(idempotency_key: str) -> str:
    return "RB-O-" + key_hash(idempotency_key, 20).upper()


def note_marker(idempotency_key: str) -> str:
    return f"[rb:{key_hash(idempotency_key, 12)}]"


class ZuoraBilling:
    name = VENDOR

    def __init__(
        self,
        settings: ZuoraSettings,
        timeout_s: float = 20.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = settings
        # below the activity's start-to-close (connectors/timeouts.py)
        timeout_s = self.call_timeout_s = call_timeout(timeout_s)
        self._http = httpx.Client(
            base_url=settings.api_url.rstrip("/"),
            timeout=timeout_s,
            headers={"Accept": "application/json"},
            transport=transport,
        )
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires = 0.0
        self._plans: dict[str, dict[str, Any]] = {}

    def close(self) -> None:
        self._http.close()

    # --- transport, auth, errors ---------------------------------------------------------------

    def _fetch_token(self) -> str:
        s = self._settings
        try:
            resp = self._http.post(
                "/oauth/token",
                data={
                    "client_id": s.client_id,
                    "client_secret": s.client_secret.get_secret_value(),
                    "grant_type": "client_credentials",
                },
            )
        except httpx.TimeoutException as exc:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"token timeout: {type(exc).__name__}"
            ) from None
        except httpx.HTTPError as exc:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"token network: {type(exc).__name__}"
            ) from None
        if resp.status_code == 429:
            raise ConnectorError(
                VENDOR,
                ErrorKind.RATE_LIMITED,
                "token endpoint rate limited",
                status=429,
                code="rate_limited",
                retry_after=_retry_after(resp) or 60.0,
            )
        if resp.status_code >= 500:
            raise ConnectorError(
                VENDOR,
                ErrorKind.RETRYABLE,
                f"token endpoint HTTP {resp.status_code}",
                status=resp.status_code,
            )
        if resp.status_code != 200:
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                f"OAuth client refused (HTTP {resp.status_code})",
                status=resp.status_code,
                code="auth_failed",
            )
        body = resp.json()
        self._token = str(body["access_token"])
        self._token_expires = (
            time.monotonic() + float(body.get("expires_in") or 3600) - TOKEN_MARGIN_S
        )
        return self._token

    def _bearer(self, refresh: bool = False) -> str:
        with self._lock:
            if refresh or self._token is None or time.monotonic() >= self._token_expires:
                return self._fetch_token()
            return self._token

    def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json: Any = None,
        params: Any = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        if key and method in ("POST", "PATCH"):
            headers["Idempotency-Key"] = header_key(key)
        resp = None
        for attempt in (0, 1):
            token = self._bearer(refresh=attempt == 1)
            limits.pace(VENDOR)  # connectors/limits.py: this process's share of the rate
            try:
                resp = self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers={**headers, "Authorization": f"Bearer {token}"},
                )
            except httpx.TimeoutException as exc:
                raise ConnectorError(
                    VENDOR, ErrorKind.RETRYABLE, f"timeout: {type(exc).__name__}"
                ) from None
            except httpx.HTTPError as exc:
                raise ConnectorError(
                    VENDOR, ErrorKind.RETRYABLE, f"network: {type(exc).__name__}"
                ) from None
            if resp.status_code != 401:
                break
        assert resp is not None
        return self._classify(resp, what)

    def _classify(self, resp: httpx.Response, what: str) -> dict[str, Any]:
        status = resp.status_code
        try:
            body = resp.json()
        except ValueError:
            body = None
        if status == 401:
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                "authentication failed twice",
                status=401,
                code="auth_failed",
            )
        if status == 429:
            concurrency = "concurrency-limit-type" in resp.headers
            raise ConnectorError(
                VENDOR,
                ErrorKind.RATE_LIMITED,
                "concurrency limit reached" if concurrency else "rate limited",
                status=429,
                code="concurrency_limited" if concurrency else "rate_limited",
                retry_after=_retry_after(resp) or 1.0,
            )
        if status == 409:  # the same Idempotency-Key is still being processed
            raise ConnectorError(
                VENDOR,
                ErrorKind.RETRYABLE,
                "a request with this idempotency key is in progress",
                status=409,
                code="idempotency_in_progress",
                retry_after=1.0,
            )
        if status == 422:
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                "idempotency key reused for another request",
                status=422,
                code="idempotency_mismatch",
            )
        if status >= 500:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"server error HTTP {status}", status=status
            )
        if isinstance(body, dict) and body.get("success") is False:
            raise _reason_error(body.get("reasons"), status, what)
        if isinstance(body, dict) and body.get("Success") is False:
            errors = body.get("Errors") or [{}]
            code = str(errors[0].get("Code") or "UNKNOWN_ERROR")
            if code in ("INVALID_ID",) or status == 404:
                raise NotFound(VENDOR, what, status)
            kind = (
                ErrorKind.RETRYABLE
                if code in ("LOCK_COMPETITION", "TEMPORARY_ERROR", "UNKNOWN_ERROR")
                else ErrorKind.PERMANENT
            )
            raise ConnectorError(
                VENDOR,
                kind,
                f"{code}: {str(errors[0].get('Message') or '')[:200]}",
                status=status,
                code=code,
            )
        if status == 404:
            raise NotFound(VENDOR, what, status)
        if status >= 400:
            code = str(body.get("code")) if isinstance(body, dict) and body.get("code") else None
            message = str(body.get("message") or "")[:200] if isinstance(body, dict) else ""
            raise ConnectorError(
                VENDOR, ErrorKind.PERMANENT, f"HTTP {status}: {message}", status=status, code=code
            )
        if not isinstance(body, dict):
            raise ConnectorError(VENDOR, ErrorKind.RETRYABLE, "non-JSON answer", status=status)
        return body

    def _query(
        self,
        kind: str,
        filters: list[str],
        *,
        sort: str | None = None,
        size: int = 99,
        cursor: str | None = None,
        expand: list[str] | None = None,
    ) -> dict[str, Any]:
        params: list[tuple[str, str]] = [("filter[]", f) for f in filters]
        if sort:
            params.append(("sort[]", sort))
        params += [("expand[]", e) for e in expand or []]
        params.append(("pageSize", str(max(1, min(size, 99)))))
        if cursor:
            params.append(("cursor", cursor))
        return self._request("GET", f"/object-query/{kind}", params=params, what=kind)

    def _query_all(
        self,
        kind: str,
        filters: list[str],
        *,
        sort: str | None = None,
        max_pages: int = 10,
        expand: list[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        cursor = None
        for _ in range(max_pages):
            page = self._query(kind, filters, sort=sort, cursor=cursor, expand=expand)
            yield from page.get("data") or []
            cursor = page.get("nextPage")
            if not cursor:
                return

    # --- reads ------------------------------------------------------------------------------------

    def _account(self, account_id: str) -> dict[str, Any]:
        rows = self._query("accounts", [f"id.EQ:{account_id}"], size=1, expand=["billTo"]).get(
            "data"
        )
        if not rows:
            raise NotFound(VENDOR, f"account {account_id}")
        return rows[0]

    def _customer(self, acct: dict[str, Any], mrr: int | None = None) -> BillingCustomer:
        currency = str(acct.get("currency") or "USD").upper()
        meta = {}
        if acct.get(CRM_SYSTEM_FIELD) and acct.get("crmId"):
            meta = {"crm": str(acct[CRM_SYSTEM_FIELD]), "crm_account_id": str(acct["crmId"])}
        bill_to = acct.get("billTo") or {}
        return BillingCustomer(
            id=acct["id"],
            company=acct.get("name"),
            created_at=_ts(acct.get("createdDate")),
            mrr=minor(acct.get("mrr"), currency) if mrr is None else mrr,
            currency=currency,
            email=bill_to.get("workEmail") or None,
            metadata=meta,
        )

    def _invoice(self, inv: dict[str, Any], subscription: str | None) -> Invoice:
        currency = str(inv.get("currency") or "USD").upper()
        balance = minor(inv.get("balance"), currency)
        status = inv.get("status")
        if status == "Posted":
            state = InvoiceStatus.PAID if balance <= 0 else InvoiceStatus.OPEN
        elif status == "Canceled":
            state = InvoiceStatus.VOID
        else:
            state = InvoiceStatus.OTHER
        return Invoice(
            id=inv["id"],
            customer_id=inv["accountId"],
            subscription_id=subscription,
            status=state,
            total=minor(inv.get("amount"), currency),
            amount_due=max(balance, 0) if status == "Posted" else 0,
            currency=currency,
            issued_at=_ts(inv.get("invoiceDate")),
        )

    def _invoice_subscription(self, invoice_id: str) -> str | None:
        items = self._request(
            "GET",
            f"/v1/invoices/{invoice_id}/items",
            params={"pageSize": 40},
            what=f"invoice {invoice_id}",
        )
        return next(
            (
                i.get("subscriptionName")
                for i in items.get("invoiceItems") or []
                if i.get("subscriptionName")
            ),
            None,
        )

    def _subscription_raw(self, number: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/subscriptions/{number}", what=f"subscription {number}")

    @staticmethod
    def _payment(p: dict[str, Any], invoice_id: str | None) -> Payment:
        currency = str(p.get("currency") or "USD").upper()
        apps = p.get("paymentApplications") or []
        linked = next((a.get("invoiceId") for a in apps if a.get("invoiceId")), None)
        failed = p.get("status") == "Error"
        return Payment(
            id=p["id"],
            invoice_id=linked or (invoice_id if failed else None),
            succeeded=p.get("status") == "Processed",
            amount=minor(p.get("amount"), currency),
            currency=currency,
            decline_code=p.get("gatewayResponseCode") or None if failed else None,
            decline_message=(p.get("gatewayResponse") or None) if failed else None,
            at=_ts(p.get("createdDate")),
        )

    def _payments(self, account_id: str, limit: int, invoice_id: str | None) -> list[Payment]:
        page = self._query(
            "payments",
            [f"accountId.EQ:{account_id}"],
            sort="createdDate.DESC",
            size=limit,
            expand=["paymentApplications"],
        )
        return [self._payment(p, invoice_id) for p in page.get("data") or []]

    # --- BillingPlatform: dunning -------------------------------------------------------------------

    def _invoice_row(self, invoice_id: str) -> dict[str, Any]:
        """One Object Query: the invoice with its account (and bill-to contact) and its items
        with their subscriptions expanded (``ExpandedInvoice``, ``ExpandedInvoiceItem``)."""
        rows = self._query(
            "invoices",
            [f"id.EQ:{invoice_id}"],
            size=1,
            expand=["account", "account.billTo", "invoiceItems", "invoiceItems.subscription"],
        ).get("data")
        if not rows or not rows[0].get("account"):
            raise NotFound(VENDOR, f"invoice {invoice_id}")
        return rows[0]

    def get_invoice_context(self, invoice_id: str, payments: int = 5) -> InvoiceContext:
        """One Object Query (issue 15): the invoice with its account (and bill-to contact) and
        its items with their subscriptions expanded — the subscription's number and net MRR —
        where the classic API took four reads (invoice, items, account, subscription). Then
        the account's recent payments, unless the caller has the attempt (``payments=0``)."""
        inv = self._invoice_row(invoice_id)
        acct = inv["account"]
        sub = _item_subscription(inv)
        sub_number = str(sub["name"]) if sub else None
        mrr = minor(sub.get("cMRR"), inv.get("currency")) if sub else None
        invoice = self._invoice(inv, sub_number)
        return InvoiceContext(
            invoice=invoice,
            customer=self._customer(acct, mrr),
            # 0: the caller has the attempt (the event carried it): no payments query
            recent_payments=self._payments(inv["accountId"], payments, invoice.id)
            if payments > 0
            else [],
        )

    def add_note(self, target: NoteTarget, target_id: str, text: str, idempotency_key: str) -> str:
        """The full note is one line of the account's ``notes`` (65,535 characters; an invoice's
        note names the invoice); an invoice's note also leaves a short line on its
        subscription's ``notes`` (500 characters, the newest lines kept), where people look.
        Each line carries the key's marker, so a retried note is found, not written twice."""
        return self.add_notes(target, target_id, [(text, idempotency_key)])[-1]

    def add_notes(
        self, target: NoteTarget, target_id: str, notes: list[tuple[str, str]]
    ) -> list[str]:
        """Several notes on one record (``(text, idempotency key)`` each, oldest first) as
        :meth:`add_note` writes one, in one read and at most one write per record (issue 15:
        an audit entry's note and the earlier ones riding with it). An invoice's read is one
        Object Query — the invoice with its account and its items' subscription, each with
        its ``notes`` — where a note alone took four reads. Returns each note's ID."""
        account_id = target_id
        sub: dict[str, Any] | None = None
        if target is NoteTarget.INVOICE:
            inv = self._invoice_row(target_id)
            acct = inv["account"]
            account_id = acct["id"]
            sub = _item_subscription(inv)
        else:
            acct = self._account(account_id)
        account_notes = acct.get("notes") or ""
        sub_notes = (sub.get("notes") or "") if sub else ""
        ids = []
        for text, idempotency_key in notes:
            marker = note_marker(idempotency_key)
            flat = " ".join(text.split())
            invoice = target is NoteTarget.INVOICE
            line = f"{marker} invoice {target_id}: {flat}" if invoice else f"{marker} {flat}"
            if marker not in account_notes:
                account_notes = _append(account_notes, line, ACCOUNT_NOTES_MAX)
            if sub is not None and marker not in sub_notes:
                short = f"{marker} {flat[:SUBSCRIPTION_LINE_MAX]}"
                sub_notes = _append(sub_notes, short, SUBSCRIPTION_NOTES_MAX)
            ids.append(f"{account_id}{marker}")
        if account_notes != (acct.get("notes") or ""):
            self._request(
                "PUT",
                f"/v1/accounts/{account_id}",
                what=f"account {account_id}",
                json={"notes": account_notes},
            )
        if sub is not None and sub_notes != (sub.get("notes") or ""):
            self._request(
                "PUT",
                f"/v1/subscriptions/{sub['name']}",
                what=f"subscription {sub['name']}",
                json={"notes": sub_notes},
            )
        return ids

    def list_notes(self, target: NoteTarget, target_id: str) -> list[str]:
        """The texts of the notes RevBridge wrote about a customer (every line of the account's
        notes) or about one invoice (the account's lines naming it), oldest first, without
        their markers."""
        if target is NoteTarget.INVOICE:
            inv = self._request("GET", f"/v1/invoices/{target_id}", what=f"invoice {target_id}")
            prefix = f"invoice {target_id}: "
            texts = _note_texts(self._account(inv["accountId"]).get("notes"))
            return [t.removeprefix(prefix) for t in texts if t.startswith(prefix)]
        return _note_texts(self._account(target_id).get("notes"))

    def retry_payment(self, invoice_id: str, idempotency_key: str) -> PaymentAttempt:
        """``invoice-collect`` of this invoice with the default payment method. A paid invoice
        is not collected again; a gateway decline (category 99) is an outcome with the
        gateway's response code, read back from the declined payment."""
        inv = self._request("GET", f"/v1/invoices/{invoice_id}", what=f"invoice {invoice_id}")
        currency = inv.get("currency")
        if inv.get("status") == "Posted" and minor(inv.get("balance"), currency) <= 0:
            return PaymentAttempt(succeeded=True, message="already paid")
        cycle = self._active_retry_cycle(invoice_id)
        if cycle is not None:
            # Zuora Collect will charge it on its own schedule: a second charge now would be a
            # double collection attempt on the customer's card
            return PaymentAttempt(
                succeeded=False,
                message=f"left to Zuora Collect's retry cycle (attempt "
                f"{cycle.get('current_attempt_number')}, next at {cycle.get('next_attempt')})",
            )
        try:
            self._request(
                "POST",
                "/v1/operations/invoice-collect",
                what=f"invoice {invoice_id}",
                json={"accountKey": inv["accountId"], "invoiceId": invoice_id},
                key=idempotency_key,
            )
        except ConnectorError as err:
            if err.code is None or not err.code.isdigit() or int(err.code) % 100 != 99:
                raise
            declined = next(
                (p for p in self._payments(inv["accountId"], 5, invoice_id) if not p.succeeded),
                None,
            )
            return PaymentAttempt(
                succeeded=False,
                decline_code=declined.decline_code if declined else None,
                message=(declined.decline_message if declined else None) or str(err)[:200],
            )
        return PaymentAttempt(succeeded=True)

    def _active_retry_cycle(self, invoice_id: str) -> dict[str, Any] | None:
        """The invoice's active Configurable Payment Retry cycle, when Collect is configured."""
        s = self._settings
        if not (s.collect_api_url and s.collect_username and s.collect_token):
            return None
        url = f"{s.collect_api_url.rstrip('/')}/api/v1/payments/active_invoice_cycle_information/{invoice_id}"
        try:
            resp = self._http.get(
                url, auth=(s.collect_username, s.collect_token.get_secret_value())
            )
        except httpx.TimeoutException as exc:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"collect timeout: {type(exc).__name__}"
            ) from None
        except httpx.HTTPError as exc:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"collect network: {type(exc).__name__}"
            ) from None
        if resp.status_code == 404:
            return None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise ConnectorError(
                VENDOR,
                ErrorKind.RATE_LIMITED if resp.status_code == 429 else ErrorKind.RETRYABLE,
                f"collect HTTP {resp.status_code}",
                status=resp.status_code,
                retry_after=_retry_after(resp) or (60.0 if resp.status_code == 429 else None),
            )
        if resp.status_code != 200:
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                f"collect HTTP {resp.status_code}",
                status=resp.status_code,
                code="collect_refused",
            )
        try:
            cycles = resp.json().get("cycles") or []
        except (ValueError, AttributeError):
            raise ConnectorError(VENDOR, ErrorKind.RETRYABLE, "collect: non-JSON answer") from None
        return next(
            (c for c in cycles if c.get("status") == "Cycle Incomplete" and c.get("next_attempt")),
            None,
        )

    def apply_credit(
        self, customer_id: str, amount: int, currency: str, reason: str, idempotency_key: str
    ) -> str:
        """A posted credit memo from the courtesy-credit charge, applied to the customer's
        newest open invoice (what is left stays on the account as unapplied credit)."""
        acct = self._account(customer_id)
        if str(acct.get("currency") or "").upper() != currency.upper():
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                f"account currency is not {currency}",
                code="currency_mismatch",
            )
        charge = self._plan(self._settings.credit_plan)["productRatePlanCharges"][0]["id"]
        memo = self._request(
            "POST",
            "/v1/credit-memos",
            what=f"account {customer_id}",
            key=derived_key(idempotency_key, "memo"),
            json={
                "accountId": customer_id,
                "charges": [{"productRatePlanChargeId": charge, "amount": major(amount, currency)}],
                "autoPost": True,
                "reasonCode": "Standard Adjustment",
                "comment": reason[:255],
            },
        )
        unapplied = minor(memo.get("unappliedAmount"), currency)
        if unapplied > 0:
            open_inv = (
                self._query(
                    "invoices",
                    [f"accountId.EQ:{customer_id}", "status.EQ:Posted", "balance.GT:0"],
                    sort="invoiceDate.DESC",
                    size=1,
                ).get("data")
                or []
            )
            if open_inv:
                current = self._request(
                    "GET", f"/v1/credit-memos/{memo['id']}", what=f"credit memo {memo['id']}"
                )
                left = minor(current.get("unappliedAmount"), currency)
                apply = min(left, minor(open_inv[0].get("balance"), currency))
                if apply > 0:
                    self._request(
                        "PUT",
                        f"/v1/credit-memos/{memo['id']}/apply",
                        what=f"credit memo {memo['id']}",
                        json={
                            "invoices": [
                                {"invoiceId": open_inv[0]["id"], "amount": major(apply, currency)}
                            ]
                        },
                    )
        return str(memo["id"])

    # --- quote-to-cash ------------------------------------------------------------------------------

    def find_customer_by_crm(self, crm: str, account_id: str) -> BillingCustomer | None:
        rows = (
            self._query(
                "accounts",
                [f"crmId.EQ:{account_id}", f"{CRM_SYSTEM_FIELD}.EQ:{crm}"],
                sort="createdDate.ASC",
                size=10,
                expand=["billTo"],
            ).get("data")
            or []
        )
        rows = [a for a in rows if a.get("crmId") == account_id and a.get(CRM_SYSTEM_FIELD) == crm]
        return self._customer(rows[0]) if rows else None

    def find_customers(self, email: str | None, company: str | None) -> list[BillingCustomer]:
        """Exact bill-to email first, then exact name, then name prefix (Object Query has no
        "contains"); at most 10."""
        ranked: dict[str, tuple[int, str, dict[str, Any]]] = {}
        if email:
            contacts = self._query("contacts", [f"workEmail.EQ:{email}"], size=20).get("data") or []
            ids = sorted({c["accountId"] for c in contacts})
            if ids:
                for a in (
                    self._query(
                        "accounts", [f"id.IN:[{','.join(ids)}]"], size=20, expand=["billTo"]
                    ).get("data")
                    or []
                ):
                    ranked[a["id"]] = (0, str(a.get("createdDate") or ""), a)
        if company:
            for a in (
                self._query(
                    "accounts",
                    [f"name.SW:{company}"],
                    sort="createdDate.ASC",
                    size=10,
                    expand=["billTo"],
                ).get("data")
                or []
            ):
                rank = 1 if str(a.get("name") or "").casefold() == company.casefold() else 2
                if a["id"] not in ranked or ranked[a["id"]][0] > rank:
                    ranked[a["id"]] = (rank, str(a.get("createdDate") or ""), a)
        best = sorted(ranked.values(), key=lambda r: (r[0], r[1]))[:10]
        return [self._customer(a) for _, _, a in best]

    def create_customer(self, draft: CustomerDraft) -> BillingCustomer:
        number = account_number(draft.key)
        existing = self._query(
            "accounts", [f"accountNumber.EQ:{number}"], size=1, expand=["billTo"]
        ).get("data")
        if existing:
            return self._customer(existing[0])
        body: dict[str, Any] = {
            "name": draft.company,
            "currency": draft.currency.upper(),
            "accountNumber": number,
            "crmId": draft.crm_account_id,
            CRM_SYSTEM_FIELD: draft.crm,
            "billToContact": {
                "firstName": draft.first_name or "Billing",
                "lastName": draft.last_name or "Contact",
                **({"workEmail": draft.email} if draft.email else {}),
            },
        }
        if draft.net_term_days is not None:
            # Net terms: the customer pays invoices; nothing is charged automatically
            body["paymentTerm"] = f"Net {draft.net_term_days}"
            body["autoPay"] = False
        try:
            made = self._request("POST", "/v1/accounts", what="account", json=body, key=draft.key)
        except ConnectorError as err:
            if not (err.code or "").endswith("30"):
                raise
            made = {"accountId": None}
        found = self._query(
            "accounts", [f"accountNumber.EQ:{number}"], size=1, expand=["billTo"]
        ).get("data")
        if not found:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"account {made.get('accountId')} not visible yet"
            )
        return self._customer(found[0])

    def set_crm_link(
        self, customer_id: str, crm: str, account_id: str | None, idempotency_key: str
    ) -> None:
        acct = self._account(customer_id)
        if account_id is None and acct.get(CRM_SYSTEM_FIELD) not in (None, "", crm):
            return  # another CRM's link: not ours to clear
        self._request(
            "PUT",
            f"/v1/accounts/{customer_id}",
            what=f"account {customer_id}",
            json={"crmId": account_id or "", CRM_SYSTEM_FIELD: crm if account_id else ""},
        )

    def delete_customer(self, customer_id: str, idempotency_key: str) -> None:
        try:
            self._request("DELETE", f"/v1/accounts/{customer_id}", what=f"account {customer_id}")
        except NotFound:
            return

    def _plan(self, plan: str) -> dict[str, Any]:
        if plan not in self._plans:
            self._plans[plan] = self._request(
                "GET", f"/v1/product-rate-plans/{plan}", what=f"product rate plan {plan}"
            )
        return self._plans[plan]

    def get_price(self, price_id: str) -> Price:
        prp = self._plan(price_id)
        charge = next(
            (c for c in prp.get("productRatePlanCharges") or [] if c.get("type") == "Recurring"),
            None,
        )
        if charge is None:
            raise ConnectorError(
                VENDOR,
                ErrorKind.PERMANENT,
                f"product rate plan {price_id} has no recurring charge",
                code="not_recurring",
            )
        pricing = (charge.get("pricing") or [{}])[0]
        currency = str(pricing.get("currency") or "USD").upper()
        period, count = _PERIOD.get(charge.get("billingPeriod") or "Month", ("month", 1))
        return Price(
            id=price_id,
            product=str(prp.get("productSku") or prp.get("productName") or ""),
            unit_amount=minor(pricing.get("price"), currency),
            currency=currency,
            period=period,
            period_count=count,
        )

    def create_subscription(self, draft: SubscriptionDraft) -> SubscriptionRef:
        """An order with one ``CreateSubscription`` action: the deal's rate plans (quantity
        and a price override per line), a TERMED term of ``term_months`` that renews, the
        deal's discount as the discount rate plan, the opportunity in a subscription custom
        field. Found again by its subscription number (derived from the key)."""
        number = subscription_number(draft.key)
        try:
            sub = self._subscription_raw(number)
            return self._ref(sub, draft.currency, created=False)
        except NotFound:
            pass
        acct = self._account(draft.customer_id)
        plans = []
        for line in draft.lines:
            prp = self._plan(line.price_id)
            charge = prp["productRatePlanCharges"][0]
            currency = str((charge.get("pricing") or [{}])[0].get("currency") or "USD").upper()
            if currency != draft.currency.upper():
                raise ConnectorError(
                    VENDOR,
                    ErrorKind.PERMANENT,
                    f"product rate plan {line.price_id} is not in {draft.currency}",
                    code="currency_mismatch",
                )
            per_unit: dict[str, Any] = {"quantity": line.quantity}
            if line.unit_amount is not None:
                per_unit["listPrice"] = major(line.unit_amount, currency)
            plans.append(
                {
                    "productRatePlanId": prp["id"],
                    "chargeOverrides": [
                        {
                            "productRatePlanChargeId": charge["id"],
                            "pricing": {"recurringPerUnit": per_unit},
                        }
                    ],
                }
            )
        if draft.discount_percent:
            disc = self._plan(self._settings.discount_plan)
            plans.append(
                {
                    "productRatePlanId": disc["id"],
                    "chargeOverrides": [
                        {
                            "productRatePlanChargeId": disc["productRatePlanCharges"][0]["id"],
                            "pricing": {
                                "discount": {
                                    "discountPercentage": round(float(draft.discount_percent), 4)
                                }
                            },
                        }
                    ],
                }
            )
        start = (
            draft.start_date
            if draft.start_date and draft.start_date > date.today()
            else date.today()
        ).isoformat()
        create: dict[str, Any] = {
            "subscriptionNumber": number,
            "terms": {
                "initialTerm": {
                    "period": draft.term_months,
                    "periodType": "Month",
                    "termType": "TERMED",
                },
                "renewalTerms": [{"period": draft.term_months, "periodType": "Month"}],
                "autoRenew": True,
            },
            "subscribeToRatePlans": plans,
        }
        if draft.net_term_days is not None:
            create["paymentTerm"] = f"Net {draft.net_term_days}"
        body = {
            "orderNumber": order_number(draft.key),
            "orderDate": date.today().isoformat(),
            "existingAccountNumber": acct["accountNumber"],
            "customFields": {ORDER_KEY_FIELD: header_key(draft.key)[:255]},
            "subscriptions": [
                {
                    "customFields": {
                        OPPORTUNITY_FIELD: draft.crm_opportunity_id,
                        CRM_SYSTEM_FIELD: draft.crm,
                    },
                    "orderActions": [
                        {
                            "type": "CreateSubscription",
                            "triggerDates": [
                                {"name": n, "triggerDate": start}
                                for n in (
                                    "ContractEffective",
                                    "ServiceActivation",
                                    "CustomerAcceptance",
                                )
                            ],
                            "createSubscription": create,
                        }
                    ],
                }
            ],
            "processingOptions": {"runBilling": False, "collectPayment": False},
        }
        created = self._place_order(body, what=f"account {draft.customer_id}", key=draft.key)
        return self._ref(self._subscription_raw(number), draft.currency, created=created)

    def _place_order(self, body: dict[str, Any], *, what: str, key: str) -> bool:
        """``POST /v1/orders``; False when the order number already exists (an error code
        ending in 30): an earlier attempt with the same number placed it."""
        try:
            self._request("POST", "/v1/orders", what=what, json=body, key=key)
        except ConnectorError as err:
            if not (err.code or "").endswith("30"):
                raise
            return False
        return True

    def _ref(self, sub: dict[str, Any], currency: str, created: bool) -> SubscriptionRef:
        cur = str(sub.get("currency") or currency).upper()
        return SubscriptionRef(
            id=sub["subscriptionNumber"],
            customer_id=sub["accountId"],
            status=_status(sub),
            mrr=minor(sub.get("contractedNetMrr", sub.get("contractedMrr")), cur),
            currency=cur,
            created=created,
        )

    def cancel_subscription(self, subscription_id: str, idempotency_key: str, reason: str) -> str:
        """An order with a ``CancelSubscription`` action effective today (no term-end wait).
        Already cancelled is success; ``reason`` goes to the audit note, not Zuora's
        configured cancel reasons."""
        sub = self._subscription_raw(subscription_id)
        if sub.get("status") == "Cancelled":
            return "cancelled"
        body = {
            "orderNumber": order_number(idempotency_key),
            "orderDate": date.today().isoformat(),
            "existingAccountNumber": sub.get("accountNumber") or sub["accountId"],
            "customFields": {ORDER_KEY_FIELD: header_key(idempotency_key)[:255]},
            "subscriptions": [
                {
                    "subscriptionNumber": sub["subscriptionNumber"],
                    "orderActions": [
                        {
                            "type": "CancelSubscription",
                            "triggerDates": [
                                {
                                    "name": "ContractEffective",
                                    "triggerDate": date.today().isoformat(),
                                }
                            ],
                            "cancelSubscription": {
                                "cancellationPolicy": "SpecificDate",
                                "cancellationEffectiveDate": date.today().isoformat(),
                            },
                        }
                    ],
                }
            ],
            "processingOptions": {"runBilling": False},
        }
        self._place_order(body, what=f"subscription {subscription_id}", key=idempotency_key)
        return _status(self._subscription_raw(subscription_id))

    # --- churn and support context --------------------------------------------------------------

    def list_customers(self, cursor: str | None = None, limit: int = 100) -> CustomerPage:
        if not cursor:  # a new pass over the book: the sweep's order walk is read again
            self._sweep_downgrades = None
        page = self._query(
            "accounts",
            ["status.EQ:Active"],
            sort="createdDate.ASC",
            size=min(limit, 99),
            cursor=cursor,
            expand=["billTo"],
        )
        rows = page.get("data") or []
        # the page's accounts, for the sweep's read of the same page (connectors/churn/zuora.py)
        self._listed_accounts = {str(a["id"]): a for a in rows}
        return CustomerPage(
            customers=[self._customer(a) for a in rows],
            next_cursor=page.get("nextPage") or None,
        )

    def customer_snapshot(self, customer_id: str, invoices: int = 5) -> CustomerSnapshot:
        acct = self._account(customer_id)
        currency = str(acct.get("currency") or "USD").upper()
        listed = self._request(
            "GET",
            f"/v1/subscriptions/accounts/{customer_id}",
            params={"pageSize": 40},
            what=f"account {customer_id}",
        )
        raw_subs = list(listed.get("subscriptions") or [])
        subs = [self._subscription(s, currency) for s in raw_subs]
        invs = (
            self._query(
                "invoices",
                [f"accountId.EQ:{customer_id}", "status.NE:Draft"],
                sort="invoiceDate.DESC",
                size=max(1, min(invoices, 99)),
            ).get("data")
            or []
        )
        sub_of = {}
        for inv in invs:
            if inv.get("status") == "Posted" and minor(inv.get("balance"), currency) > 0:
                sub_of[inv["id"]] = self._invoice_subscription(inv["id"])
        now = time.time()
        usage = self._usage(customer_id, now)
        credit = minor(acct.get("creditBalance"), currency) + minor(
            self._unapplied_memos(customer_id), currency
        )
        return CustomerSnapshot(
            customer=self._customer(acct, mrr=sum(s.mrr for s in subs)),
            subscriptions=subs,
            invoices=[self._invoice(i, sub_of.get(i["id"])) for i in invs],
            payments=self._payments(customer_id, 10, None),
            credit_balance=credit,
            downgrades_90d=sum(self._downgrades(s["subscriptionNumber"], now) for s in raw_subs),
            usage_30d=usage[0] if usage else None,
            usage_prev_30d=usage[1] if usage else None,
        )

    def _unapplied_memos(self, customer_id: str) -> Any:
        """Posted credit memos not applied yet: the account's credit (AccountMetrics)."""
        detail = self._request("GET", f"/v1/accounts/{customer_id}", what=f"account {customer_id}")
        return (detail.get("metrics") or {}).get("unappliedCreditMemoAmount") or 0

    def _subscription(self, sub: dict[str, Any], currency: str) -> Subscription:
        cur = str(sub.get("currency") or currency).upper()
        plans = sub.get("ratePlans") or []
        main = None
        discount_keep = 1.0
        now = datetime.now(UTC)
        for rp in plans:
            for ch in rp.get("ratePlanCharges") or []:
                end = _ts(ch.get("effectiveEndDate"))
                if end is not None and end <= now:
                    continue
                if ch.get("model") == "DiscountPercentage":
                    discount_keep *= 1 - float(ch.get("discountPercentage") or 0) / 100
                elif main is None and ch.get("type") == "Recurring":
                    main = (rp, ch)
        return Subscription(
            id=sub["subscriptionNumber"],
            customer_id=sub.get("accountId") or "",
            status=_status(sub),
            plan=str(main[0].get("productRatePlanNumber") or main[0].get("productRatePlanId"))
            if main
            else "",
            quantity=int(float(main[1].get("quantity") or 1)) if main else 1,
            mrr=minor(sub.get("contractedNetMrr", sub.get("contractedMrr")), cur),
            currency=cur,
            started_at=_ts(sub.get("subscriptionStartDate") or sub.get("contractEffectiveDate")),
            current_term_end=_ts(sub.get("termEndDate")),
            cancel_at=_ts(sub.get("subscriptionEndDate") or sub.get("scheduledCancelDate")),
            discount_percent=round((1 - discount_keep) * 100, 4),
        )

    def _downgrades(self, number: str, now: float) -> int:
        """Order actions of the last 90 days that lowered the subscription's list-price MRR
        (RemoveProduct, UpdateProduct, ChangePlan with a negative MRR metric). Discount charges
        are not downgrades: a retention offer is not the customer leaving."""
        since = now - DOWNGRADE_WINDOW_S
        orders = self._request(
            "GET",
            f"/v1/orders/subscription/{number}",
            params={"pageSize": 40},
            what=f"subscription {number}",
        )
        return sum(
            _lowered_mrr(sub, since)
            for order in orders.get("orders") or []
            for sub in order.get("subscriptions") or []
            if sub.get("subscriptionNumber") == number
        )

    def _usage(self, customer_id: str, now: float) -> tuple[float, float] | None:
        cut = now - 30 * DAY_S
        start = datetime.fromtimestamp(now - 60 * DAY_S, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        recent = previous = 0.0
        seen = False
        try:
            for u in self._query_all(
                "usages",
                [f"accountId.EQ:{customer_id}", f"startDateTime.GE:{start}"],
                max_pages=USAGE_PAGES_MAX,
            ):
                seen = True
                at = _ts(u.get("startDateTime"))
                q = float(u.get("quantity") or 0)
                if at is not None and at.timestamp() >= cut:
                    recent += q
                else:
                    previous += q
        except ConnectorError as err:
            if err.kind is not ErrorKind.PERMANENT:
                raise
            return None  # usage not enabled on this tenant
        return (recent, previous) if seen else None

    def apply_discount(
        self, subscription_id: str, percent: float, months: int, idempotency_key: str
    ) -> str:
        """An order ``AddProduct`` of the discount rate plan at ``percent`` for ``months``
        billing periods (``Fixed_Period``). Returns the order number (one per key)."""
        number = order_number(idempotency_key)
        try:
            self._request("GET", f"/v1/orders/{number}", what=f"order {number}")
            return number  # made by an earlier attempt
        except NotFound:
            pass
        sub = self._subscription_raw(subscription_id)
        disc = self._plan(self._settings.discount_plan)
        body = {
            "orderNumber": number,
            "orderDate": date.today().isoformat(),
            "existingAccountNumber": sub.get("accountNumber") or sub["accountId"],
            "customFields": {ORDER_KEY_FIELD: header_key(idempotency_key)[:255]},
            "subscriptions": [
                {
                    "subscriptionNumber": sub["subscriptionNumber"],
                    "orderActions": [
                        {
                            "type": "AddProduct",
                            "triggerDates": [
                                {
                                    "name": "ContractEffective",
                                    "triggerDate": date.today().isoformat(),
                                }
                            ],
                            "addProduct": {
                                "productRatePlanId": disc["id"],
                                "chargeOverrides": [
                                    {
                                        "productRatePlanChargeId": disc["productRatePlanCharges"][
                                            0
                                        ]["id"],
                                        "pricing": {
                                            "discount": {
                                                "discountPercentage": round(float(percent), 4)
                                            }
                                        },
                                        "endDate": {
                                            "endDateCondition": "Fixed_Period",
                                            "upToPeriods": months,
                                            "upToPeriodsType": "Billing_Periods",
                                        },
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
            "processingOptions": {"runBilling": False},
        }
        self._place_order(body, what=f"subscription {subscription_id}", key=idempotency_key)
        return number

    # --- for the harness ---------------------------------------------------------------------------

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        """A raw authenticated call (the demo's driver and the tests act as a Zuora admin)."""
        return self._request(method, path, what=path, **kw)

    # --- the dunning catch-up (issue 13: a lost callout repaired within one period) ------------

    def paid_invoices(self, since: datetime, limit: int = 200) -> list[InvoicePaid]:
        """Invoices updated at or after ``since`` (Object Query, oldest first) that are paid
        (posted, nothing left due: paid or credited) or cancelled."""
        found: list[InvoicePaid] = []
        for inv in self._query_all(
            "invoices",
            [f"updatedDate.GE:{_stamp(since)}"],
            sort="updatedDate.ASC",
            max_pages=-(-limit // 99),
        ):
            status = inv.get("status")
            balance = minor(inv.get("balance"), inv.get("currency"))
            if not (status == "Canceled" or (status == "Posted" and balance <= 0)):
                continue
            found.append(
                InvoicePaid(
                    billing=self.name,
                    event_id=f"catch-up:{inv['id']}:{'paid' if status == 'Posted' else 'void'}",
                    invoice_id=inv["id"],
                    customer_id=inv["accountId"],
                    occurred_at=_ts(inv.get("updatedDate")) or datetime.now(UTC),
                )
            )
        return found[:limit]

    def failed_payments(self, since: datetime, limit: int = 200) -> list[PaymentFailed]:
        """Declined payments (``status`` Error) created at or after ``since`` on an invoice,
        oldest first, keyed as the PaymentDeclined callout is (``PaymentDeclined:<payment>``)."""
        found: list[PaymentFailed] = []
        for p in self._query_all(
            "payments",
            [f"createdDate.GE:{_stamp(since)}", "status.EQ:Error"],
            sort="createdDate.ASC",
            max_pages=-(-limit // 99),
            expand=["paymentApplications"],
        ):
            apps = p.get("paymentApplications") or []
            invoice = next((a.get("invoiceId") for a in apps if a.get("invoiceId")), None)
            invoice = invoice or p.get("invoiceId") or self._open_invoice(p["accountId"])
            if invoice is None:
                continue  # nothing left due on the account: nothing to dun
            currency = str(p.get("currency") or "USD").upper()
            found.append(
                PaymentFailed(
                    billing=self.name,
                    event_id=f"PaymentDeclined:{p['id']}",
                    invoice_id=invoice,
                    customer_id=p["accountId"],
                    amount_due=minor(p.get("amount"), currency),
                    currency=currency,
                    decline_code=p.get("gatewayResponseCode") or None,
                    occurred_at=_ts(p.get("createdDate")) or datetime.now(UTC),
                )
            )
        return found[:limit]

    def _open_invoice(self, account_id: str) -> str | None:
        """A declined payment applies to nothing: the invoice it tried to collect is the
        account's newest posted invoice with a balance (what the callout names)."""
        rows = self._query(
            "invoices",
            [f"accountId.EQ:{account_id}", "status.EQ:Posted", "balance.GT:0"],
            sort="invoiceDate.DESC",
            size=1,
        ).get("data")
        return rows[0]["id"] if rows else None

    # --- preflight (revbridge doctor) ------------------------------------------------------------

    def preflight(self) -> list[Check]:
        """The OAuth client works and may read, the custom fields RevBridge writes exist (Zuora's
        Describe API), and the discount and courtesy-credit rate plans are in the catalog."""
        s = self._settings
        try:
            self._bearer(refresh=True)
            self._query("accounts", [], size=1)
        except ConnectorError as exc:
            refused = exc.code == "auth_failed" or exc.status in (401, 403)
            return [
                Check(
                    system=VENDOR,
                    name="credentials",
                    status=CheckStatus.FAIL,
                    detail=f"the OAuth client was refused ({exc.status or exc.code})"
                    if refused
                    else f"the tenant did not answer: {exc}"[:240],
                    fix="set ZUORA_CLIENT_ID / ZUORA_CLIENT_SECRET to an OAuth client of this "
                    "tenant (Settings > Administration > Manage Users) and ZUORA_API_URL to its "
                    "REST host"
                    if refused
                    else "check ZUORA_API_URL (the tenant's REST host) and the network",
                )
            ]
        checks = [
            Check(
                system=VENDOR,
                name="credentials",
                status=CheckStatus.OK,
                detail=f"OAuth client accepted at {s.api_url}; Object Query readable",
            )
        ]
        for obj, fields in REQUIRED_CUSTOM_FIELDS.items():
            checks += self._custom_field_checks(obj, fields)
        if s.collect_api_url or s.collect_username or s.collect_token:
            checks.append(self._collect_check())
        for setting, plan in (
            ("ZUORA_DISCOUNT_PLAN", s.discount_plan),
            ("ZUORA_CREDIT_PLAN", s.credit_plan),
        ):
            try:
                prp = self._plan(plan)
                checks.append(
                    Check(
                        system=VENDOR,
                        name=f"rate-plan:{setting}",
                        status=CheckStatus.OK,
                        detail=f"{plan} ({str(prp.get('name') or '')[:60]})",
                    )
                )
            except NotFound:
                checks.append(
                    Check(
                        system=VENDOR,
                        name=f"rate-plan:{setting}",
                        status=CheckStatus.FAIL,
                        detail=f"product rate plan {plan} is not in the catalog",
                        fix=f"create it in the product catalog, or set {setting} to its ID",
                    )
                )
        return checks

    def _collect_check(self) -> Check:
        """Zuora Collect's Configurable Payment Retry API (its own host and Basic auth): the
        login works, asked about an invoice no tenant has (no cycle)."""
        s = self._settings
        name = "collect"
        if not (s.collect_api_url and s.collect_username and s.collect_token):
            return Check(
                system=VENDOR,
                name=name,
                status=CheckStatus.FAIL,
                detail="Zuora Collect is configured only in part",
                fix="set all of ZUORA_COLLECT_API_URL, ZUORA_COLLECT_USERNAME, "
                "ZUORA_COLLECT_TOKEN, or none",
            )
        try:
            self._active_retry_cycle("rb-preflight-no-such-invoice")
        except ConnectorError as exc:
            refused = exc.code == "collect_refused"
            return Check(
                system=VENDOR,
                name=name,
                status=CheckStatus.FAIL,
                detail=f"the Configurable Payment Retry API refused the login ({exc.status})"
                if refused
                else f"the Configurable Payment Retry API did not answer: {exc}"[:240],
                fix="set ZUORA_COLLECT_USERNAME to the login email and ZUORA_COLLECT_TOKEN to "
                "its CPR API token"
                if refused
                else "check ZUORA_COLLECT_API_URL (the Collections host) and the network",
            )
        return Check(
            system=VENDOR,
            name=name,
            status=CheckStatus.OK,
            detail=f"Configurable Payment Retry API at {s.collect_api_url} accepted the login",
        )

    def _custom_field_checks(self, obj: str, fields: tuple[str, ...]) -> list[Check]:
        """``GET /v1/describe/{object}`` (XML): is each field among the object's fields?"""
        try:
            limits.pace(VENDOR)
            resp = self._http.get(
                f"/v1/describe/{obj}",
                headers={"Authorization": f"Bearer {self._bearer()}", "Accept": "application/xml"},
            )
            names: dict[str, str] | None = None
            if resp.status_code == 200 and resp.text.lstrip().startswith("<"):
                root = ElementTree.fromstring(resp.text)  # noqa: S314 - our tenant's own answer
                names = {
                    (f.findtext("name") or "").strip(): (f.findtext("type") or "").strip()
                    for f in root.iter("field")
                }
        except (httpx.HTTPError, ElementTree.ParseError) as exc:
            why = f"the Describe API did not answer ({type(exc).__name__})"
            names = None
        else:
            why = f"the Describe API is not available here (HTTP {resp.status_code})"
        if names is None:
            return [
                Check(
                    system=VENDOR,
                    name=f"custom-field:{obj}.{name}",
                    status=CheckStatus.SKIP,
                    detail=why,
                )
                for name in fields
            ]
        checks = []
        for name in fields:
            kind = names.get(name)
            # RevBridge writes IDs and keys as strings: a number/date/picklist field refuses them
            wrong = kind is not None and kind.lower() not in ("", "text")  # "text", "Decimal"…
            checks.append(
                Check(
                    system=VENDOR,
                    name=f"custom-field:{obj}.{name}",
                    status=CheckStatus.OK if kind is not None and not wrong else CheckStatus.FAIL,
                    detail=(
                        f"{obj} has no custom field {name}"
                        if kind is None
                        else f"is {kind}, RevBridge writes text"
                        if wrong
                        else f"exists ({kind or 'type not stated'})"
                    ),
                    fix=(
                        f"create the custom field {name} on {obj} (Settings > Custom Fields; "
                        "text, API name exactly as shown)"
                        if kind is None
                        else f"recreate {obj}.{name} as a text custom field"
                        if wrong
                        else ""
                    ),
                )
            )
        return checks

    # --- the churn sweep's page read ----------------------------------------------------------

    def customer_snapshots(
        self, customer_ids: list[str], invoices: int = 5
    ) -> dict[str, CustomerSnapshot]:
        """The churn sweep's page read: Object Query ``IN`` reads for the whole page, none per
        customer (``connectors/churn/zuora.py``)."""
        kit = SimpleNamespace(
            minor=minor,
            _ts=_ts,
            _status=_status,
            BULK_IN_MAX=BULK_IN_MAX,
            BULK_PAGES_MAX=BULK_PAGES_MAX,
        )
        return sweep_snapshots(self, kit, customer_ids, invoices)

    def _downgrades_walk(self, now: float) -> dict[str, int]:
        """``_downgrades`` for every subscription at once: one walk of ``GET /v1/orders`` by
        order date (from a year before the window, for orders whose change took effect later,
        to a year ahead), kept for ``SWEEP_WALK_TTL_S`` or until the sweep lists its first page
        again."""
        cached = getattr(self, "_sweep_downgrades", None)
        if cached is not None and now - cached[0] < SWEEP_WALK_TTL_S:
            return cached[1]
        since = now - DOWNGRADE_WINDOW_S
        params: list[tuple[str, str]] = [
            ("dateFilterOption", "orderDate"),
            ("startDate", date.fromtimestamp(since - 365 * DAY_S).isoformat()),
            ("endDate", date.fromtimestamp(now + 365 * DAY_S).isoformat()),
            ("pageSize", "40"),
        ]
        counts: dict[str, int] = {}
        for page_no in range(1, ORDER_PAGES_MAX + 1):
            page = self._request(
                "GET", "/v1/orders", params=[*params, ("page", str(page_no))], what="orders"
            )
            for order in page.get("orders") or []:
                for sub in order.get("subscriptions") or []:
                    number = sub.get("subscriptionNumber")
                    lowered = _lowered_mrr(sub, since) if number else 0
                    if lowered:
                        counts[number] = counts.get(number, 0) + lowered
            if not page.get("nextPage"):
                break
        self._sweep_downgrades = (now, counts)
        return counts

    def _usage_in(self, among: str, now: float) -> dict[str, tuple[float, float]] | None:
        """``_usage`` for a set of accounts in one Object Query walk; None where the tenant
        has no usage."""
        cut = now - 30 * DAY_S
        start = datetime.fromtimestamp(now - 60 * DAY_S, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        out: dict[str, tuple[float, float]] = {}
        try:
            for u in self._query_all(
                "usages",
                [f"accountId.IN:{among}", f"startDateTime.GE:{start}"],
                max_pages=BULK_PAGES_MAX,
            ):
                at = _ts(u.get("startDateTime"))
                q = float(u.get("quantity") or 0)
                recent, previous = out.get(str(u.get("accountId")), (0.0, 0.0))
                if at is not None and at.timestamp() >= cut:
                    recent += q
                else:
                    previous += q
                out[str(u.get("accountId"))] = (recent, previous)
        except ConnectorError as err:
            if err.kind is not ErrorKind.PERMANENT:
                raise
            return None  # usage not enabled on this tenant
        return out


def _stamp(at: datetime) -> str:
    """A timestamp as Zuora writes them (``2026-01-01T10:00:00.000+00:00``)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")


def _note_texts(notes: Any) -> list[str]:
    """Lines of a notes field, each without its ``[rb:…]`` marker."""
    out = []
    for line in str(notes or "").splitlines():
        if line.startswith("[rb:") and "] " in line:
            line = line.split("] ", 1)[1]
        if line:
            out.append(line)
    return out


def _item_subscription(inv: dict[str, Any]) -> dict[str, Any] | None:
    """The subscription of an invoice's first item that has one (an expanded Object Query row)."""
    return next(
        (
            i["subscription"]
            for i in inv.get("invoiceItems") or []
            if (i.get("subscription") or {}).get("name")
        ),
        None,
    )


def _append(notes: str, line: str, limit: int) -> str:
    lines = [n for n in notes.splitlines() if n]
    lines.append(line[:limit])
    while len("\n".join(lines)) > limit and len(lines) > 1:
        lines.pop(0)  # the oldest notes make room
    return "\n".join(lines)


def _status(sub: dict[str, Any]) -> str:
    status = _SUB_STATUS.get(str(sub.get("status")), str(sub.get("status") or "").lower())
    if status == "active" and sub.get("scheduledCancelDate"):
        return "non_renewing"
    return status


def subscription_status(sub: dict[str, Any]) -> str:
    """A Zuora subscription's status in the domain's words (``active``, ``non_renewing``,
    ``cancelled``, ``paused``, ``future``): what the protocol's records carry."""
    return _status(sub)


def _retry_after(resp: httpx.Response) -> float | None:
    for name in ("retry-after", "ratelimit-reset"):
        try:
            return float(resp.headers[name])
        except (KeyError, ValueError):
            continue
    return None


def _reason_error(reasons: Any, status: int, what: str) -> ConnectorError:
    first = (reasons or [{}])[0] if isinstance(reasons, list) else {}
    raw = first.get("code") if isinstance(first, dict) else None
    message = str(first.get("message") or "")[:200] if isinstance(first, dict) else ""
    try:
        code = int(str(raw))
    except (TypeError, ValueError):
        return ConnectorError(
            VENDOR, ErrorKind.PERMANENT, f"unknown error: {message}", status=status
        )
    category = code % 100
    if category == 40:
        return NotFound(VENDOR, what, status)
    kind = CATEGORY.get(category, ErrorKind.PERMANENT)
    return ConnectorError(
        VENDOR,
        kind,
        f"{code}: {message}",
        status=status,
        code=str(code),
        retry_after=1.0 if kind is ErrorKind.RATE_LIMITED else None,
    )


def _lowered_mrr(sub: dict[str, Any], since: float) -> int:
    """An order's actions on one subscription that lowered its list-price MRR on or after
    ``since`` (RemoveProduct, UpdateProduct, ChangePlan with a negative MRR metric; discount
    charges are not downgrades: a retention offer is not the customer leaving)."""
    count = 0
    for action in sub.get("orderActions") or []:
        if action.get("type") not in ("RemoveProduct", "UpdateProduct", "ChangePlan"):
            continue
        delta = 0.0
        at = None
        for metric in action.get("orderMetrics") or []:
            for slice_ in metric.get("mrr") or []:
                if slice_.get("discountChargeNumber"):
                    continue
                delta += float(slice_.get("amount") or 0)
                at = at or _ts(slice_.get("startDate"))
        if delta < 0 and at is not None and at.timestamp() >= since - DAY_S:
            count += 1
    return count
