"""Quote-to-cash: the workflow's input, result and query shapes (shared with the webhook service,
which starts it, and the CLI, which reads it); the catch-up's input and result; the signals a
person sends a waiting run; the product mapping (policies/products.yaml); and the pure planning
that turns a won opportunity and its billing prices into a subscription (discount, payment terms,
price overrides, MRR). No I/O: the activities read the file and the vendors.

Outcomes of a run: ``live``, ``rolled_back``, ``not_won`` (the deal is not won any more: a stale
event), ``not_found`` (the CRM has no such deal), ``already_live`` (the deal already carries a
subscription ID).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum

import yaml
from pydantic import BaseModel, ConfigDict

from domain.approvals import ApprovalTiming
from domain.models import BillingCustomer, CatchUpWindow, CrmAccount, Frozen
from domain.records import Opportunity, OpportunityLine, Price, SubscriptionLine, SubscriptionRef

WORKFLOW_TYPE = "QuoteToCashWorkflow"


class QuoteToCashInput(Frozen):
    crm: str
    billing: str
    opportunity_id: str
    #: event (the CRM's callout / webhook) | catch_up (the periodic query) | manual (the CLI)
    trigger: str = "event"
    approval: ApprovalTiming = ApprovalTiming()
    started_by: str | None = None


class QuoteToCashOutcome(StrEnum):
    LIVE = "live"
    ROLLED_BACK = "rolled_back"
    NOT_WON = "not_won"
    NOT_FOUND = "not_found"
    ALREADY_LIVE = "already_live"
    #: won before RevBridge went live (settings ``go_live``): billed already, never provisioned
    BEFORE_GO_LIVE = "before_go_live"
    #: the billing account lacks a setting RevBridge needs (``<vendor>.needs_configuration``):
    #: rolled back like any failure, but the reason is the fix, not a failure to investigate
    NEEDS_CONFIGURATION = "needs_configuration"


class QuoteToCashResult(Frozen):
    outcome: QuoteToCashOutcome
    opportunity_id: str
    customer_id: str | None = None
    subscription_id: str | None = None
    reason: str = ""
    audit_ids: list[str] = []


# --- the catch-up (workflows/q2c_catch_up.py, run by a Temporal Schedule) ----------------------------

CATCH_UP_WORKFLOW_TYPE = "QuoteToCashCatchUpWorkflow"
#: the most deals one run asks for (a 15-minute window rarely holds more than a handful)
CATCH_UP_MAX_LIMIT = 2000


class CatchUpInput(CatchUpWindow):
    """The quote-to-cash catch-up's window (won deals modified in it)."""


class CatchUpResult(Frozen):
    #: where the next run starts looking (minus the overlap)
    watermark: datetime
    since: datetime
    found: list[str] = []
    #: workflow IDs started now or already running
    running: list[str] = []
    #: workflow IDs that had already run to the end
    already_done: list[str] = []
    #: won deals closed before go-live: skipped (``revbridge link`` links them)
    before_go_live: list[str] = []
    #: the CRM returned a full page even at CATCH_UP_MAX_LIMIT: deals past it were not seen
    truncated: bool = False


# --- messages: what a person sends a waiting run, and what the run shows ----------------------------

SIGNAL_MAPPING_FIXED = "mapping_fixed"
SIGNAL_CUSTOMER_PICKED = "customer_picked"
QUERY_STATUS = "status"
#: the ``customer_picked`` answer meaning "none of these: create a new customer"
NEW_CUSTOMER = "new"


class MappingFixed(Frozen):
    """``mapping_fixed``: the product mapping (policies/products.yaml) or the billing catalogue was
    fixed; the run re-reads both."""

    by: str = ""
    note: str = ""


class CustomerPick(Frozen):
    """``customer_picked``: which of the offered candidates this deal belongs to, or ``"new"``."""

    customer_id: str
    by: str = ""


class CustomerCandidate(Frozen):
    """An existing billing customer that may be the deal's account (provider IDs, no PII)."""

    customer_id: str
    score: float
    reasons: list[str] = []


class QuoteToCashStatus(Frozen):
    """The ``status`` query: where the run stands and what it did (IDs only)."""

    stage: str
    opportunity_id: str
    account_id: str | None = None
    customer_id: str | None = None
    #: linked (the CRM or billing link) | matched by email | picked | created
    customer_how: str | None = None
    subscription_id: str | None = None
    mrr: int = 0
    currency: str = "USD"
    discount_percent: float = 0
    #: product codes the mapping (or the billing catalogue) does not cover yet, with why
    unmapped: dict[str, str] = {}
    #: existing customers a person is asked to choose between (``customer_picked``)
    candidates: list[CustomerCandidate] = []
    #: one line per governed action: "create_subscription: needs_approval → executed (bob@…)"
    actions: list[str] = []
    #: what the saga undid, newest first, and what it could not undo
    compensations: list[str] = []
    compensation_failures: list[str] = []
    #: messages that changed nothing (an unknown candidate, a pick nobody asked for)
    refused: list[str] = []
    audit_ids: list[str] = []
    outcome: str | None = None
    reason: str = ""


# --- the product mapping: CRM product code → billing price -------------------------------------------


class ProductMapping(Frozen):
    """policies/products.yaml: which billing price each CRM product code becomes, per platform
    (Chargebee: an item price ID; Stripe: a price lookup key or ID). Data, not code: a person
    fixes an unknown product by editing the file and sending ``mapping_fixed``."""

    products: dict[str, dict[str, str]] = {}

    @classmethod
    def parse(cls, text: str) -> ProductMapping:
        """From the file's YAML text (``{products: {CODE: {chargebee: …, stripe: …}}}``)."""
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError("the product mapping must be a YAML mapping with `products`")
        products = data.get("products") or {}
        return cls.model_validate(
            {
                "products": {
                    str(code): {str(k): str(v) for k, v in (refs or {}).items()}
                    for code, refs in products.items()
                }
            }
        )

    def price_for(self, product_code: str, billing: str) -> str | None:
        return (self.products.get(product_code) or {}).get(billing)


# --- planning: pure functions from the opportunity and the prices to the subscription --------------

#: payment terms every platform applies without anyone asking (anything else is non-standard)
STANDARD_PAYMENT_TERMS = {"net 30"}
_NET_TERMS = re.compile(r"^\s*net\s*(\d{1,3})\s*$", re.IGNORECASE)


def net_term_days(payment_terms: str | None) -> int | None:
    """ "Net 45" → 45, "Due on receipt" → 0, None → None (the platform's default)."""
    if payment_terms is None or not payment_terms.strip():
        return None
    if payment_terms.strip().lower() in {"due on receipt", "due upon receipt"}:
        return 0
    found = _NET_TERMS.match(payment_terms)
    if not found:
        raise ValueError(f"unrecognised payment terms: {payment_terms[:40]!r}")
    return int(found.group(1))


def unmapped_products(opp: Opportunity, mapping: ProductMapping, billing: str) -> dict[str, str]:
    """Product codes on the deal the mapping has no price for (code → why)."""
    return {
        line.product_code: f"no {billing} price in the product mapping"
        for line in opp.lines
        if mapping.price_for(line.product_code, billing) is None
    }


def price_problems(
    opp: Opportunity, mapping: ProductMapping, billing: str, prices: dict[str, Price]
) -> dict[str, str]:
    """Mapped product codes whose billing price is missing or cannot bill this deal."""
    problems: dict[str, str] = {}
    for line in opp.lines:
        ref = mapping.price_for(line.product_code, billing)
        if ref is None:
            continue
        price = prices.get(ref)
        if price is None:
            problems[line.product_code] = f"{billing} has no price {ref}"
        elif price.currency.upper() != opp.currency.upper():
            problems[line.product_code] = (
                f"price {ref} is in {price.currency}, the deal in {opp.currency}"
            )
    return problems


def monthly(amount: int, price: Price) -> float:
    """One unit's recurring amount per month (a yearly price counts a twelfth)."""
    months = price.period_count * (12 if price.period == "year" else 1)
    return amount / max(months, 1)


def effective_discount(lines: list[OpportunityLine]) -> float:
    """The deal's discount as one percentage: line discounts weighted by line value."""
    gross = sum(line.unit_price * line.quantity for line in lines)
    if gross <= 0:
        return 0.0
    net = sum(line.unit_price * line.quantity * (1 - line.discount_percent / 100) for line in lines)
    return round((1 - net / gross) * 100, 2)


class QuotePlan(Frozen):
    """What the won deal becomes in billing, before anyone is asked."""

    lines: list[SubscriptionLine]
    currency: str
    discount_percent: float
    term_months: int
    start_date: date | None
    net_term_days: int | None
    mrr: int
    #: non-standard terms beyond the discount (custom payment terms, price overrides, a billing
    #: cycle the price does not have), in words; any → policy asks RevOps
    custom: list[str] = []

    @property
    def custom_terms(self) -> bool:
        return bool(self.custom)

    @property
    def terms(self) -> str:
        return "; ".join(self.custom)


def plan_subscription(
    opp: Opportunity, mapping: ProductMapping, billing: str, prices: dict[str, Price], today: date
) -> QuotePlan:
    """The subscription a deal becomes. Call once :func:`unmapped_products` and
    :func:`price_problems` are empty. A line sold at a price other than the billing price keeps
    what was sold (a price override: non-standard terms)."""
    custom: list[str] = []
    lines: list[SubscriptionLine] = []
    mrr = 0.0
    for line in opp.lines:
        price = prices[mapping.price_for(line.product_code, billing) or ""]
        override = line.unit_price > 0 and line.unit_price != price.unit_amount
        if override:
            custom.append(
                f"price override on {line.product_code}: {line.unit_price / 100:,.2f} instead of "
                f"{price.unit_amount / 100:,.2f}"
            )
        if opp.billing_period != price.period:
            custom.append(
                f"{opp.billing_period}ly billing on a {price.period}ly price ({price.id})"
            )
        unit = line.unit_price if override else price.unit_amount
        lines.append(
            SubscriptionLine(
                price_id=price.id, quantity=line.quantity, unit_amount=unit if override else None
            )
        )
        mrr += monthly(unit, price) * line.quantity
    discount = effective_discount(list(opp.lines))
    try:
        net_days = net_term_days(opp.payment_terms)
    except ValueError:
        net_days = None
        custom.append(f"payment terms {opp.payment_terms!r} (not understood)")
    else:
        if net_days is not None and opp.payment_terms.strip().lower() not in STANDARD_PAYMENT_TERMS:  # type: ignore[union-attr]
            custom.append(f"payment terms {opp.payment_terms}")
    start = opp.start_date or opp.close_date
    return QuotePlan(
        lines=lines,
        currency=opp.currency.upper(),
        discount_percent=discount,
        term_months=opp.term_months,
        start_date=start if start and start > today else None,
        net_term_days=net_days,
        mrr=round(mrr * (1 - discount / 100)),
        custom=custom,
    )


class QuoteToCashState(BaseModel):
    """Everything a quote-to-cash run knows, in one object."""

    model_config = ConfigDict(extra="ignore")

    status: QuoteToCashStatus
    mapping_fixes: list[MappingFixed] = []
    pick: CustomerPick | None = None
    #: who may answer the wait that is open (the action's roles in policies/approvers.yaml): a
    #: pick or mapping fix from anyone else is refused. None: not loaded (runs before the check)
    pick_eligible: list[str] | None = None
    fix_eligible: list[str] | None = None
    opp: Opportunity | None = None
    account: CrmAccount | None = None
    plan: QuotePlan | None = None
    #: a customer this run created (deleted on rollback) vs one it found
    created_customer: BillingCustomer | None = None
    customer_id: str | None = None
    subscription: SubscriptionRef | None = None
    rollback_reason: str = ""
