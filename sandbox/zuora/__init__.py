"""A stateful Zuora tenant (REST v1) for the demo and the tests.

Vendor API: OAuth client credentials (``POST /oauth/token``, 1-hour tokens, 401 on expiry);
accounts (+ ``/summary``), contacts, the catalogue (products, product rate plans and charges),
subscriptions (``subscribeToRatePlans``; cancel, suspend, resume; ``PUT`` with add/remove/update),
Orders (``CreateSubscription``, ``AddProduct``, ``RemoveProduct``, ``UpdateProduct``,
``CancelSubscription``, ``Suspend``, ``Resume``), invoices (+ items, write-off), payments
(electronic, declined with the gateway's response code, external), invoice-collect and payment
runs, credit memos (from a charge, from an invoice, apply), usage (``POST /v1/object/usage``,
by account), Object Query (``filter[]``, ``sort[]``, ``cursor``, ``pageSize`` ≤ 99) and classic
``page``/``pageSize`` ≤ 40 with ``nextPage`` URLs. ``notes`` on accounts and subscriptions,
``…__c`` custom fields.

Zuora's error shapes: classic endpoints answer business errors with **HTTP 200**
``{"success": false, "processId", "reasons": [{"code": 8 digits, "message"}]}``; the CRUD usage
endpoint with ``{"Success": false, "Errors": [{"Code", "Message"}]}``; Object Query with
``{"code", "message"}``; 401 ``{"message"}``; 429 with ``ratelimit-*`` or
``Concurrency-Limit-*`` headers and ``Retry-After``. ``Idempotency-Key`` on POST/PATCH: the
stored response replayed, 409 while the first is in flight, 422 for another request.

Callouts: notification templates (``emulator.DEFAULT_TEMPLATES``: IDs only, from merge fields)
for Payment Declined, Payment Processed, Invoice Posted, Order Processed and the custom
Usage event; Basic auth by challenge/response or preemptive, optional HMAC; a new
``Zuora-Request-Id`` per attempt; success only on HTTP 200.

Scenario controls (never ledgered): ``/_sandbox/seed`` (see ``seeding``), and under
``/_sandbox/zuora``: ``limits`` {rate_per_minute, concurrency, reserved}, ``tokens/expire``,
``slow`` {path, delay_s}, ``accounts/{key}/card`` {decline_code}, ``invoices/{key}/decline``
{decline_code} (a payment run's declined attempt), ``callouts/settings`` {auth, hmac_key,
hmac_header, attempts, templates}, ``callouts/hold``, ``callouts/release`` {order:
fifo|reverse|shuffle}, ``callouts/send`` (a raw resend), ``GET callouts``.
"""

from .emulator import ZuoraEmulator

__all__ = ["ZuoraEmulator"]
