"""HubSpot as the CRM, through the official ``hubspot-api-client`` 12.x (private-app token).

Reference: ``crm-llm-apis.md`` §0 and §2. What matters here:

- ``HubSpot(access_token=..., host=url, base_url=url, retry=False)`` points every API group (and the
  generic request helper) at ``api_url``; ``retry=False`` because Temporal owns retries (urllib3's
  default would sleep out a 429 inside the activity, hidden from the workflow).
- The generated client has no configuration-level timeout, so every call passes
  ``_request_timeout``.
- The client returns ``None`` *silently* when the status code is not the one the operation
  declares (e.g. 200 on a create). Every result is checked; ``None`` becomes a RETRYABLE error
  (our writes are idempotent by key, so retrying an ambiguous write is safe).
- Each API group has its own ``ApiException`` class; they share no base class, so we list the
  groups we call.

Idempotent creates. Tickets carry the unique custom property ``revbridge_key``. We create (with
the associations in the same request, so they commit together), and when HubSpot refuses because
the key is taken — a 409 unique-value conflict: an earlier attempt whose answer we never saw, or a
concurrent one, won — we read the record by that key (``GET .../{key}?idProperty=revbridge_key``:
a read by unique value, not the search index, which lags writes by seconds) and report
``created=False``. We do not use batch upsert: on a retry it would overwrite fields a person may
already have changed (stage, priority), and it cannot carry associations.

Notes and tasks (activities) cannot have a unique property on real HubSpot (unique properties
exist for contacts, companies, deals, tickets and custom objects only), so they are made
exactly-once differently (:meth:`HubSpotCrm._engagement_once`): the body ends with a deterministic
marker, ``RevBridge ref: rb-<sha256(key)[:32]>``, and before creating we look for that marker
among the activities already associated with the record the new one hangs on (its ticket, else
its company). That look-up is a v4 association read plus a batch read by ID — both served from
HubSpot's CRM store, not from the search index — and the activity is created together with its
associations in one request, so an earlier attempt that committed is always visible to it: **the
index-lag window is closed by not using the index**. Where the anchor is brand new (a ticket this
very call created), nothing can be associated with it yet and the look-up is skipped. Only an
activity with no association at all falls back to search, and on a retried attempt it waits out
the index lag (:data:`INDEX_LAG_S`) before believing "not found". What this cannot cover, and
a unique property would: two attempts writing at the same moment (Temporal runs one attempt at
a time, and each call's timeout is below the activity's, so only a request HubSpot commits after
our client gave up on it could race the retry). The cost: a note or task is 2 requests (3 when
its anchor already has activities, more past 100 of them) instead of 1. Text values are capped
at 65,536 characters by HubSpot; longer bodies are cut with a visible marker, never refused.

Quote-to-cash reads a deal with its associations in one GET (a v3 read names its line items
``"line items"``, with a space), then batch-reads the line items, their products (list price, SKU
fallback) and the contacts. Money is a decimal string in HubSpot and minor units here. Field sets
(billing link, churn score) are plain PATCHes: idempotent by nature; an empty string clears.

The package, by concern: ``client`` (the API groups, one paced call, errors, creates by key, the
shared reads), ``values`` (constants and pure conversions), ``engagements`` (notes and tasks
exactly once, the audit trail), ``accounts`` (companies, tickets, tasks, churn scores), ``deals``
(quote-to-cash), ``preflight`` (``revbridge doctor``). :class:`HubSpotCrm` is all of them.
``revbridge setup crm`` (the RevBridge property group and properties) is connectors/hubspot_setup.py.
"""

from __future__ import annotations

from connectors.hubspot.client import (
    DAILY_RETRY_AFTER_S,
    DEFAULT_RETRY_AFTER_S,
    DEFAULT_SEARCH_RATE_PER_S,
    HubSpotClient,
    _classify,
)
from connectors.hubspot.deals import Deals
from connectors.hubspot.preflight import (
    REQUIRED_PROPERTIES,
    REQUIRED_SCOPES,
    Preflight,
    _property_check,
)
from connectors.hubspot.values import (
    _LINE_PROPERTIES,
    CLOSED_WON,
    ENGAGEMENT_BODY,
    INDEX_LAG_S,
    KEY_PROPERTY,
    NOTE_TO_COMPANY,
    NOTE_TO_TICKET,
    TASK_TO_COMPANY,
    TEXT_MAX,
    TICKET_STAGES,
    TICKET_TO_COMPANY,
    VENDOR,
    _assoc_ids,
    _line,
    engagement_ref,
    fit_body,
    fit_text,
    note_html,
    note_text,
)

__all__ = [
    "CLOSED_WON",
    "DAILY_RETRY_AFTER_S",
    "DEFAULT_RETRY_AFTER_S",
    "DEFAULT_SEARCH_RATE_PER_S",
    "ENGAGEMENT_BODY",
    "INDEX_LAG_S",
    "KEY_PROPERTY",
    "NOTE_TO_COMPANY",
    "NOTE_TO_TICKET",
    "REQUIRED_PROPERTIES",
    "REQUIRED_SCOPES",
    "TASK_TO_COMPANY",
    "TEXT_MAX",
    "TICKET_STAGES",
    "TICKET_TO_COMPANY",
    "VENDOR",
    "_LINE_PROPERTIES",
    "HubSpotClient",
    "HubSpotCrm",
    "_assoc_ids",
    "_classify",
    "_line",
    "_property_check",
    "engagement_ref",
    "fit_body",
    "fit_text",
    "note_html",
    "note_text",
]


class HubSpotCrm(Deals, Preflight):
    """The CRM protocol (and the use cases' reads and writes) on one HubSpot portal: the client
    and its plumbing (:class:`HubSpotClient`), notes and tasks exactly once, accounts and cases,
    churn scores, quote-to-cash, preflight — one class, as every connector is."""

    name = VENDOR
