"""HubSpot's constants (association types, stages, property sets, limits) and the pure conversions
between HubSpot's values and ours: money strings, dates, note bodies and their exactly-once
marker, text cut to HubSpot's limit, companies as accounts, line items as opportunity lines."""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from domain.churn import ScoredAccount
from domain.models import (
    CasePriority,
    CrmAccount,
    CustomerTier,
)
from domain.records import (
    ChurnScoreRecord,
    OpportunityLine,
)

VENDOR = "hubspot"
KEY_PROPERTY = "revbridge_key"
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
_NOTE_PROPERTIES = ["hs_note_body", "hs_timestamp"]
_TICKET_PROPERTIES = ["subject", "content", "hs_pipeline_stage", "createdate"]
#: the body property of each activity type RevBridge writes, where its exactly-once marker goes
ENGAGEMENT_BODY = {"notes": "hs_note_body", "tasks": "hs_task_body"}
_REF = "RevBridge ref: "
_REF_LINE = re.compile(r"(?:<br>)*RevBridge ref: rb-[0-9a-f]{32}$")
#: how long HubSpot's search index may lag a write ("a few moments"); waited out only by a
#: retried attempt writing an activity that has no association to look it up by
INDEX_LAG_S = 3.0
#: the engagement-activity body limit: a text value holds at most 65,536 characters
_TRUNCATED = "<br>… [truncated by RevBridge: {n:,} characters in full]"
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


def _churn_properties(record: ChurnScoreRecord) -> dict[str, str]:
    return {
        "churn_risk": str(record.score),
        "churn_level": record.level,
        "churn_reasons": fit_text("\n".join(record.reasons)),
        "churn_narrative": fit_text(record.narrative),
        "churn_scored_at": _epoch_ms(record.scored_at),
    }
