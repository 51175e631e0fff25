"""Vendor-neutral records for quote-to-cash, churn intervention and support context.

Shared by the connectors (which fill them from each vendor's shape), the activities and the
workflows. Money is an integer in minor units; dates are UTC. Provider IDs only, no secrets.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from domain.models import BillingCustomer, CrmAccount, Frozen, Invoice, Payment

# --- CRM side: a won opportunity / deal ------------------------------------------------------------


class Contact(Frozen):
    id: str
    name: str = ""
    email: str | None = None  # PII: never logged, never in a workflow ID or a prompt


class OpportunityLine(Frozen):
    """One line item: a CRM product (by its code / SKU) at a quantity and a price."""

    id: str
    product_code: str  # Salesforce Product2.ProductCode / HubSpot line item hs_sku
    name: str = ""
    quantity: int = 1
    unit_price: int = 0  # minor units, the price sold at (before the line discount)
    list_price: int | None = None  # the catalogue price, when the CRM knows it
    discount_percent: float = 0


class Opportunity(Frozen):
    """A won opportunity (Salesforce) or deal (HubSpot) with what quote-to-cash needs."""

    id: str
    name: str
    stage: str
    won: bool
    account: CrmAccount | None = None
    contacts: list[Contact] = []
    lines: list[OpportunityLine] = []
    amount: int = 0
    currency: str = "USD"
    close_date: date | None = None
    #: when the subscription starts (defaults to the close date)
    start_date: date | None = None
    term_months: int = 12
    billing_period: str = "month"  # month | year
    #: "Net 30" etc.; None means the platform's standard terms
    payment_terms: str | None = None
    #: set once quote-to-cash linked it (Billing_Subscription_Id__c / billing_subscription_id)
    billing_subscription_id: str | None = None


class BillingLink(Frozen):
    """What quote-to-cash writes back to the CRM account and opportunity (all idempotent field
    sets). ``customer_id=None`` and ``subscription_id=None`` unlink (the saga's compensation)."""

    account_id: str
    opportunity_id: str
    billing: str
    customer_id: str | None
    subscription_id: str | None
    mrr: int = 0
    currency: str = "USD"
    #: e.g. "active", "pending approval", "rolled back: <reason>"
    status: str


# --- billing side: customers, prices, subscriptions ------------------------------------------------


class CustomerDraft(Frozen):
    """A billing customer to create for a CRM account; ``key`` makes the create idempotent."""

    key: str
    company: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    crm: str  # salesforce | hubspot
    crm_account_id: str
    currency: str = "USD"
    #: "Net 30" → net_term_days 30 (Chargebee) / days_until_due (Stripe)
    net_term_days: int | None = None


class Price(Frozen):
    """A billing price a CRM product maps to (Chargebee item price / Stripe price)."""

    id: str
    product: str = ""
    unit_amount: int
    currency: str
    period: str = "month"  # month | year
    period_count: int = 1


class SubscriptionLine(Frozen):
    price_id: str
    quantity: int = 1
    #: a price override in minor units (non-standard terms), None = the catalogue price
    unit_amount: int | None = None


class SubscriptionDraft(Frozen):
    """The subscription a won deal becomes; ``key`` makes the create idempotent."""

    key: str
    customer_id: str
    lines: list[SubscriptionLine] = Field(min_length=1)
    currency: str = "USD"
    start_date: date | None = None
    term_months: int = 12
    discount_percent: float = 0
    net_term_days: int | None = None
    crm: str
    crm_opportunity_id: str


class SubscriptionRef(Frozen):
    id: str
    customer_id: str
    status: str  # the vendor's status (active, future, in_trial, cancelled, ...)
    mrr: int = 0
    currency: str = "USD"
    created: bool = True  # False when the key found an existing one


class Subscription(Frozen):
    id: str
    customer_id: str
    status: str
    plan: str = ""  # the main price / item price ID
    quantity: int = 1
    mrr: int = 0
    currency: str = "USD"
    started_at: datetime | None = None
    #: end of the current term / period (renewal proximity)
    current_term_end: datetime | None = None
    cancel_at: datetime | None = None
    discount_percent: float = 0


class CustomerPage(Frozen):
    customers: list[BillingCustomer]
    #: pass back to get the next page; None on the last page
    next_cursor: str | None = None


class CustomerSnapshot(Frozen):
    """Everything churn scoring and support context read from billing about one customer."""

    customer: BillingCustomer
    subscriptions: list[Subscription] = []
    invoices: list[Invoice] = []  # newest first, at most ``invoices`` asked for
    payments: list[Payment] = []  # newest first
    #: promotional / account credit balance, minor units
    credit_balance: int = 0
    #: plan or quantity decreases in the last 90 days (from the vendor's event log)
    downgrades_90d: int = 0
    #: metered usage, last 30 days and the 30 before (None when the platform has none)
    usage_30d: float | None = None
    usage_prev_30d: float | None = None


# --- CRM side: cases and churn -----------------------------------------------------------------------


class CaseDetail(Frozen):
    """A support case / ticket as support context reads it (its text is customer-controlled)."""

    id: str
    number: str | None = None
    account_id: str | None = None
    subject: str = ""
    status: str = ""
    opened_at: datetime | None = None


class ChurnScoreRecord(Frozen):
    """What churn intervention writes onto the CRM account."""

    account_id: str
    score: int = Field(ge=0, le=100)
    level: str  # low | medium | high | critical
    reasons: list[str] = []
    narrative: str = ""
    scored_at: datetime
