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

Idempotent creates. Tickets and notes carry the unique custom property ``revbridge_key``. We
create (with the associations in the same request, so they commit together), and when HubSpot
refuses because the key is taken — a 409 unique-value conflict: an earlier attempt whose answer we
never saw, or a concurrent one, won — we read the record by that key
(``GET .../{key}?idProperty=revbridge_key``: a read by unique value, not the search index, which
lags writes by seconds) and report ``created=False``. We do not use batch upsert: on a retry it
would overwrite fields a person may already have changed (stage, priority), and it cannot carry
associations.

Quote-to-cash reads a deal with its associations in one GET (a v3 read names its line items
``"line items"``, with a space), then batch-reads the line items, their products (list price, SKU
fallback) and the contacts. Money is a decimal string in HubSpot and minor units here. Field sets
(billing link, churn score) are plain PATCHes: idempotent by nature; an empty string clears.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import hubspot
import urllib3
from hubspot.crm.associations.v4 import (
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.associations.v4.exceptions import ApiException as AssociationsApiException
from hubspot.crm.companies import Filter, FilterGroup, PublicObjectSearchRequest
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
from hubspot.crm.objects.notes import PublicObjectSearchRequest as NoteSearchRequest
from hubspot.crm.objects.notes import SimplePublicObjectInputForCreate as NoteCreate
from hubspot.crm.objects.notes.exceptions import ApiException as NotesApiException
from hubspot.crm.objects.tasks import SimplePublicObjectInputForCreate as TaskCreate
from hubspot.crm.objects.tasks.exceptions import ApiException as TasksApiException
from hubspot.crm.products import BatchReadInputSimplePublicObjectId as ProductBatchRead
from hubspot.crm.products.exceptions import ApiException as ProductsApiException
from hubspot.crm.tickets import SimplePublicObjectInputForCreate as TicketCreate
from hubspot.crm.tickets.exceptions import ApiException as TicketsApiException

from connectors import limits
from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.timeouts import call_timeout
from domain.audit import AuditEntry
from domain.models import (
    CaseDraft,
    CasePriority,
    CaseRef,
    CaseSummary,
    CrmAccount,
    CustomerTier,
    TaskDraft,
)
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
)
_NOTE_PROPERTIES = ["hs_note_body", "hs_timestamp", KEY_PROPERTY]
_HEADLINE = re.compile(r"^\[RevBridge\] (?P<use_case>[^:]*): (?P<action>.*?) → (?P<outcome>.*)$")
_WORKFLOW_LINE = re.compile(r"^workflow: (?P<id>\S+) \(run ")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_SEARCH_PAGE = 100


def _assoc(to_id: str, type_id: int) -> dict[str, Any]:
    return {
        "to": {"id": to_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    }


def note_html(text: str) -> str:
    """Plain text as a note body: HTML-escaped (customer text is data), newlines as ``<br>``."""
    return html.escape(text).replace("\n", "<br>")


def note_text(body: str | None) -> str:
    """The plain text back from a note body (``<br>`` → newline, other tags dropped)."""
    return html.unescape(_TAG.sub("", _BR.sub("\n", body or "")))


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
        self._deals = crm.deals.basic_api
        self._deals_search = crm.deals.search_api
        self._line_item_batches = crm.line_items.batch_api
        self._product_batches = crm.products.batch_api
        self._contact_batches = crm.contacts.batch_api
        self._tickets = crm.tickets.basic_api
        self._notes = crm.objects.notes.basic_api
        self._tasks = crm.objects.tasks.basic_api
        self._notes_search = crm.objects.notes.search_api
        self._association_batches = crm.associations.v4.batch_api

    # --- plumbing -----------------------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
        if getattr(fn, "__name__", "") == "do_search":
            limits.pace(limits.search_limit(VENDOR))  # CRM search: a few per second per account
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

    def _by_key(self, api: Any, key: str, properties: list[str], what: str) -> Any | None:
        try:
            return self._call(
                api.get_by_id, key, id_property=KEY_PROPERTY, properties=properties, what=what
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
            found = self._by_key(api, key, read_properties, what)
            if found is None:
                raise
            return found, False

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

        Found with a ``CONTAINS_TOKEN`` search for the workflow ID on ``hs_note_body`` (each note's
        text has a ``workflow: <id> (run <run>)`` line, the ID standing alone between spaces), then
        filtered exactly on that line, since how HubSpot tokenizes ``:`` in a token is not
        documented. Search lags writes by a few seconds on the real service.
        """
        rows = []
        for note in self.search_notes(html.escape(workflow_id)):
            text = note_text(note.properties.get("hs_note_body"))
            lines = text.split("\n")
            if not any(
                (m := _WORKFLOW_LINE.match(line)) and m["id"] == workflow_id for line in lines
            ):
                continue
            head = _HEADLINE.match(lines[0]) if lines else None
            rows.append(
                (
                    note.properties.get("hs_timestamp") or "",
                    int(note.id) if str(note.id).isdigit() else 0,
                    {
                        "id": note.id,
                        "action": head["action"] if head else None,
                        "outcome": head["outcome"] if head else None,
                        "case_id": None,
                        "account_id": None,
                        "text": text,
                    },
                )
            )
        rows.sort(key=lambda r: (r[0], r[1]))
        out = [r[2] for r in rows]
        if out:
            ids = [row["id"] for row in out]
            companies = self.associated("notes", ids, "companies")
            tickets = self.associated("notes", ids, "tickets")
            for row in out:
                row["account_id"] = next(iter(companies.get(row["id"], [])), None)
                row["case_id"] = next(iter(tickets.get(row["id"], [])), None)
        return out

    # --- CrmSystem ------------------------------------------------------------------------------------

    def find_account(self, billing: str, customer_id: str) -> CrmAccount | None:
        request = PublicObjectSearchRequest(
            filter_groups=[
                FilterGroup(
                    filters=[
                        Filter(
                            property_name="billing_customer_id", operator="EQ", value=customer_id
                        ),
                        Filter(property_name="billing_platform", operator="EQ", value=billing),
                    ]
                )
            ],
            properties=_COMPANY_PROPERTIES,
            limit=1,
        )
        page = self._call(self._companies_search.do_search, request, what="company search")
        if not page.results:
            return None
        return _account(page.results[0])

    def open_cases(self, account_id: str, limit: int = 5) -> list[CaseSummary]:
        ticket_ids = self.associated("companies", [account_id], "tickets").get(str(account_id), [])
        out = []
        for ticket_id in sorted(
            ticket_ids, key=lambda t: (len(t), t), reverse=True
        ):  # newest first
            ticket = self._call(
                self._tickets.get_by_id,
                ticket_id,
                properties=["subject", "content", "hs_pipeline_stage", "createdate"],
                what="ticket",
            )
            props = ticket.properties or {}
            if props.get("hs_pipeline_stage") == "4":  # the default pipeline's "Closed"
                continue
            out.append(
                CaseSummary(
                    id=ticket.id,
                    subject=props.get("subject") or "",
                    description=props.get("content") or "",
                    opened_at=_datetime(props.get("createdate")) or ticket.created_at,
                )
            )
            if len(out) >= limit:
                break
        return out

    def upsert_case(self, draft: CaseDraft) -> CaseRef:
        properties = {
            "subject": draft.subject,
            "content": draft.description,
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
        )
        return CaseRef(id=ticket.id, number=ticket.id, created=created)

    def upsert_task(self, draft: TaskDraft) -> str:
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
        task, _ = self._create_once(
            self._tasks,
            TaskCreate,
            draft.key,
            properties,
            associations,
            [KEY_PROPERTY],
            what="task",
        )
        return task.id

    def write_audit(self, entry: AuditEntry) -> str:
        properties = {
            "hs_note_body": note_html(entry.as_text()),
            "hs_timestamp": _epoch_ms(entry.at),
        }
        associations = []
        if entry.account_id:
            associations.append(_assoc(entry.account_id, NOTE_TO_COMPANY))
        if entry.case_id:
            associations.append(_assoc(entry.case_id, NOTE_TO_TICKET))
        note, _ = self._create_once(
            self._notes,
            NoteCreate,
            entry.key,
            properties,
            associations,
            [KEY_PROPERTY],
            what="audit note",
        )
        return note.id

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
        properties = {
            "churn_risk": str(record.score),
            "churn_level": record.level,
            "churn_reasons": "\n".join(record.reasons)[:TEXT_MAX],
            "churn_narrative": record.narrative[:TEXT_MAX],
            "churn_scored_at": _epoch_ms(record.scored_at),
        }
        self._call(
            self._companies.update,
            record.account_id,
            CompanyUpdate(properties=properties),
            what="company",
        )

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
            "hs_note_body": note_html(text)[:TEXT_MAX],
            "hs_timestamp": _epoch_ms(datetime.now(UTC)),
        }
        note, _ = self._create_once(
            self._notes,
            NoteCreate,
            idempotency_key,
            properties,
            associations,
            [KEY_PROPERTY],
            what="case note",
        )
        return note.id


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
