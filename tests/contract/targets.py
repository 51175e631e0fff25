"""Every ``BillingPlatform`` and ``CrmSystem`` implementation the contract suite runs against its
emulator. A new connector joins the suite with one entry here (and its emulator, settings and
harness driver, which it needs anyway): ``BILLING.append(BillingSpec("zuora", ...))``.

A spec names only what the protocols cannot: how to start the vendor's emulator, which request
a read or a write makes (for fault injection through ``/_sandbox/faults``), how the vendor says
"slow down", and where a credit shows in billing (the evidence of "one effect").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import Emulator
from sandbox.hubspot import HubSpotEmulator
from sandbox.recurly import RecurlyEmulator
from sandbox.salesforce import SalesforceEmulator
from sandbox.stripe import StripeEmulator
from sandbox.zuora import ZuoraEmulator
from tests.pairs import (
    CB_KEY,
    HS_SECRET,
    HS_TOKEN,
    RECURLY_KEY,
    RECURLY_SECRET,
    SF_ID,
    SF_SECRET,
    STRIPE_KEY,
    STRIPE_SECRET,
    ZUORA_ID,
    ZUORA_SECRET,
)

#: (method or None for any, raw-path regex) of one request a connector call makes
Request = tuple[str | None, str]


@dataclass(frozen=True)
class BillingSpec:
    name: str
    emulator: Callable[[], Emulator]
    #: the request ``get_invoice_context`` makes first
    read: Request
    #: the request ``apply_credit`` makes
    credit_write: Request
    #: the credit a customer holds in billing (minor units), read with the vendor's own client
    credits: Callable[[Any, str], int]
    #: the vendor's "slow down" on a read, and the retry_after the connector must report
    rate_limit: dict[str, Any] = field(
        default_factory=lambda: {"kind": "status", "status": 429, "retry_after": 7}
    )
    rate_limit_retry_after: float = 7.0


@dataclass(frozen=True)
class CrmSpec:
    name: str
    emulator: Callable[[], Emulator]
    #: the request ``find_account`` makes
    read: Request
    #: the request that creates a case in ``upsert_case``
    case_write: Request
    rate_limit: dict[str, Any] = field(
        default_factory=lambda: {"kind": "status", "status": 429, "retry_after": 7}
    )
    #: the least retry_after the connector must report for it
    rate_limit_retry_after: float = 7.0


def _chargebee_credits(billing: Any, customer_id: str) -> int:
    return int(billing.client.Customer.retrieve(customer_id).customer.promotional_credits or 0)


def _recurly_credits(billing: Any, customer_id: str) -> int:
    """Credit adjustments on the account not yet used by an invoice."""
    items = billing.client.list_account_line_items(
        f"code-{customer_id}", params={"state": "pending", "type": "credit", "limit": 200}
    ).items()
    return -round(sum(li.amount for li in items) * 100)


def _stripe_credits(billing: Any, customer_id: str) -> int:
    return -int(billing.client.v1.customers.retrieve(customer_id).balance or 0)


def _zuora_credits(billing: Any, customer_id: str) -> int:
    """Every credit memo on the account: applied to its invoices, or still unapplied."""
    params = [("filter[]", f"accountId.EQ:{customer_id}"), ("pageSize", "99")]
    invoices = billing.request("GET", "/object-query/invoices", params=params)["data"]
    applied = sum(round(float(i.get("creditMemoAmount") or 0) * 100) for i in invoices)
    metrics = billing.request("GET", f"/v1/accounts/{customer_id}")["metrics"]
    return applied + round(float(metrics.get("unappliedCreditMemoAmount") or 0) * 100)


BILLING: list[BillingSpec] = [
    BillingSpec(
        "chargebee",
        lambda: ChargebeeEmulator(api_key=CB_KEY),
        read=("GET", r"/api/v2/invoices/.*"),
        credit_write=("POST", r"/api/v2/promotional_credits/add"),
        credits=_chargebee_credits,
    ),
    BillingSpec(
        "stripe",
        lambda: StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET),
        read=("GET", r"/v1/invoices/.*"),
        credit_write=("POST", r"/v1/customers/.*/balance_transactions"),
        credits=_stripe_credits,
        # Stripe's 429 carries no Retry-After (its limits are per second): the connector waits
        # its own default (connectors/stripe.py DEFAULT_RETRY_AFTER_S)
        rate_limit={"kind": "status", "status": 429},
        rate_limit_retry_after=2.0,
    ),
    BillingSpec(
        "recurly",
        lambda: RecurlyEmulator(api_key=RECURLY_KEY, webhook_secrets=[RECURLY_SECRET]),
        read=("GET", r"/invoices/.*"),
        credit_write=("POST", r"/accounts/.*/line_items"),
        credits=_recurly_credits,
    ),
    BillingSpec(
        "zuora",
        lambda: ZuoraEmulator(client_id=ZUORA_ID, client_secret=ZUORA_SECRET),
        read=("GET", r"/object-query/invoices"),  # one Object Query, what the case needs expanded
        credit_write=("POST", r"/v1/credit-memos"),
        credits=_zuora_credits,
    ),
]

CRM: list[CrmSpec] = [
    CrmSpec(
        "salesforce",
        lambda: SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET),
        read=("GET", r"/services/data/.*/query.*"),
        # the case (and its audit entry) go in one /composite request
        case_write=("POST", r"/services/data/v[0-9.]+/composite/?"),
        # Salesforce says "slow down" as a 403 REQUEST_LIMIT_EXCEEDED (the org's daily API
        # allocation): the connector waits at least a minute
        rate_limit={
            "kind": "status",
            "status": 403,
            "body": [
                {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
            ],
        },
        rate_limit_retry_after=60.0,
    ),
    CrmSpec(
        "hubspot",
        lambda: HubSpotEmulator(
            access_token=HS_TOKEN, client_secret=HS_SECRET, rate_limit_per_10s=2000
        ),
        # find_account reads the company by its unique billing_customer_id (not search)
        read=("GET", r"/crm/v3/objects/companies/.*"),
        case_write=("POST", r"/crm/v3/objects/tickets"),
    ),
]
