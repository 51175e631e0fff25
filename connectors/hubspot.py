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

``revbridge setup crm`` (the RevBridge property group and properties) is connectors/hubspot_setup.py.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import hubspot
import requests
import urllib3
from hubspot.crm.associations.v4 import (
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.associations.v4.exceptions import ApiException as AssociationsApiException
from hubspot.crm.companies import BatchInputSimplePublicObjectBatchInput as CompanyBatchUpdate
from hubspot.crm.companies import BatchReadInputSimplePublicObjectId as CompanyBatchRead
from hubspot.crm.companies import SimplePublicObjectBatchInput as CompanyBatchInput
from hubspot.crm.companies import SimplePublicObjectInput as CompanyUpdate
from hubspot.crm.companies.exceptions import ApiException as CompaniesApiException
from hubspot.crm.contacts import BatchReadInputSimplePublicObjectId as ContactBatchRead
from hubspot.crm.contacts.exceptions import ApiException as ContactsApiException
from hubspot.crm.deals import Filter as DealFilter
from hubspot.crm.deals import FilterGroup as DealFilterGroup
from hubspot.crm.deals import PublicObjectSearchRequest as DealSearchRequest
from hubspot.crm.deals import SimplePublicObjectInput as DealUpdate
from hubspot.crm.deals.exceptions import ApiException as DealsApiException
from hubspot.crm.line_items import BatchReadInputSimplePublicObjectId as LineItemBatchRead
from hubspot.crm.line_items.exceptions import ApiException as LineItemsApiException
from hubspot.crm.objects.notes import (
    BatchInputSimplePublicObjectBatchInputForCreate as NoteBatchCreate,
)
from hubspot.crm.objects.notes import BatchReadInputSimplePublicObjectId as NoteBatchRead
from hubspot.crm.objects.notes import PublicObjectSearchRequest as NoteSearchRequest
from hubspot.crm.objects.notes import SimplePublicObjectInputForCreate as NoteCreate
from hubspot.crm.objects.notes.exceptions import ApiException as NotesApiException
from hubspot.crm.objects.tasks import BatchReadInputSimplePublicObjectId as TaskBatchRead
from hubspot.crm.objects.tasks import PublicObjectSearchRequest as TaskSearchRequest
from hubspot.crm.objects.tasks import SimplePublicObjectInputForCreate as TaskCreate
from hubspot.crm.objects.tasks.exceptions import ApiException as TasksApiException
from hubspot.crm.products import BatchReadInputSimplePublicObjectId as ProductBatchRead
from hubspot.crm.products.exceptions import ApiException as ProductsApiException
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException
from hubspot.crm.tickets import BatchReadInputSimplePublicObjectId as TicketBatchRead
from hubspot.crm.tickets import SimplePublicObjectInputForCreate as TicketCreate
from hubspot.crm.tickets.exceptions import ApiException as TicketsApiException

from connectors import limits
from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.timeouts import call_timeout
from domain.audit import AuditEntry
from domain.churn import ScoredAccount
from domain.models import (
    CaseDraft,
    CasePriority,
    CaseRef,
    CaseSummary,
    CrmAccount,
    CustomerTier,
    TaskDraft,
)
from domain.preflight import Check, CheckStatus
from domain.records import (
    BillingLink,
    CaseDetail,
    ChurnScoreRecord,
    Contact,
    Opportunity,
    OpportunityLine,
)
from domain.settings import HubSpotSettings

VENDOR = "hubspot"
KEY_PROPERTY = "revbridge_key"
#: HubSpot's ten-second rolling window: the wait when a 429 carries no Retry-After
DEFAULT_RETRY_AFTER_S = 10.0
#: the daily allocation resets at the portal's midnight; an hour is a sane first wait
DAILY_RETRY_AFTER_S = 3600.0
#: HUBSPOT_DEFINED default ("unlabeled") association type ids, from → to (reference §2.4)
TICKET_TO_COMPANY = 339
NOTE_TO_COMPANY = 190
NOTE_TO_TICKET = 228
TASK_TO_COMPANY = 192
#: the default pipeline's closed-won stage (custom pipelines use numeric stage IDs)
CLOSED_WON = "closedwon"
#: the default support pipeline's stages (``hs_pipeline`` "0"), id → label
TICKET_STAGES = {"1": "New", "2": "Waiting on contact", "3": "Waiting on us", "4": "Closed"}
#: a single-line / multi-line text property holds at most this many characters
TEXT_MAX = 65_536
#: CRM search pages hold at most 200 results, and a query reaches at most 10,000
_SEARCH_MAX_PAGE = 200
_SEARCH_MAX_RESULTS = 10_000
_BATCH = 100
_COMPANY_PROPERTIES = [
    "name",
    "customer_tier",
    "hubspot_owner_id",
    "billing_customer_id",
    "billing_platform",
]
_DEAL_PROPERTIES = [
    "dealname",
    "dealstage",
    "pipeline",
    "amount",
    "deal_currency_code",
    "closedate",
    "hs_is_closed_won",
    "term_months",
    "payment_terms",
    "start_date",
    "billing_subscription_id",
]
_LINE_PROPERTIES = [
    "name",
    "hs_sku",
    "hs_product_id",
    "quantity",
    "price",
    "discount",
    "hs_discount_percentage",
    "recurringbillingfrequency",
    "hs_recurring_billing_period",
]
_TERM = re.compile(r"^P(?:(?P<y>\d+)Y)?(?:(?P<m>\d+)M)?$")
_PRIORITY = {CasePriority.HIGH: "HIGH", CasePriority.MEDIUM: "MEDIUM", CasePriority.LOW: "LOW"}
_API_EXCEPTIONS = (
    CompaniesApiException,
    ContactsApiException,
    DealsApiException,
    LineItemsApiException,
    ProductsApiException,
    TicketsApiException,
    NotesApiException,
    TasksApiException,
    AssociationsApiException,
    PropertiesApiException,
)
_NOTE_PROPERTIES = ["hs_note_body", "hs_timestamp"]
_TICKET_PROPERTIES = ["subject", "content", "hs_pipeline_stage", "createdate"]
#: the body property of each activity type RevBridge writes, where its exactly-once marker goes
ENGAGEMENT_BODY = {"notes": "hs_note_body", "tasks": "hs_task_body"}
_REF = "RevBridge ref: "
_REF_LINE = re.compile(r"(?:<br>)*RevBridge ref: rb-[0-9a-f]{32}$")
#: how long HubSpot's search index may lag a write ("a few moments"); waited out only by a
#: retried attempt writing an activity that has no association to look it up by
INDEX_LAG_S = 3.0
#: CRM search's own limit when the worker configured no pacing for it (4/s: HubSpot says 4-5)
DEFAULT_SEARCH_RATE_PER_S = 4.0
#: the engagement-activity body limit: a text value holds at most 65,536 characters
_TRUNCATED = "<br>… [truncated by RevBridge: {n:,} characters in full]"
#: OAuth scopes the private app needs, with what each is for (``revbridge doctor``)
REQUIRED_SCOPES: dict[str, str] = {
    "crm.objects.companies.read": "find accounts and their billing link",
    "crm.objects.companies.write": "write billing links and churn scores",
    "crm.objects.deals.read": "read won deals for quote-to-cash",
    "crm.objects.deals.write": "write subscription links on deals",
    "crm.objects.contacts.read": "read deal contacts",
    "crm.objects.line_items.read": "read deal line items",
    "crm.objects.products.read": "read product list prices",
    "crm.schemas.companies.read": "check company properties (doctor)",
    "crm.schemas.deals.read": "check deal properties (doctor)",
    "tickets": "open and read cases (tickets), notes and tasks",
}
#: (object type, property, type, unique) — what RevBridge reads and writes on a portal; the
#: sandbox's catalog (sandbox/hubspot/catalog.py) creates exactly these
REQUIRED_PROPERTIES: tuple[tuple[str, str, str, bool], ...] = (
    ("companies", "billing_customer_id", "string", True),
    ("companies", "billing_platform", "string", False),
    ("companies", "billing_subscription_id", "string", False),
    ("companies", "mrr", "number", False),
    ("companies", "customer_tier", "string", False),
    ("companies", "billing_status", "string", False),
    ("companies", "churn_risk", "string", False),
    ("companies", "churn_level", "enumeration", False),
    ("companies", "churn_reasons", "string", False),
    ("companies", "churn_narrative", "string", False),
    ("companies", "churn_scored_at", "datetime", False),
    ("deals", "term_months", "number", False),
    ("deals", "payment_terms", "enumeration", False),
    ("deals", "start_date", "date", False),
    ("deals", "billing_subscription_id", "string", False),
    ("deals", "billing_status", "string", False),
    ("deals", "mrr", "number", False),
    ("tickets", KEY_PROPERTY, "string", True),
)
_HEADLINE = re.compile(r"^\[RevBridge\] (?P<use_case>[^:]*): (?P<action>.*?) → (?P<outcome>.*)$")
_WORKFLOW_LINE = re.compile(r"^workflow: (?P<id>\S+) \(run ")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_SEARCH_PAGE = 100


def engagement_ref(key: str) -> str:
    """The deterministic marker a note or task for ``key`` carries (no PII: a digest)."""
    return "rb-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def fit_body(body_html: str, suffix: str = "") -> str:
    """``body_html + suffix`` within HubSpot's 65,536-character text limit: a longer body is cut
    (never inside an entity or a ``<br>``) and says so, keeping ``suffix`` (the marker) whole."""
    if len(body_html) + len(suffix) <= TEXT_MAX:
        return body_html + suffix
    note = _TRUNCATED.format(n=len(body_html))
    keep = TEXT_MAX - len(suffix) - len(note)
    cut = body_html[:keep]
    amp, lt = cut.rfind("&"), cut.rfind("<")
    if amp > cut.rfind(";"):
        cut = cut[:amp]  # do not split an entity such as &amp;
    if lt > cut.rfind(">"):
        cut = cut[:lt]  # nor a <br>
    return cut + note + suffix


def fit_text(text: str) -> str:
    """Plain text (a ticket's content) within the 65,536-character limit, cut with a marker."""
    if len(text) <= TEXT_MAX:
        return text
    note = f"\n… [truncated by RevBridge: {len(text):,} characters in full]"
    return text[: TEXT_MAX - len(note)] + note


def _assoc(to_id: str, type_id: int) -> dict[str, Any]:
    return {
        "to": {"id": to_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    }


def note_html(text: str) -> str:
    """Plain text as a note body: HTML-escaped (customer text is data), newlines as ``<br>``."""
    return html.escape(text).replace("\n", "<br>")


def note_text(body: str | None) -> str:
    """The plain text back from a note body (``<br>`` → newline, other tags dropped), without
    RevBridge's exactly-once marker line."""
    return html.unescape(_TAG.sub("", _BR.sub("\n", _REF_LINE.sub("", body or ""))))


def _epoch_ms(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return str(int(at.timestamp() * 1000))


def _cents(value: str | None) -> int | None:
    """A HubSpot money string (``"500"``, ``"1234.5"``) in minor units; None when unset."""
    if value is None or not str(value).strip():
        return None
    try:
        return int((Decimal(str(value)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except InvalidOperation:
        return None


def _money(cents: int) -> str:
    """Minor units as the decimal string HubSpot stores (``123450`` → ``"1234.50"``)."""
    return f"{Decimal(cents) / 100:.2f}"


def _number(value: str | None, default: float = 0.0) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _datetime(value: str | None) -> datetime | None:
    """A datetime property (ISO-8601 or epoch ms) as an aware UTC datetime."""
    if not value:
        return None
    text = str(value).strip()
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _date(value: str | None) -> date | None:
    """A date property (``2025-02-01``) or a datetime one (its UTC date)."""
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        at = _datetime(value)
        return at.date() if at else None


def _term_months(value: str | None) -> int | None:
    """A line item's term ``hs_recurring_billing_period`` (ISO-8601 ``P12M``, ``P1Y``) in months."""
    m = _TERM.match(str(value or "").strip().upper())
    if not m or not (m["y"] or m["m"]):
        return None
    return int(m["y"] or 0) * 12 + int(m["m"] or 0)


def _assoc_ids(
    associations: Mapping[str, Any] | None, keys: Iterable[str], primary: str | None = None
) -> list[str]:
    """Associated IDs from a v3 read's ``associations`` (under any of ``keys``), each once, the
    ``primary`` association type first (HubSpot lists a primary company twice: once labelled
    ``deal_to_company``, once ``deal_to_company_unlabeled``)."""
    rows: list[Any] = []
    for key in keys:
        found = (associations or {}).get(key)
        if found is not None:
            rows += found.results or []
    ordered = sorted(rows, key=lambda r: 0 if primary and r.type == primary else 1)
    return list(dict.fromkeys(str(r.id) for r in ordered))


def _account(company: Any) -> CrmAccount:
    props = company.properties or {}
    tier = props.get("customer_tier")
    return CrmAccount(
        id=str(company.id),
        name=props.get("name") or "",
        tier=CustomerTier(tier) if tier in CustomerTier._value2member_map_ else CustomerTier.SMB,
        owner_id=props.get("hubspot_owner_id") or None,
        billing_customer_id=props.get("billing_customer_id") or None,
        billing_platform=props.get("billing_platform") or None,
    )


class HubSpotCrm:
    name = VENDOR

    def __init__(self, settings: HubSpotSettings, timeout_s: float = 20.0) -> None:
        self._settings = settings
        # below the activity's start-to-close (connectors/timeouts.py)
        self._timeout_s = self.call_timeout_s = call_timeout(timeout_s)
        overrides = (
            {"host": settings.api_url, "base_url": settings.api_url} if settings.api_url else {}
        )
        self._client = hubspot.HubSpot(
            access_token=settings.access_token.get_secret_value(), retry=False, **overrides
        )
        # Each ``.basic_api`` access builds a new ApiClient and connection pool: build them once.
        crm = self._client.crm
        self._companies = crm.companies.basic_api
        self._companies_search = crm.companies.search_api
        self._company_batches = crm.companies.batch_api
        self._deals = crm.deals.basic_api
        self._deals_search = crm.deals.search_api
        self._line_item_batches = crm.line_items.batch_api
        self._product_batches = crm.products.batch_api
        self._contact_batches = crm.contacts.batch_api
        self._tickets = crm.tickets.basic_api
        self._notes = crm.objects.notes.basic_api
        self._tasks = crm.objects.tasks.basic_api
        self._notes_search = crm.objects.notes.search_api
        self._tasks_search = crm.objects.tasks.search_api
        self._note_batches = crm.objects.notes.batch_api
        self._task_batches = crm.objects.tasks.batch_api
        self._ticket_batches = crm.tickets.batch_api
        self._associations = crm.associations.v4.basic_api
        self._association_batches = crm.associations.v4.batch_api
        self._properties = crm.properties.core_api

    # --- plumbing -----------------------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
        if getattr(fn, "__name__", "") == "do_search":
            # CRM search: a few per second per account; paced even where no worker configured it
            if limits.pacing_rate(limits.search_limit(VENDOR)) is None:
                _DEFAULT_SEARCH_PACER.acquire()
            else:
                limits.pace(limits.search_limit(VENDOR))
        limits.pace(VENDOR)  # one HTTP request per call
        try:
            result = fn(*args, _request_timeout=self._timeout_s, **kwargs)
        except _API_EXCEPTIONS as exc:
            limits.observe_headers(VENDOR, getattr(exc, "headers", None))
            raise _classify(exc, what) from None
        except urllib3.exceptions.TimeoutError:
            raise ConnectorError(VENDOR, ErrorKind.RETRYABLE, f"{what}: timeout") from None
        except urllib3.exceptions.HTTPError as exc:
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"{what}: network: {type(exc).__name__}"
            ) from None
        _observe_allowance(fn)
        if result is None:
            # An undeclared 2xx status: the client drops the body without a word (reference §0.2).
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"{what}: unexpected response status", code="no_body"
            )
        return result

    def _by_key(
        self,
        api: Any,
        key: str,
        properties: list[str],
        what: str,
        associations: list[str] | None = None,
    ) -> Any | None:
        extra = {"associations": associations} if associations else {}
        try:
            return self._call(
                api.get_by_id,
                key,
                id_property=KEY_PROPERTY,
                properties=properties,
                what=what,
                **extra,
            )
        except NotFound:
            return None

    def _create_once(
        self,
        api: Any,
        model: type,
        key: str,
        properties: dict[str, str],
        associations: list[dict[str, Any]],
        read_properties: list[str],
        what: str,
        read_associations: list[str] | None = None,
    ) -> tuple[Any, bool]:
        """``(record, created)``: the record for ``key``, created by this call or found.

        Create first (one call on the happy path); a refusal means the key may be taken by an
        earlier attempt whose answer we never saw, so read by key before believing it. The read
        decides, not the error's wording: HubSpot answers a unique-value clash with 409
        ``CONFLICT`` (what the sandbox does), but its wording for custom unique properties is not
        documented, so any 4xx refusal is checked the same way.
        """
        body = model(properties={**properties, KEY_PROPERTY: key}, associations=associations)
        try:
            return self._call(api.create, body, what=what), True
        except ConnectorError as exc:
            if exc.status is None or not 400 <= exc.status < 500 or exc.status == 429:
                raise
            found = self._by_key(api, key, read_properties, what, read_associations)
            if found is None:
                raise
            return found, False

    # --- activities (notes, tasks): exactly-once without a unique property -------------------------

    def _engagement_apis(self, kind: str) -> tuple[Any, type, Any, type, Any, type]:
        if kind == "notes":
            return (
                self._notes,
                NoteCreate,
                self._note_batches,
                NoteBatchRead,
                self._notes_search,
                NoteSearchRequest,
            )
        return (
            self._tasks,
            TaskCreate,
            self._task_batches,
            TaskBatchRead,
            self._tasks_search,
            TaskSearchRequest,
        )

    def _associated_ids(self, from_type: str, from_id: str, to_type: str) -> list[str]:
        """Every ``to_type`` record associated with one record (v4, 500 a page): the CRM store,
        consistent with every committed create-with-associations."""
        out: list[str] = []
        after: str | None = None
        while True:
            extra = {"after": after} if after else {}
            page = self._call(
                self._associations.get_page,
                from_type,
                from_id,
                to_type,
                limit=500,
                what="associations",
                **extra,
            )
            out += [str(r.to_object_id) for r in page.results or []]
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                return out

    def _with_ref(self, kind: str, ids: list[str], ref: str) -> str | None:
        """Which of these activities carries ``ref`` (batch reads by ID, 100 a call)."""
        _, _, batches, model, _, _ = self._engagement_apis(kind)
        body = ENGAGEMENT_BODY[kind]
        for row in self._batch_read(batches, model, ids, [body], f"{kind} read"):
            if (row.properties or {}).get(body, "").endswith(_REF + ref):
                return str(row.id)
        return None

    def _search_ref(self, kind: str, ref: str) -> str | None:
        _, _, _, _, search, model = self._engagement_apis(kind)
        request = model(
            filter_groups=[
                {
                    "filters": [
                        {
                            "propertyName": ENGAGEMENT_BODY[kind],
                            "operator": "CONTAINS_TOKEN",
                            "value": ref,
                        }
                    ]
                }
            ],
            properties=[ENGAGEMENT_BODY[kind]],
            limit=10,
        )
        page = self._call(search.do_search, request, what=f"{kind} search")
        for row in page.results or []:
            if (row.properties or {}).get(ENGAGEMENT_BODY[kind], "").endswith(_REF + ref):
                return str(row.id)
        return None

    def _engagement_once(
        self,
        kind: str,
        key: str,
        properties: dict[str, str],
        associations: list[dict[str, Any]],
        anchor: tuple[str, str] | None,
        *,
        known_ids: list[str] | None = None,
        anchor_is_new: bool = False,
    ) -> tuple[str, bool]:
        """``(id, created)`` of the one note/task for ``key``.

        The body ends with ``RevBridge ref: <engagement_ref(key)>``. Before creating, the
        activities associated with ``anchor`` (``(type, id)``: the ticket, else the company) are
        read by association and by ID — not through search, whose index lags writes — and one
        carrying the marker is the earlier attempt's. ``known_ids`` are those associations when
        the caller read them already; ``anchor_is_new`` says the anchor was created by this very
        call, so nothing can hang on it yet. Without an anchor, search is the only look-up: a
        retried attempt waits out :data:`INDEX_LAG_S` before it believes "not found".
        """
        ref = engagement_ref(key)
        body = ENGAGEMENT_BODY[kind]
        properties = {**properties, body: fit_body(properties.get(body, ""), "<br>" + _REF + ref)}
        if anchor is not None and not anchor_is_new:
            ids = known_ids if known_ids is not None else self._associated_ids(*anchor, kind)
            found = self._with_ref(kind, ids, ref) if ids else None
            if found:
                return found, False
        elif anchor is None:
            found = self._search_ref(kind, ref)
            if found is None and limits.retry_attempt():
                time.sleep(INDEX_LAG_S)  # an earlier attempt's write is indexed by now
                found = self._search_ref(kind, ref)
            if found:
                return found, False
        api, model, *_ = self._engagement_apis(kind)
        created = self._call(
            api.create, model(properties=properties, associations=associations), what=kind[:-1]
        )
        return str(created.id), True

    # --- read helpers (demo, tests) -----------------------------------------------------------------

    def search_notes(self, token: str) -> list[Any]:
        """Every note whose body contains ``token`` (``CONTAINS_TOKEN``), all pages."""
        out: list[Any] = []
        after: str | None = None
        while True:
            request = NoteSearchRequest(
                filter_groups=[
                    {
                        "filters": [
                            {
                                "propertyName": "hs_note_body",
                                "operator": "CONTAINS_TOKEN",
                                "value": token,
                            }
                        ]
                    }
                ],
                properties=_NOTE_PROPERTIES,
                limit=_SEARCH_PAGE,
                after=after,
            )
            page = self._call(self._notes_search.do_search, request, what="note search")
            out += page.results or []
            nxt = page.paging.next.after if page.paging and page.paging.next else None
            if not nxt:
                return out
            after = nxt

    def associated(self, from_type: str, ids: list[str], to_type: str) -> dict[str, list[str]]:
        """``{from id: [to ids]}`` through the v4 batch read (100 ids a call). Objects without
        associations are absent (HubSpot reports them as per-input errors in a 207)."""
        out: dict[str, list[str]] = {}
        for i in range(0, len(ids), 100):
            request = BatchInputPublicFetchAssociationsBatchRequest(
                inputs=[PublicFetchAssociationsBatchRequest(id=x) for x in ids[i : i + 100]]
            )
            page = self._call(
                self._association_batches.get_page, from_type, to_type, request, what="associations"
            )
            for row in page.results or []:
                out[str(row._from.id)] = [str(to.to_object_id) for to in row.to or []]
        return out

    def audit_log(self, workflow_id: str) -> list[dict[str, Any]]:
        """The audit notes one workflow wrote, oldest first, in the vendor-neutral keys
        ``{"id", "action", "outcome", "case_id", "account_id", "text"}`` (ids from the note's
        associations to its ticket and company).

        Search finds the workflow's notes the index holds: a ``CONTAINS_TOKEN`` search for the
        workflow ID on ``hs_note_body`` (each note's text has a ``workflow: <id> (run <run>)``
        line, the ID standing alone between spaces), filtered exactly on that line, since how
        HubSpot tokenizes ``:`` in a token is not documented. The index lags writes by seconds,
        so the notes found only point the way: every note on their companies and tickets is then
        read through the associations and by ID (the CRM store, current), which brings in the
        workflow's newest notes too. When search finds nothing yet, it is asked once more after
        :data:`INDEX_LAG_S`. A read helper for the demo and tests, not a hot path.
        """
        hits = self._workflow_notes(self.search_notes(html.escape(workflow_id)), workflow_id)
        if not hits:
            time.sleep(INDEX_LAG_S)
            hits = self._workflow_notes(self.search_notes(html.escape(workflow_id)), workflow_id)
        if not hits:
            return []
        ids = list(hits)
        companies = self.associated("notes", ids, "companies")
        tickets = self.associated("notes", ids, "tickets")
        anchors = {("companies", c) for found in companies.values() for c in found}
        anchors |= {("tickets", t) for found in tickets.values() for t in found}
        on_anchors = {
            n for anchor in sorted(anchors) for n in self._associated_ids(*anchor, "notes")
        }
        fresh = [n for n in on_anchors if n not in hits]
        if fresh:
            rows = self._batch_read(
                self._note_batches, NoteBatchRead, fresh, _NOTE_PROPERTIES, "notes read"
            )
            hits.update(self._workflow_notes(rows, workflow_id))
            ids = list(hits)
            companies = self.associated("notes", ids, "companies")
            tickets = self.associated("notes", ids, "tickets")
        out = sorted(hits.values(), key=lambda r: (r.pop("_at"), r.pop("_n")))
        for row in out:
            row["account_id"] = next(iter(companies.get(row["id"], [])), None)
            row["case_id"] = next(iter(tickets.get(row["id"], [])), None)
        return out

    @staticmethod
    def _workflow_notes(notes: Iterable[Any], workflow_id: str) -> dict[str, dict[str, Any]]:
        """Of these notes, those whose text names ``workflow_id`` on its workflow line."""
        out: dict[str, dict[str, Any]] = {}
        for note in notes:
            props = note.properties or {}
            text = note_text(props.get("hs_note_body"))
            lines = text.split("\n")
            if not any(
                (m := _WORKFLOW_LINE.match(line)) and m["id"] == workflow_id for line in lines
            ):
                continue
            head = _HEADLINE.match(lines[0]) if lines else None
            out[str(note.id)] = {
                "id": str(note.id),
                "action": head["action"] if head else None,
                "outcome": head["outcome"] if head else None,
                "case_id": None,
                "account_id": None,
                "text": text,
                "_at": props.get("hs_timestamp") or "",
                "_n": int(note.id) if str(note.id).isdigit() else 0,
            }
        return out

    # --- CrmSystem ------------------------------------------------------------------------------------

    def _company_by_customer(
        self, billing: str, customer_id: str, associations: list[str] | None = None
    ) -> Any | None:
        """The company whose unique ``billing_customer_id`` is ``customer_id`` — a read by unique
        value (one GET, consistent at once), not a search (its index lags, and it is limited to
        a few requests per second) — if it is linked to ``billing``."""
        company = self._by_unique(
            self._companies,
            "billing_customer_id",
            customer_id,
            _COMPANY_PROPERTIES,
            "company",
            associations,
        )
        if company is None or (company.properties or {}).get("billing_platform") != billing:
            return None
        return company

    def _by_unique(
        self,
        api: Any,
        id_property: str,
        value: str,
        properties: list[str],
        what: str,
        associations: list[str] | None = None,
    ) -> Any | None:
        extra = {"associations": associations} if associations else {}
        try:
            return self._call(
                api.get_by_id,
                value,
                id_property=id_property,
                properties=properties,
                what=what,
                **extra,
            )
        except NotFound:
            return None

    def find_account(self, billing: str, customer_id: str) -> CrmAccount | None:
        company = self._company_by_customer(billing, customer_id)
        return _account(company) if company is not None else None

    def _cases(self, ticket_ids: list[str], limit: int) -> list[CaseSummary]:
        """Open tickets among ``ticket_ids``, newest first: one batch read per 100."""
        rows = self._batch_read(
            self._ticket_batches, TicketBatchRead, ticket_ids, _TICKET_PROPERTIES, "tickets"
        )
        out = []
        for ticket in rows:
            props = ticket.properties or {}
            if props.get("hs_pipeline_stage") == "4":  # the default pipeline's "Closed"
                continue
            out.append(
                CaseSummary(
                    id=str(ticket.id),
                    subject=props.get("subject") or "",
                    description=props.get("content") or "",
                    opened_at=_datetime(props.get("createdate")) or ticket.created_at,
                )
            )
        out.sort(key=lambda c: (c.opened_at, len(c.id), c.id), reverse=True)
        return out[:limit]

    def open_cases(self, account_id: str, limit: int = 5) -> list[CaseSummary]:
        """Two requests: the company's tickets (v4 associations), then one batch read of them."""
        ticket_ids = self._associated_ids("companies", str(account_id), "tickets")
        return self._cases(ticket_ids, limit) if ticket_ids else []

    def find_account_with_cases(
        self, billing: str, customer_id: str, limit: int = 5
    ) -> tuple[CrmAccount | None, list[CaseSummary]]:
        """One request when the account has no tickets, two when it has: the company read by its
        unique ``billing_customer_id`` with its ticket associations (a v3 read carries them), then
        one batch read of those tickets. HubSpot has no join of a record with its associated
        records' properties, so two is the floor with tickets."""
        company = self._company_by_customer(billing, customer_id, associations=["tickets"])
        if company is None:
            return None, []
        ticket_ids = _assoc_ids(company.associations, ["tickets"])
        return _account(company), (self._cases(ticket_ids, limit) if ticket_ids else [])

    def upsert_case(self, draft: CaseDraft, audit: AuditEntry | None = None) -> CaseRef:
        """The ticket (unique ``revbridge_key``), then — with ``audit`` — its audit note: two
        requests, since HubSpot has no composite API that creates two object types at once.
        A new ticket has no notes, so its audit note is created without a look-up; a ticket
        found by its key comes back from that read with its note associations, so a retry
        finds the note an earlier attempt wrote (one batch read) before writing one."""
        properties = {
            "subject": draft.subject,
            "content": fit_text(draft.description),
            "hs_ticket_priority": _PRIORITY[draft.priority],
            "hs_pipeline": "0",  # the default support pipeline
            "hs_pipeline_stage": "1",  # New
        }
        associations = [_assoc(draft.account_id, TICKET_TO_COMPANY)] if draft.account_id else []
        ticket, created = self._create_once(
            self._tickets,
            TicketCreate,
            draft.key,
            properties,
            associations,
            ["subject", KEY_PROPERTY],
            what="ticket",
            read_associations=["notes"] if audit is not None else None,
        )
        if audit is not None:
            entry = audit if audit.case_id else audit.model_copy(update={"case_id": str(ticket.id)})
            self._write_audit(
                entry,
                known_ids=None if created else _assoc_ids(ticket.associations, ["notes"]),
                anchor_is_new=created,
            )
        return CaseRef(id=ticket.id, number=ticket.id, created=created)

    def upsert_task(self, draft: TaskDraft, audit: AuditEntry | None = None) -> str:
        """The task once per ``draft.key`` (looked up through its company), then — with
        ``audit`` — its audit note. HubSpot has no request that creates two object types, so
        this is two creates; but a task this call created cannot have an audit note from an
        earlier attempt (that attempt never got past the task), so the note's look-up is
        skipped then."""
        properties = {
            "hs_task_subject": draft.subject,
            "hs_task_body": note_html(draft.description),
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH" if draft.high_priority else "MEDIUM",
            "hs_timestamp": _epoch_ms(draft.due or datetime.now(UTC)),
        }
        if draft.owner_id:
            properties["hubspot_owner_id"] = draft.owner_id  # the company owner
        associations = [_assoc(draft.account_id, TASK_TO_COMPANY)] if draft.account_id else []
        anchor = ("companies", draft.account_id) if draft.account_id else None
        task_id, created = self._engagement_once(
            "tasks", draft.key, properties, associations, anchor
        )
        if audit is not None:
            self._write_audit(audit, anchor_is_new=created)
        return task_id

    def write_audit(self, entry: AuditEntry) -> str:
        return self._write_audit(entry)

    def write_audits(self, entries: list[AuditEntry]) -> list[str]:
        """Several audit notes, each once per its ``key``, in ONE request on an activity's first
        attempt: ``POST /crm/v3/objects/notes/batch/create`` with each note's associations
        (a batch fails whole: no half of it is written). The keys are the calling activity's
        alone, so its first attempt creates without looking; a retry (an earlier attempt may
        have committed and timed out) first finds the notes carrying each key's marker on their
        anchors (by association, then by ID; search where there is no anchor) and creates only
        the missing ones. Returns the notes' IDs in ``entries``' order."""
        notes = [(e.key, *self._audit_note(e)) for e in entries]
        found: dict[str, str] = {}
        if not limits.first_attempt():
            anchors = sorted({n[3] for n in notes if n[3] is not None})
            ids = [i for anchor in anchors for i in self._associated_ids(*anchor, "notes")]
            rows = (
                self._batch_read(
                    self._note_batches,
                    NoteBatchRead,
                    sorted(set(ids)),
                    ["hs_note_body"],
                    "notes read",
                )
                if ids
                else []
            )
            bodies = [(str(r.id), (r.properties or {}).get("hs_note_body") or "") for r in rows]
            for key, _, _, anchor in notes:
                ref = _REF + engagement_ref(key)
                hit = next((i for i, body in bodies if body.endswith(ref)), None)
                if hit is None and anchor is None:
                    hit = self._search_ref("notes", engagement_ref(key))
                    if hit is None and limits.retry_attempt():
                        time.sleep(INDEX_LAG_S)  # an earlier attempt's write is indexed by now
                        hit = self._search_ref("notes", engagement_ref(key))
                if hit is not None:
                    found[key] = hit
        todo = [n for n in notes if n[0] not in found]
        if todo:
            body = NoteBatchCreate(
                inputs=[{"properties": p, "associations": a} for _, p, a, _ in todo]
            )
            page = self._call(self._note_batches.create, body, what="notes batch create")
            created = {
                (r.properties or {}).get("hs_note_body", "").rsplit(_REF, 1)[-1]: str(r.id)
                for r in page.results or []
            }
            for key, *_ in todo:
                note_id = created.get(engagement_ref(key))
                if note_id is None:
                    raise ConnectorError(
                        VENDOR, ErrorKind.RETRYABLE, "notes batch create: a note is missing"
                    )
                found[key] = note_id
        return [found[e.key] for e in entries]

    def _audit_note(
        self, entry: AuditEntry
    ) -> tuple[dict[str, str], list[dict[str, Any]], tuple[str, str] | None]:
        """An audit note's properties (its body ending in the key's marker), associations and
        the anchor it is looked up by: the ticket when there is one (a ticket has few notes; a
        company may have many), else the company."""
        properties = {
            "hs_note_body": fit_body(
                note_html(entry.as_text()), "<br>" + _REF + engagement_ref(entry.key)
            ),
            "hs_timestamp": _epoch_ms(entry.at),
        }
        associations = []
        if entry.account_id:
            associations.append(_assoc(entry.account_id, NOTE_TO_COMPANY))
        if entry.case_id:
            associations.append(_assoc(entry.case_id, NOTE_TO_TICKET))
        anchor = (
            ("tickets", entry.case_id)
            if entry.case_id
            else ("companies", entry.account_id)
            if entry.account_id
            else None
        )
        return properties, associations, anchor

    def _write_audit(
        self, entry: AuditEntry, known_ids: list[str] | None = None, anchor_is_new: bool = False
    ) -> str:
        """The audit note on the ticket and/or company, once per ``entry.key``; the ticket is
        the anchor it is looked up by when there is one (a ticket has few notes; a company may
        have many)."""
        properties = {
            "hs_note_body": note_html(entry.as_text()),
            "hs_timestamp": _epoch_ms(entry.at),
        }
        _, associations, anchor = self._audit_note(entry)
        if known_ids is None and limits.first_attempt():
            # an audit entry's key is written by the one activity that records the entry, and
            # this is that activity's first attempt: no earlier attempt can have written it, so
            # the look-up on the anchor (its notes by association, then by ID: two requests)
            # is skipped (issue 15), as Chargebee's notes skip theirs. A retry, or a call
            # outside an activity, looks first.
            anchor_is_new = True
        note_id, _ = self._engagement_once(
            "notes",
            entry.key,
            properties,
            associations,
            anchor,
            known_ids=known_ids,
            anchor_is_new=anchor_is_new,
        )
        return note_id

    # --- quote-to-cash --------------------------------------------------------------------------------

    def _batch_read(self, api: Any, model: type, ids: list[str], properties: list[str], what: str):
        """Objects by ID through ``batch/read`` (100 a call), in no particular order. IDs gone
        meanwhile are left out (HubSpot reports them as errors of a 207)."""
        out: list[Any] = []
        for i in range(0, len(ids), _BATCH):
            body = model(inputs=[{"id": x} for x in ids[i : i + _BATCH]], properties=properties)
            page = self._call(api.read, body, what=what)
            out += page.results or []
        return out

    def get_opportunity(self, opportunity_id: str) -> Opportunity:
        deal = self._call(
            self._deals.get_by_id,
            opportunity_id,
            properties=_DEAL_PROPERTIES,
            associations=["companies", "contacts", "line_items"],
            what="deal",
        )
        props = deal.properties or {}
        assoc = deal.associations or {}
        company_ids = _assoc_ids(assoc, ["companies"], primary="deal_to_company")
        account = self.get_account(company_ids[0]) if company_ids else None
        contact_ids = _assoc_ids(assoc, ["contacts"])
        contacts = [
            Contact(
                id=str(c.id),
                name=" ".join(
                    filter(None, [(c.properties or {}).get(k) for k in ("firstname", "lastname")])
                ),
                email=(c.properties or {}).get("email") or None,
            )
            for c in sorted(
                self._batch_read(
                    self._contact_batches,
                    ContactBatchRead,
                    contact_ids,
                    ["firstname", "lastname", "email"],
                    "contacts",
                ),
                key=lambda c: contact_ids.index(str(c.id)),
            )
        ]
        line_ids = _assoc_ids(assoc, ["line items", "line_items"])
        line_rows = sorted(
            self._batch_read(
                self._line_item_batches, LineItemBatchRead, line_ids, _LINE_PROPERTIES, "line items"
            ),
            key=lambda r: line_ids.index(str(r.id)),
        )
        product_ids = list(
            dict.fromkeys(p for r in line_rows if (p := (r.properties or {}).get("hs_product_id")))
        )
        products = {
            str(p.id): p.properties or {}
            for p in self._batch_read(
                self._product_batches,
                ProductBatchRead,
                product_ids,
                ["hs_sku", "price", "name"],
                "products",
            )
        }
        lines = [_line(r.id, r.properties or {}, products) for r in line_rows]
        line_props = [r.properties or {} for r in line_rows]
        stage = props.get("dealstage") or ""
        close_date = _date(props.get("closedate"))
        term = int(_number(props.get("term_months"))) or next(
            (t for p in line_props if (t := _term_months(p.get("hs_recurring_billing_period")))),
            12,
        )
        frequency = next(
            (f for p in line_props if (f := p.get("recurringbillingfrequency"))), "monthly"
        )
        return Opportunity(
            id=str(deal.id),
            name=props.get("dealname") or "",
            stage=stage,
            won=stage == CLOSED_WON or props.get("hs_is_closed_won") == "true",
            account=account,
            contacts=contacts,
            lines=lines,
            amount=_cents(props.get("amount")) or 0,
            currency=props.get("deal_currency_code") or "USD",
            close_date=close_date,
            start_date=_date(props.get("start_date")),
            term_months=term,
            billing_period="year" if frequency == "annually" else "month",
            payment_terms=props.get("payment_terms") or None,
            billing_subscription_id=props.get("billing_subscription_id") or None,
        )

    def won_opportunities(self, since: datetime, limit: int = 200) -> list[str]:
        """CRM search: ``dealstage EQ closedwon AND hs_lastmodifieddate GTE since``, oldest
        modification first. The search index lags writes by seconds, so a catch-up run should
        look back a little further than its last run."""
        out: list[str] = []
        after: str | None = None
        while len(out) < limit:
            offset = int(after or 0)
            size = min(_SEARCH_MAX_PAGE, limit - len(out), _SEARCH_MAX_RESULTS - offset)
            if size <= 0:
                break
            request = DealSearchRequest(
                filter_groups=[
                    DealFilterGroup(
                        filters=[
                            DealFilter(property_name="dealstage", operator="EQ", value=CLOSED_WON),
                            DealFilter(
                                property_name="hs_lastmodifieddate",
                                operator="GTE",
                                value=_epoch_ms(since),
                            ),
                        ]
                    )
                ],
                sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
                properties=["dealstage", "hs_lastmodifieddate"],
                limit=size,
                after=after,
            )
            page = self._call(self._deals_search.do_search, request, what="deal search")
            out += [str(d.id) for d in page.results or []]
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                break
        return out[:limit]

    def write_billing_link(self, link: BillingLink) -> None:
        """Two PATCHes (company, then deal); an empty string clears a property in HubSpot."""
        linked = link.customer_id is not None
        mrr = _money(link.mrr) if link.subscription_id else ""
        company = {
            "billing_customer_id": link.customer_id or "",
            "billing_platform": link.billing if linked else "",
            "billing_subscription_id": link.subscription_id or "",
            "billing_status": link.status[:TEXT_MAX],
            "mrr": mrr,
        }
        self._call(
            self._companies.update,
            link.account_id,
            CompanyUpdate(properties=company),
            what="company",
        )
        deal = {
            "billing_subscription_id": link.subscription_id or "",
            "billing_status": link.status[:TEXT_MAX],
            "mrr": mrr,
        }
        self._call(
            self._deals.update, link.opportunity_id, DealUpdate(properties=deal), what="deal"
        )

    # --- churn and support context --------------------------------------------------------------------

    def get_account(self, account_id: str) -> CrmAccount:
        company = self._call(
            self._companies.get_by_id, account_id, properties=_COMPANY_PROPERTIES, what="company"
        )
        return _account(company)

    def write_churn_score(self, record: ChurnScoreRecord) -> None:
        self._call(
            self._companies.update,
            record.account_id,
            CompanyUpdate(properties=_churn_properties(record)),
            what="company",
        )

    def write_churn_scores(self, records: list[ChurnScoreRecord]) -> dict[str, str]:
        """A page of scores in one batch update per 100 companies (the sweep's one write per
        page). Each input carries its company ID as ``objectWriteTraceId``, so a company HubSpot
        refuses (gone, or a bad value) is reported on its own in a 207 and the others are
        written. Field sets: a retry is idempotent. Returns the companies that failed, with
        HubSpot's error category."""
        failed: dict[str, str] = {}
        for start in range(0, len(records), _BATCH):
            chunk = records[start : start + _BATCH]
            body = CompanyBatchUpdate(
                inputs=[
                    CompanyBatchInput(
                        id=r.account_id,
                        object_write_trace_id=r.account_id,
                        properties=_churn_properties(r),
                    )
                    for r in chunk
                ]
            )
            result = self._call(self._company_batches.update, body, what="churn scores")
            for error in getattr(result, "errors", None) or []:
                context = error.context or {}
                category = str(error.category or "UNKNOWN")
                for account in [*context.get("objectWriteTraceId", []), *context.get("ids", [])]:
                    failed[str(account)] = category
        return failed

    def find_accounts_with_cases(
        self, billing: str, customer_ids: list[str], limit: int = 5
    ) -> dict[str, tuple[CrmAccount, list[CaseSummary]]]:
        """A page of customers at once (the churn sweep), keyed by billing customer ID; customers
        with no company are absent. Per 100 customers: one batch read of companies by their
        unique ``billing_customer_id``, one v4 batch read of their tickets, and one batch read
        per 100 of those tickets — three requests where one customer at a time took two."""
        out: dict[str, tuple[CrmAccount, list[CaseSummary]]] = {}
        ids = list(dict.fromkeys(customer_ids))
        for start in range(0, len(ids), _BATCH):
            body = CompanyBatchRead(
                inputs=[{"id": c} for c in ids[start : start + _BATCH]],
                properties=[*_COMPANY_PROPERTIES, "churn_risk", "churn_level"],
                id_property="billing_customer_id",
            )
            page = self._call(self._company_batches.read, body, what="companies")
            companies = [
                c
                for c in page.results or []
                if (c.properties or {}).get("billing_platform") == billing
                and (c.properties or {}).get("billing_customer_id")
            ]
            if not companies:
                continue
            tickets_of = self.associated("companies", [str(c.id) for c in companies], "tickets")
            every = [t for found in tickets_of.values() for t in found]
            cases: dict[str, CaseSummary] = {
                c.id: c for c in (self._cases(every, len(every)) if every else [])
            }
            for company in companies:
                mine = [cases[t] for t in tickets_of.get(str(company.id), []) if t in cases]
                mine.sort(key=lambda c: (c.opened_at, len(c.id), c.id), reverse=True)
                account = _scored_account(company)
                out[account.billing_customer_id or ""] = (account, mine[:limit])
        return out

    # --- preflight (revbridge doctor) -----------------------------------------------------------------

    def preflight(self) -> list[Check]:
        """What this portal lacks for RevBridge, one :class:`Check` each: the token and its
        scopes (HubSpot's private-app token introspection), then every property RevBridge reads
        or writes — present, of the right type, and unique where idempotency depends on it."""
        checks = [*self._scope_checks()]
        by_type: dict[str, list[tuple[str, str, bool]]] = {}
        for otype, name, kind, unique in REQUIRED_PROPERTIES:
            by_type.setdefault(otype, []).append((name, kind, unique))
        for otype, wanted in by_type.items():
            try:
                page = self._call(self._properties.get_all, otype, what=f"{otype} properties")
            except ConnectorError as exc:
                checks.append(
                    Check(
                        system=VENDOR,
                        name=f"properties:{otype}",
                        status=CheckStatus.FAIL,
                        detail=f"could not list {otype} properties ({exc.status or exc.kind})",
                        fix=f"grant the private app crm.schemas.{otype}.read",
                    )
                )
                continue
            have = {p.name: p for p in page.results or [] if not getattr(p, "archived", False)}
            checks += [_property_check(otype, n, k, u, have.get(n)) for n, k, u in wanted]
        return checks

    def _scope_checks(self) -> list[Check]:
        token = self._settings.access_token.get_secret_value()
        base = (self._settings.api_url or "https://api.hubapi.com").rstrip("/")
        try:
            limits.pace(VENDOR)
            resp = requests.post(
                base + "/oauth/v2/private-apps/get/access-token-info",
                json={"tokenKey": token},
                timeout=self._timeout_s,
            )
        except requests.RequestException as exc:
            return [
                Check(
                    system=VENDOR,
                    name="token",
                    status=CheckStatus.FAIL,
                    detail=f"HubSpot unreachable ({type(exc).__name__})",
                    fix="check HUBSPOT_API_URL and the network path to HubSpot",
                )
            ]
        if resp.status_code in (400, 401, 403, 404):
            return [
                Check(
                    system=VENDOR,
                    name="token",
                    status=CheckStatus.FAIL,
                    detail=f"HubSpot does not recognise the access token ({resp.status_code})",
                    fix="set HUBSPOT_ACCESS_TOKEN to the private app's current access token",
                )
            ]
        if resp.status_code != 200:
            return [
                Check(
                    system=VENDOR,
                    name="token",
                    status=CheckStatus.SKIP,
                    detail=f"token introspection answered {resp.status_code}; try again",
                )
            ]
        info = resp.json()
        granted = set(info.get("scopes") or [])
        checks = [
            Check(
                system=VENDOR,
                name="token",
                status=CheckStatus.OK,
                detail=f"private app {info.get('appId')} on portal {info.get('hubId')}",
            )
        ]
        for scope, why in REQUIRED_SCOPES.items():
            ok = scope in granted
            checks.append(
                Check(
                    system=VENDOR,
                    name=f"scope:{scope}",
                    status=CheckStatus.OK if ok else CheckStatus.FAIL,
                    detail=why if ok else f"missing: needed to {why}",
                    fix=""
                    if ok
                    else f"add the {scope} scope to the private app "
                    "(Settings > Integrations > Private apps > Scopes)",
                )
            )
        return checks

    def _ticket(self, case_id: str) -> Any:
        return self._call(
            self._tickets.get_by_id,
            case_id,
            properties=["subject", "hs_pipeline", "hs_pipeline_stage", "createdate"],
            associations=["companies"],
            what="ticket",
        )

    def get_case(self, case_id: str) -> CaseDetail:
        ticket = self._ticket(case_id)
        props = ticket.properties or {}
        stage = props.get("hs_pipeline_stage") or ""
        in_default = (props.get("hs_pipeline") or "0") == "0"
        companies = _assoc_ids(ticket.associations, ["companies"], primary="ticket_to_company")
        return CaseDetail(
            id=str(ticket.id),
            number=str(ticket.id),
            account_id=companies[0] if companies else None,
            subject=props.get("subject") or "",
            status=TICKET_STAGES.get(stage, stage) if in_default else stage,
            opened_at=_datetime(props.get("createdate")) or ticket.created_at,
        )

    def annotate_case(self, case_id: str, text: str, idempotency_key: str) -> str:
        """A note on the ticket (and its company, so the account timeline shows it too), created
        once per key. The ticket is read first: a missing one is NotFound, not a 400 about an
        invalid association."""
        ticket = self._ticket(case_id)
        companies = _assoc_ids(ticket.associations, ["companies"], primary="ticket_to_company")
        associations = [_assoc(str(ticket.id), NOTE_TO_TICKET)]
        if companies:
            associations.append(_assoc(companies[0], NOTE_TO_COMPANY))
        properties = {
            "hs_note_body": note_html(text),
            "hs_timestamp": _epoch_ms(datetime.now(UTC)),
        }
        note_id, _ = self._engagement_once(
            "notes", idempotency_key, properties, associations, ("tickets", str(ticket.id))
        )
        return note_id


def _line(line_id: str, props: Mapping[str, str], products: Mapping[str, Mapping[str, str]]):
    """One line item: its SKU (else its product's), quantity, the price sold at, the product's
    price as the list price, and the discount (a percentage, or a unit discount as one)."""
    product = products.get(props.get("hs_product_id") or "", {})
    unit_price = _cents(props.get("price")) or 0
    discount = _number(props.get("hs_discount_percentage"))
    unit_discount = _cents(props.get("discount")) or 0
    if not discount and unit_discount and unit_price:
        discount = round(unit_discount * 100 / unit_price, 4)
    return OpportunityLine(
        id=str(line_id),
        product_code=props.get("hs_sku") or product.get("hs_sku") or "",
        name=props.get("name") or product.get("name") or "",
        quantity=int(_number(props.get("quantity"), 1)),
        unit_price=unit_price,
        list_price=_cents(product.get("price")),
        discount_percent=discount,
    )


_DEFAULT_SEARCH_PACER = limits.Pacer(limits.search_limit(VENDOR), DEFAULT_SEARCH_RATE_PER_S)


def _churn_properties(record: ChurnScoreRecord) -> dict[str, str]:
    return {
        "churn_risk": str(record.score),
        "churn_level": record.level,
        "churn_reasons": fit_text("\n".join(record.reasons)),
        "churn_narrative": fit_text(record.narrative),
        "churn_scored_at": _epoch_ms(record.scored_at),
    }


def _property_check(otype: str, name: str, kind: str, unique: bool, found: Any) -> Check:
    label = f"property:{otype}.{name}"
    spec = f"{name} ({kind}{', unique values' if unique else ''}) on {otype}"
    if found is None:
        return Check(
            system=VENDOR,
            name=label,
            status=CheckStatus.FAIL,
            detail="missing",
            fix=f"create property {spec}",
        )
    if found.type != kind:
        return Check(
            system=VENDOR,
            name=label,
            status=CheckStatus.FAIL,
            detail=f"is {found.type}, RevBridge writes {kind}",
            fix=f"archive {name} on {otype} and create property {spec}",
        )
    if unique and not found.has_unique_value:
        return Check(
            system=VENDOR,
            name=label,
            status=CheckStatus.FAIL,
            detail="does not require unique values (a retried write could duplicate a record)",
            fix=f"create property {spec} (uniqueness cannot be added to an existing property)",
        )
    return Check(system=VENDOR, name=label, status=CheckStatus.OK, detail=kind)


def _observe_allowance(fn: Any) -> None:
    """Read the daily-allowance headers of the response the API group's client just got (the
    generated client keeps only the last one; a concurrent call may have replaced it, which only
    makes the figure a moment fresher)."""
    response = getattr(
        getattr(getattr(fn, "__self__", None), "api_client", None), "last_response", None
    )
    getheaders = getattr(response, "getheaders", None)
    if getheaders is not None:
        limits.observe_headers(VENDOR, getheaders())


def _error_body(exc: Any) -> dict[str, Any]:
    raw = getattr(exc, "body", None)
    try:
        body = json.loads(raw) if raw else {}
    except (ValueError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}


def _header(exc: Any, name: str) -> str | None:
    headers = getattr(exc, "headers", None) or {}
    try:
        return headers.get(name)  # urllib3's HTTPHeaderDict: case-insensitive
    except AttributeError:
        return None


def _retry_after(exc: Any, body: dict[str, Any]) -> float:
    raw = _header(exc, "Retry-After")
    try:
        if raw is not None and float(raw) >= 0:
            return float(raw)
    except ValueError:
        pass
    return DAILY_RETRY_AFTER_S if body.get("policyName") == "DAILY" else DEFAULT_RETRY_AFTER_S


def _classify(exc: Any, what: str) -> ConnectorError:
    status = getattr(exc, "status", None) or 0
    body = _error_body(exc)
    code = body.get("category") or body.get("errorType")
    if status == 404:
        return NotFound(VENDOR, what)
    if status == 429:
        return ConnectorError(
            VENDOR,
            ErrorKind.RATE_LIMITED,
            f"{what}: rate limited ({body.get('policyName') or 'unknown policy'})",
            status=status,
            code=body.get("policyName") or code,
            retry_after=_retry_after(exc, body),
        )
    if status == 0 or status >= 500:  # status 0: TLS failure inside the client
        return ConnectorError(
            VENDOR,
            ErrorKind.RETRYABLE,
            f"{what}: {status or 'ssl error'}",
            status=status,
            code=code,
        )
    message = str(body.get("message") or "")[:200]
    return ConnectorError(
        VENDOR,
        ErrorKind.PERMANENT,
        f"{what}: {status} {code or ''} {message}".strip(),
        status=status,
        code=code,
    )


def _scored_account(company: Any) -> ScoredAccount:
    """A company with the churn score the portal stores on it (the sweep's bulk read)."""
    props = company.properties or {}
    risk = props.get("churn_risk")
    try:
        churn_risk = None if risk in (None, "") else round(float(risk))
    except ValueError:
        churn_risk = None  # not a number: written again
    return ScoredAccount(
        **_account(company).model_dump(),
        churn_risk=churn_risk,
        churn_level=props.get("churn_level") or None,
    )
