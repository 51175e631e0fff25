"""Recurly webhooks: ``recurly-signature`` verification over the raw bytes, then the IDs the JSON
notification carries re-fetched from Recurly's API (billing-apis.md §4d).

Recurly's JSON notifications are metadata only (``{id, object_type, site_id, event_type,
event_time, uuid | invoice_number | account_code}``): no invoice, no account, no amount. So the
route re-fetches the one object a notification names (the transaction of a ``payment``
notification, the invoice of a ``charge_invoice`` one) with the official client before it can
name the workflow (``dunning:recurly:{invoice id}``) — one GET, bounded by a short timeout (Recurly
wants an answer within 5 s); a failed lookup is a 503, so Recurly delivers again. A transaction
names its invoice and account and carries the attempt (amount, currency, decline), so a
``payment`` notification costs that one read alone, the invoice unread (issue 15).

- **Signature**: ``recurly-signature: <unix ms>,<hex>[,<hex>…]``, each ``HMAC-SHA256(secret,
  "{ts}.{body}")``; accepted if any signature matches any configured secret (rotation), compared
  in constant time, and ``ts`` within ±5 minutes of now (both directions, in milliseconds).
- **One failure, one event**: ``payment/failed`` and ``charge_invoice/past_due`` report the same
  declined attempt; both become ``PaymentFailed`` with the *transaction's* UUID as event ID, so
  the run deduplicates them (and any redelivery, in any order). Whichever is looked up first
  answers the other for five minutes in this process (by the transaction's UUID and the
  invoice's number), so a decline costs one read here, not two (issue 15).
- **Echoes**: RevBridge collects only with ``PUT /invoices/{id}/collect``, which Recurly records
  as transaction origin ``force_collect``; notifications about such a transaction are our own
  write coming back and are dropped.
- **Account sync** (``REVBRIDGE_ACCOUNT_SYNC=1``, issue 19): ``account`` notifications name the
  account code and signal-with-start ``account:recurly:{code}`` at once; ``subscription`` ones
  name the subscription's UUID, re-fetched (one GET) for its account. The notification ID is
  the event ID (the same on every redelivery). Our own account writes come back too and are
  recognised by the run (value equality). Payment outcomes stay on the dunning path alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import re
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from domain.golden import Side, SyncSignal
from domain.models import InvoicePaid, Payment, PaymentFailed
from domain.settings import RecurlySettings
from webhooks.errors import Rejected
from webhooks.parsing import Echo, iso_timestamp, obj, provider_id, text

PROVIDER = "recurly"
TOLERANCE_MS = 300_000
LOOKUP_TIMEOUT_S = 3.0
#: how long a looked-up payment outcome answers the decline's other notification (seconds), and
#: how many are kept
RECALL_S, RECALL_MAX = 300.0, 10_000
#: the transaction origin of RevBridge's own collection attempts
OWN_ORIGIN = "force_collect"

_HEADER = re.compile(r"[0-9]{1,15}(,[0-9a-fA-F]{1,128}){1,10}")
_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
_MAX_HEADER = 2048
_ZERO_DECIMAL = {"JPY", "KRW", "CLP", "VND", "ISK", "UGX", "XAF", "XOF", "PYG"}


def verify(
    raw: bytes,
    header: str | None,
    secrets: Sequence[str],
    now_ms: int,
    tolerance_ms: int = TOLERANCE_MS,
) -> None:
    """Accept the request if any signature in the header is ``HMAC-SHA256(secret,
    f"{ts}." + raw)`` for any configured secret and ``ts`` is within ``tolerance_ms`` of
    ``now_ms`` (either direction); otherwise raise :class:`Rejected`:

    - ``400 signature_missing`` / ``signature_malformed``: not a Recurly delivery at all;
    - ``401 signature_invalid``: no signature matches (wrong secret, tampered or re-serialized
      body, forged request);
    - ``400 timestamp_stale`` / ``timestamp_future``: authentic but outside the window (a replay,
      or a clock badly out of sync). The signature is checked first, so only an authentic
      request learns that its timestamp was the problem.
    """
    if header is None or not header.strip():
        raise Rejected(400, "missing recurly-signature header", "signature_missing")
    header = header.strip()
    if len(header) > _MAX_HEADER or not _HEADER.fullmatch(header):
        raise Rejected(400, "recurly-signature header is malformed", "signature_malformed")
    ts_text, *signatures = header.split(",")
    keys = [s for s in secrets if s]
    if not keys:
        raise Rejected(503, "recurly webhook secrets are not configured", "not_configured")
    signed = ts_text.encode() + b"." + raw
    candidates = [s.lower().encode() for s in signatures if _HEX_SIGNATURE.fullmatch(s)]
    matched = False
    for key in keys:
        expected = hmac.new(key.encode(), signed, hashlib.sha256).hexdigest().encode()
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)  # no early exit
    if not matched:
        raise Rejected(401, "no recurly-signature entry matches", "signature_invalid")
    ts = int(ts_text)
    if ts < now_ms - tolerance_ms:
        raise Rejected(400, "recurly-signature timestamp is too old", "timestamp_stale")
    if ts > now_ms + tolerance_ms:
        raise Rejected(400, "recurly-signature timestamp is in the future", "timestamp_future")


def _failed_attempt(txn: Any, invoice_id: str, currency: str, scale: int) -> Payment | None:
    """The declined transaction just read, as the run's first read would read it (its
    transaction list is skipped when this is given: issue 15); None when it lacks an ID."""
    txn_id = getattr(txn, "id", None)
    if not isinstance(txn_id, str) or not txn_id:
        return None
    created = getattr(txn, "created_at", None)
    message = getattr(txn, "status_message", None)
    return Payment(
        id=txn_id,
        invoice_id=invoice_id,
        succeeded=False,
        amount=max(0, int(round(float(getattr(txn, "amount", 0) or 0) * scale))),
        currency=currency,
        decline_code=(txn.status_code or None) and str(txn.status_code)[:200],
        decline_message=str(message)[:500] if message else None,
        at=created if isinstance(created, datetime) and created.tzinfo else None,
    )


class Notification:
    """What a notification names: the kind and the ID to re-fetch."""

    def __init__(
        self, event_id: str, kind: str, ref: str, occurred_at: datetime, failed: bool
    ) -> None:
        self.event_id = event_id
        self.kind = kind  # "transaction" | "invoice" | "account" | "subscription" (account sync)
        self.ref = ref  # "uuid-<uuid>" | "number-<n>" | "code-<account code>"
        self.occurred_at = occurred_at
        self.failed = failed


#: (object_type, event_type) → (what it names, a failure?)
_ROUTED = {
    ("payment", "failed"): ("transaction", True),
    ("payment", "succeeded"): ("transaction", False),
    ("charge_invoice", "past_due"): ("invoice", True),
    ("charge_invoice", "paid"): ("invoice", False),
}
_UUID = re.compile(r"[0-9a-f]{32}")
#: account and subscription changes the account sync re-reads (issue 19)
SYNC_EVENTS = {
    "account": frozenset({"created", "updated", "deactivated", "reactivated"}),
    "subscription": frozenset(
        {"created", "updated", "canceled", "expired", "paused", "resumed", "reactivated", "renewed"}
    ),
}


def parse(payload: Any, sync: bool = False) -> Notification | None:
    """Validate the notification; None for kinds RevBridge does not route (acknowledged).
    ``sync``: the deployment runs the account sync (REVBRIDGE_ACCOUNT_SYNC)."""
    note = obj(payload, "notification")
    event_id = provider_id(note.get("id"), "notification.id")
    object_type = text(note.get("object_type"), "notification.object_type")
    event_type = text(note.get("event_type"), "notification.event_type")
    occurred_at = iso_timestamp(note.get("event_time"), "notification.event_time")
    if sync and event_type in SYNC_EVENTS.get(object_type, ()):
        if object_type == "account":
            code = provider_id(note.get("account_code"), "notification.account_code")
            return Notification(event_id, "account", f"code-{code}", occurred_at, False)
        uuid = note.get("uuid")
        if not isinstance(uuid, str) or not _UUID.fullmatch(uuid):
            raise Rejected(422, "notification.uuid is not a Recurly UUID", "bad_id")
        return Notification(event_id, "subscription", f"uuid-{uuid}", occurred_at, False)
    routed = _ROUTED.get((object_type, event_type))
    if routed is None:
        return None
    kind, failed = routed
    if kind == "transaction":
        uuid = note.get("uuid")
        if not isinstance(uuid, str) or not _UUID.fullmatch(uuid):
            raise Rejected(422, "notification.uuid is not a Recurly UUID", "bad_id")
        ref = f"uuid-{uuid}"
    else:
        number = note.get("invoice_number")
        if isinstance(number, bool) or not isinstance(number, int | str):
            raise Rejected(422, "notification.invoice_number is missing", "missing_field")
        number = str(number)
        if not number.isdigit() or len(number) > 20:
            raise Rejected(422, "notification.invoice_number is not a number", "bad_id")
        ref = f"number-{number}"
    return Notification(event_id, kind, ref, occurred_at, failed)


class RecurlyLookup:
    """Re-fetches what a notification names, with the official client (one connection,
    serialized; calls run in a thread so the event loop keeps answering)."""

    def __init__(self, settings: RecurlySettings, timeout_s: float = LOOKUP_TIMEOUT_S) -> None:
        import recurly

        self._recurly = recurly
        self._rc = recurly.Client(
            settings.api_key.get_secret_value(), timeout=timeout_s, region=settings.region
        )
        if settings.api_url:
            url = urlparse(settings.api_url)
            https = url.scheme == "https"
            conn = http.client.HTTPSConnection if https else http.client.HTTPConnection
            self._rc._BaseClient__conn = conn(  # type: ignore[attr-defined]
                url.hostname, url.port or (443 if https else 80), timeout=timeout_s
            )
        self._lock = threading.Lock()
        #: held across a payment notification's recall, lookup and memo (issue 15)
        self._resolving = threading.Lock()
        #: ``(ref, failed)`` → (the event, when): one decline sends ``payment/failed`` and
        #: ``charge_invoice/past_due`` at once; whichever is looked up first names the other
        #: (the transaction's UUID, the invoice's number), which then costs no read
        self._recent: dict[tuple[str, bool], tuple[PaymentFailed | InvoicePaid, float]] = {}

    def _recall(self, note: Notification) -> PaymentFailed | InvoicePaid | None:
        hit = self._recent.get((note.ref, note.failed))
        if hit is None or time.monotonic() - hit[1] > RECALL_S:
            return None
        return hit[0]

    def _memo(self, event: Any, note: Notification, txn: Any, number: Any) -> None:
        if not isinstance(event, PaymentFailed | InvoicePaid):
            return
        now = time.monotonic()
        if len(self._recent) >= RECALL_MAX:
            self._recent = {k: v for k, v in self._recent.items() if now - v[1] <= RECALL_S}
            if len(self._recent) >= RECALL_MAX:
                self._recent.clear()
        refs = {note.ref, f"uuid-{getattr(txn, 'uuid', '')}"}
        if number is not None:
            refs.add(f"number-{number}")
        for ref in refs:
            self._recent[(ref, note.failed)] = (event, now)

    async def resolve(
        self, note: Notification
    ) -> PaymentFailed | InvoicePaid | SyncSignal | Echo | None:
        if note.kind == "account":  # the notification names the customer: no lookup
            return self._sync(note, note.ref.removeprefix("code-"))
        return await asyncio.to_thread(self._resolve, note)

    @staticmethod
    def _sync(note: Notification, account_code: str) -> SyncSignal:
        return SyncSignal(
            billing=PROVIDER,
            customer_id=provider_id(account_code, "account.code"),
            side=Side.BILLING,
            event_id=note.event_id,
            occurred_at=note.occurred_at,
            kind=f"{note.kind}_changed",
        )

    def _get(self, fn: Any) -> Any:
        with self._lock:
            try:
                return fn()
            except self._recurly.errors.NotFoundError:
                raise Rejected(
                    422, "the notification names an object Recurly does not have", "unknown_object"
                ) from None
            except (
                TimeoutError,
                self._recurly.RecurlyError,
                OSError,
                http.client.HTTPException,
                TypeError,
                ValueError,
                KeyError,
            ) as exc:
                self._rc._BaseClient__conn.close()  # type: ignore[attr-defined]
                raise Rejected(
                    503,
                    f"recurly lookup failed ({type(exc).__name__}), retry later",
                    "lookup_failed",
                ) from None

    def _resolve(
        self, note: Notification
    ) -> PaymentFailed | InvoicePaid | SyncSignal | Echo | None:
        if note.kind == "subscription":
            sub = self._get(lambda: self._rc.get_subscription(note.ref))
            return self._sync(note, sub.account.code)
        with self._resolving:
            recalled = self._recall(note)
            if recalled is not None:
                # the same attempt, looked up moments ago through the other notification: the
                # run deduplicates it by the transaction's UUID, as a redelivery
                return recalled
            if note.kind == "transaction":
                txn = self._get(lambda: self._rc.get_transaction(note.ref))
                if getattr(txn, "invoice", None) is None:
                    return None  # a payment not tied to an invoice: nothing of ours waits on it
                event = self._from_transaction(note, txn)
                self._memo(event, note, txn, getattr(txn.invoice, "number", None))
                return event
            return self._from_invoice(note)

    def _from_invoice(self, note: Notification) -> PaymentFailed | InvoicePaid | Echo | None:
        inv = self._get(lambda: self._rc.get_invoice(note.ref))
        attempts = sorted(
            inv.transactions or [], key=lambda t: (t.created_at is None, t.created_at)
        )
        wanted = [t for t in attempts if (t.status == "success") != note.failed]
        if not wanted:
            return None  # e.g. past due without a declined attempt (net terms ran out)
        txn = wanted[-1]
        if getattr(txn, "origin", None) == OWN_ORIGIN:
            return Echo(reason="recurly transaction from RevBridge's own collection attempt")
        account = provider_id(inv.account.code, "invoice.account.code")
        invoice_id = provider_id(inv.id, "invoice.id")
        event_id = provider_id(txn.uuid, "transaction.uuid")
        if not note.failed:
            if txn.status != "success":
                return None
            paid = InvoicePaid(
                billing=PROVIDER,
                event_id=event_id,
                invoice_id=invoice_id,
                customer_id=account,
                occurred_at=note.occurred_at,
            )
            self._memo(paid, note, txn, getattr(inv, "number", None))
            return paid
        if txn.status == "success":
            return None  # stale: this attempt succeeded
        subs = list(inv.subscription_ids or [])
        currency = str(inv.currency or "USD").upper()
        scale = 1 if currency in _ZERO_DECIMAL else 100
        failed = PaymentFailed(
            billing=PROVIDER,
            event_id=event_id,
            invoice_id=invoice_id,
            customer_id=account,
            subscription_id=provider_id(subs[0], "invoice.subscription_ids") if subs else None,
            amount_due=max(0, int(round(float(inv.balance or 0) * scale))),
            currency=currency,
            decline_code=(txn.status_code or None) and str(txn.status_code)[:200],
            occurred_at=note.occurred_at,
            payment=_failed_attempt(txn, invoice_id, currency, scale),
        )
        self._memo(failed, note, txn, getattr(inv, "number", None))
        return failed

    def _from_transaction(
        self, note: Notification, txn: Any
    ) -> PaymentFailed | InvoicePaid | Echo | None:
        """A payment notification from its transaction alone (issue 15): the transaction names
        its invoice and account and carries the attempt's amount, currency and decline, so the
        invoice is not read here (the run reads it anyway)."""
        if getattr(txn, "origin", None) == OWN_ORIGIN:
            return Echo(reason="recurly transaction from RevBridge's own collection attempt")
        account = provider_id(getattr(txn.account, "code", None), "transaction.account.code")
        invoice_id = provider_id(txn.invoice.id, "transaction.invoice.id")
        event_id = provider_id(txn.uuid, "transaction.uuid")
        if not note.failed:
            if txn.status != "success":
                return None
            return InvoicePaid(
                billing=PROVIDER,
                event_id=event_id,
                invoice_id=invoice_id,
                customer_id=account,
                occurred_at=note.occurred_at,
            )
        if txn.status == "success":
            return None  # stale: this attempt succeeded
        subs = list(getattr(txn, "subscription_ids", None) or [])
        currency = str(txn.currency or "USD").upper()
        scale = 1 if currency in _ZERO_DECIMAL else 100
        return PaymentFailed(
            billing=PROVIDER,
            event_id=event_id,
            invoice_id=invoice_id,
            customer_id=account,
            subscription_id=provider_id(subs[0], "transaction.subscription_ids") if subs else None,
            # the attempt's amount: what was due when it was tried (the run reads the balance)
            amount_due=max(0, int(round(float(txn.amount or 0) * scale))),
            currency=currency,
            decline_code=(txn.status_code or None) and str(txn.status_code)[:200],
            occurred_at=note.occurred_at,
            payment=_failed_attempt(txn, invoice_id, currency, scale),
        )
