"""Stripe Billing through the official ``stripe`` client (16.x, ``StripeClient``).

Shape and error discipline as :mod:`connectors.chargebee`. Stripe specifics (billing-apis.md §1):

- One ``StripeClient`` per connector, ``max_network_retries=0`` (Temporal owns retries), on the
  process's one shared HTTP client (``RequestsClient`` over a paced keep-alive session).
- Every POST carries *our* stable idempotency key: stripe-python would otherwise add a random one
  per call, so a Temporal retry would be a brand-new request to Stripe. Reads pass none.
- Stripe has no notes: an audit note is a **metadata** entry on the invoice or customer, keyed by a
  hash of the idempotency key, so the same key overwrites the same entry (idempotent by
  construction, even after Stripe has pruned the key, i.e. after 24 h).
- Current API versions: an invoice's subscription is ``parent.subscription_details.subscription``
  and its payments are ``invoice_payment`` objects (``payments``, only when expanded); a payment
  attempt's decline lives on the payment intent's ``last_payment_error``.
- Quote-to-cash: the CRM link is customer **metadata** ``crm`` + ``crm_account_id``; found again
  with the Search API, which is *eventually consistent* (a customer is searchable up to about a
  minute after it is written), plus the customer events of the last ten minutes (a strongly
  consistent list), so a customer created or linked moments ago is found without waiting.
- Limits: a test-mode account answers 429 past 25 requests/s (search: 20/s); every request is
  paced through one keep-alive session per process (connectors/limits.py), and written fields
  are cut to Stripe's documented lengths (coupon name 40, metadata value 500). DELETEs carry
  no key: Stripe ignores keys on DELETE (they are idempotent by definition; a repeat is a 404,
  which these methods treat as done).
- Churn and support: Stripe lists newest first and pages with ``starting_after=<last id>``;
  plan/quantity decreases come from ``customer.subscription.updated`` events (their
  ``previous_attributes``), which Stripe keeps for 30 days only.

The package, by concern: ``client`` (the configured client, the paced HTTP client, errors),
``values`` (constants and pure conversions), ``invoices`` (dunning), ``customers``
(quote-to-cash), ``churn`` (churn and support context, the sweep), ``preflight`` (``revbridge
doctor``). :class:`StripeBilling` is all of them.
"""

from __future__ import annotations

from connectors.stripe.churn import SWEEP_EVENTS_TTL_S, Churn
from connectors.stripe.client import (
    DEFAULT_RETRY_AFTER_S,
    StripeClientBase,
    classify,
    key_mode,
    shared_http_client,
)
from connectors.stripe.invoices import Invoices
from connectors.stripe.preflight import WEBHOOK_EVENTS, Preflight
from connectors.stripe.values import (
    _NO_REVENUE,
    CANCELLATION_COMMENT_MAX,
    COUPON_NAME_MAX,
    CRM_ACCOUNT_KEY,
    CRM_KEY,
    CRM_OPPORTUNITY_KEY,
    DAY_S,
    DESCRIPTION_MAX,
    METADATA_KEYS_MAX,
    METADATA_PREFIX,
    METADATA_VALUE_MAX,
    RECENT_EVENTS_MAX,
    SEARCH_LAG_WINDOW_S,
    _subscription,
    monthly_recurring,
    note_key,
)

__all__ = [
    "CANCELLATION_COMMENT_MAX",
    "COUPON_NAME_MAX",
    "CRM_ACCOUNT_KEY",
    "CRM_KEY",
    "CRM_OPPORTUNITY_KEY",
    "DAY_S",
    "DEFAULT_RETRY_AFTER_S",
    "DESCRIPTION_MAX",
    "METADATA_KEYS_MAX",
    "METADATA_PREFIX",
    "METADATA_VALUE_MAX",
    "RECENT_EVENTS_MAX",
    "SEARCH_LAG_WINDOW_S",
    "SWEEP_EVENTS_TTL_S",
    "WEBHOOK_EVENTS",
    "_NO_REVENUE",
    "StripeBilling",
    "StripeClientBase",
    "_subscription",
    "classify",
    "key_mode",
    "monthly_recurring",
    "note_key",
    "shared_http_client",
]


class StripeBilling(Churn, Invoices, Preflight):
    """The billing protocol (and the use cases' reads and writes) on one Stripe account: the
    client (:class:`StripeClientBase`), dunning, quote-to-cash, churn and support context,
    preflight — one class, as every connector is."""
