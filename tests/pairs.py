"""The billing × CRM pair matrix: one worker and one webhook service per pair, all on the session's
dev server and sandboxes, and a harness that drives a pair through the vendors' official clients."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError

from connectors.registry import build_billing, build_crm
from domain import temporal as names
from domain.approvals import QUERY, ApprovalTiming, PendingApproval
from domain.dunning import WORKFLOW_TYPE, DunningInput, DunningResult, DunningStatus
from domain.ids import idempotency_key
from domain.models import NoteTarget, PaymentFailed
from domain.settings import (
    ChargebeeSettings,
    HubSpotSettings,
    RecurlySettings,
    SalesforceSettings,
    Settings,
    StripeSettings,
    WebhookSettings,
    ZuoraSettings,
)
from harness.drivers import BillingDriver, CrmDriver, drivers
from sandbox.stripe.signing import signature_header

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    ok: Callable[[T], bool],
    what: str,
    within_s: float = 20.0,
    tolerate: tuple[type[BaseException], ...] = (RPCError, WorkflowQueryFailedError),
) -> T:
    """Poll ``probe`` until ``ok`` holds. ``tolerate``: errors that only mean "not yet" (a query
    before the first workflow task, a metric before the first scrape)."""
    deadline = time.monotonic() + within_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = await probe()
            if ok(last):  # type: ignore[arg-type]
                return last  # type: ignore[return-value]
        except tolerate as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} never happened; last seen: {last!r}"[:500])


async def status_when(
    handle: WorkflowHandle, ok: Callable[[DunningStatus], bool], within_s: float = 20.0
) -> DunningStatus:
    return await eventually(
        lambda: handle.query("status", result_type=DunningStatus), ok, "status", within_s
    )


async def stage(handle: WorkflowHandle, name: str, within_s: float = 20.0) -> DunningStatus:
    return await status_when(handle, lambda s: s.stage == name, within_s)


async def pending_of(handle: WorkflowHandle, within_s: float = 20.0) -> PendingApproval:
    found = await eventually(
        lambda: handle.query(QUERY, result_type=list[PendingApproval]),
        bool,
        "a pending approval",
        within_s,
    )
    return found[0]


def seed_crm_book(pair: Pair, book: Any) -> None:
    """Seed a ``sandbox.books.Book`` into the pair's CRM, linked to the pair's billing platform."""
    from sandbox import books

    crm, billing = pair.settings.crm, pair.settings.billing
    data = (
        books.salesforce_seed(book, billing)
        if crm == "salesforce"
        else books.hubspot_seed(book, billing)
    )
    httpx.post(pair.urls[crm] + "/_sandbox/seed", json=data, timeout=90).raise_for_status()


async def start_churn_on_risk(
    client: Client, pair: Pair, customer_id: str, uid: str, follow_up_s: float = 3.0
) -> WorkflowHandle:
    """Start a customer's churn intervention the way a failed payment does (signal-with-start of
    ``risk_signal``), with a short follow-up so a test sees the outcome."""
    from domain.churn import WORKFLOW_TYPE as CHURN
    from domain.churn import ChurnInput, ChurnResult
    from domain.ids import churn_workflow_id
    from domain.models import RiskSignal

    billing = pair.settings.billing
    return await client.start_workflow(
        CHURN,
        ChurnInput(
            billing=billing, customer_id=customer_id, follow_up=timedelta(seconds=follow_up_s)
        ),
        id=churn_workflow_id(billing, customer_id),
        task_queue=pair.settings.task_queue,
        start_signal=names.SIGNAL_RISK,
        start_signal_args=[
            RiskSignal(
                billing=billing,
                event_id=f"ev_{uid}",
                customer_id=customer_id,
                kind="payment_failed",
                occurred_at=datetime.now(UTC),
            )
        ],
        result_type=ChurnResult,
    )


PAIRS = [
    ("chargebee", "salesforce"),
    ("chargebee", "hubspot"),
    ("stripe", "salesforce"),
    ("stripe", "hubspot"),
]

CB_KEY = "test_chargebee_key"
SF_ID, SF_SECRET = "revbridge-local", "local-secret"
STRIPE_KEY, STRIPE_SECRET = "sk_test_revbridge_local", "whsec_revbridge_local"
HS_TOKEN, HS_SECRET, HS_APP_ID = "pat-local-revbridge", "hubspot-local-secret", "1160452"
ANTHROPIC_KEY = "sk-ant-test-key"
WEBHOOK_USER, WEBHOOK_PASSWORD = "chargebee-webhooks", "test-webhook-password"
SF_WEBHOOK_SECRET = "test-flow-secret"
RECURLY_KEY, RECURLY_SECRET = "recurly_test_key", "recurly_webhook_secret"
ZUORA_ID, ZUORA_SECRET = "revbridge-zuora-local", "zuora-local-secret"


def pair_settings(urls: dict[str, str], billing: str, crm: str, task_queue: str) -> Settings:
    return Settings(
        billing=billing,
        crm=crm,
        task_queue=task_queue,
        # short, so a "commit then time out" fault is seen as a timeout within a test
        http_timeout_s=2.0,
        chargebee=ChargebeeSettings(
            site="acme-test", api_key=SecretStr(CB_KEY), api_url=urls["chargebee"]
        ),
        stripe=StripeSettings(api_key=SecretStr(STRIPE_KEY), api_url=urls["stripe"]),
        recurly=RecurlySettings(api_key=SecretStr(RECURLY_KEY), api_url=urls["recurly"])
        if "recurly" in urls
        else None,
        zuora=ZuoraSettings(
            client_id=ZUORA_ID, client_secret=SecretStr(ZUORA_SECRET), api_url=urls["zuora"]
        )
        if "zuora" in urls
        else None,
        salesforce=SalesforceSettings(
            token_url=urls["salesforce"] + "/services/oauth2/token",
            client_id=SF_ID,
            client_secret=SecretStr(SF_SECRET),
        ),
        hubspot=HubSpotSettings(
            access_token=SecretStr(HS_TOKEN), api_url=urls["hubspot"], app_id=HS_APP_ID
        ),
        webhooks=WebhookSettings(
            chargebee_username=WEBHOOK_USER,
            chargebee_password=SecretStr(WEBHOOK_PASSWORD),
            stripe_secrets=[SecretStr(STRIPE_SECRET)],
            recurly_secrets=[SecretStr(RECURLY_SECRET)],
            hubspot_client_secret=SecretStr(HS_SECRET),
            salesforce_secrets=[SecretStr(SF_WEBHOOK_SECRET)],
        ),
    )


@dataclass
class Pair:
    """One deployment's worth of RevBridge (billing × CRM) and handles on both sandboxes."""

    settings: Settings
    urls: dict[str, str]
    webhook_url: str
    billing: Any  # the connector the worker uses
    crm: Any
    billing_driver: BillingDriver
    crm_driver: CrmDriver

    @classmethod
    def build(cls, settings: Settings, urls: dict[str, str], webhook_url: str) -> Pair:
        billing, crm = build_billing(settings), build_crm(settings)
        bd, cd = drivers(settings, billing, crm)
        return cls(settings, urls, webhook_url, billing, crm, bd, cd)

    @property
    def name(self) -> str:
        return f"{self.settings.billing}×{self.settings.crm}"

    @property
    def billing_url(self) -> str:
        return self.urls[self.settings.billing]

    def route_billing_webhooks_here(self) -> None:
        """Point the billing sandbox's webhooks at this pair's webhook service."""
        url = self.billing_url
        httpx.delete(url + "/_sandbox/webhooks").raise_for_status()
        target: dict[str, Any] = {"url": f"{self.webhook_url}/webhooks/{self.settings.billing}"}
        if self.settings.billing == "chargebee":
            target["basic_auth"] = [WEBHOOK_USER, WEBHOOK_PASSWORD]
        httpx.post(url + "/_sandbox/webhooks", json=target).raise_for_status()

    def route_crm_webhooks_here(self) -> None:
        """Point the CRM sandbox's webhooks (Flow callouts / HubSpot webhooks) at this pair's
        webhook service."""
        url = self.urls[self.settings.crm]
        httpx.delete(url + "/_sandbox/webhooks").raise_for_status()
        target: dict[str, Any] = {"url": f"{self.webhook_url}/webhooks/{self.settings.crm}"}
        if self.settings.crm == "salesforce":
            target["headers"] = {"X-RevBridge-Webhook-Secret": SF_WEBHOOK_SECRET}
        httpx.post(url + "/_sandbox/webhooks", json=target).raise_for_status()

    def seed(self, customer: Any, suffix: str) -> dict[str, str]:
        self.billing_driver.seed((customer,), suffix)
        self.crm_driver.seed((customer,), suffix, self.settings.billing)
        return customer.ids(suffix)

    def workflow_id(self, invoice_id: str) -> str:
        return f"dunning:{self.settings.billing}:{invoice_id}"

    def cases(self, invoice_id: str) -> list[dict[str, Any]]:
        return self.crm_driver.cases(idempotency_key(self.workflow_id(invoice_id), "create-case"))

    def audit(self, invoice_id: str) -> list[dict[str, Any]]:
        return self.crm.audit_log(self.workflow_id(invoice_id))

    def billing_notes(self, invoice_id: str) -> list[str]:
        return self.billing.list_notes(NoteTarget.INVOICE, invoice_id)

    def credits(self, customer_id: str) -> int:
        """Account credit the customer holds in billing (minor units)."""
        if self.settings.billing == "chargebee":
            customer = self.billing.client.Customer.retrieve(customer_id).customer
            return int(customer.promotional_credits or 0)
        return -int(self.billing.client.v1.customers.retrieve(customer_id).balance or 0)

    def account_id(self, customer_id: str) -> str | None:
        account = self.crm.find_account(self.settings.billing, customer_id)
        return account.id if account else None

    def last_failure_delivery(self, invoice_id: str) -> tuple[bytes, dict[str, str]]:
        """The body and headers the vendor would send again for this invoice's failure."""
        if self.settings.billing == "chargebee":
            events = self.billing.client.Event.list(
                {"event_type": {"is": "payment_failed"}, "limit": 100}
            ).list
            event = next(
                e.event.raw_data for e in events if invoice_id in json.dumps(e.event.raw_data)
            )
            body = json.dumps(event).encode()
            return body, {}
        events = self.billing.client.v1.events.list(
            {"type": "invoice.payment_failed", "limit": 100}
        )
        event_id = next(e.id for e in events.data if e.data.object.id == invoice_id)
        # the event's raw JSON, as Stripe would POST it again
        raw = httpx.get(
            f"{self.billing_url}/v1/events/{event_id}",
            headers={"Authorization": f"Bearer {STRIPE_KEY}"},
        )
        body = raw.raise_for_status().content
        return body, {"Stripe-Signature": signature_header(body, [STRIPE_SECRET])}

    def synthetic_failure(self, invoice_id: str, customer_id: str) -> tuple[bytes, dict[str, str]]:
        """A well-formed, authentic failure event for an invoice the platform does not know."""
        if self.settings.billing == "chargebee":
            from tests.webhooks.helpers import payment_failed

            return payment_failed(invoice_id, customer_id=customer_id), {}
        event = {
            "id": f"evt_{invoice_id}",
            "object": "event",
            "type": "invoice.payment_failed",
            "created": int(time.time()),
            "livemode": False,
            "request": {"id": None, "idempotency_key": None},
            "data": {
                "object": {
                    "id": invoice_id,
                    "object": "invoice",
                    "customer": customer_id,
                    "amount_due": 1000,
                    "currency": "usd",
                    "status": "open",
                }
            },
        }
        body = json.dumps(event).encode()
        return body, {"Stripe-Signature": signature_header(body, [STRIPE_SECRET])}

    async def start_directly(
        self,
        client: Client,
        ids: dict[str, str],
        event_id: str,
        *,
        amount_due: int = 0,
        payment_wait: timedelta = timedelta(days=14),
        retry_after: timedelta = timedelta(days=3),
        approval: ApprovalTiming = ApprovalTiming(),
        history_limit: int = 10_000,
        task_queue: str | None = None,
    ) -> WorkflowHandle:
        """Signal-with-start a dunning run as the webhook service would, without a webhook
        (``task_queue``: another deployment's worker, e.g. on the time-skipping server)."""
        event = PaymentFailed(
            billing=self.settings.billing,
            event_id=event_id,
            invoice_id=ids["invoice"],
            customer_id=ids["customer"],
            amount_due=amount_due,
            occurred_at=datetime.now(UTC),
        )
        return await client.start_workflow(
            WORKFLOW_TYPE,
            DunningInput(
                billing=self.settings.billing,
                invoice_id=ids["invoice"],
                payment_wait=payment_wait,
                retry_after=retry_after,
                approval=approval,
                history_limit=history_limit,
            ),
            id=self.workflow_id(ids["invoice"]),
            task_queue=task_queue or self.settings.task_queue,
            start_signal=names.SIGNAL_PAYMENT_FAILED,
            start_signal_args=[event],
            result_type=DunningResult,
        )

    async def redeliver(
        self, body: bytes, headers: dict[str, str], times: int
    ) -> list[httpx.Response]:
        auth = (WEBHOOK_USER, WEBHOOK_PASSWORD) if self.settings.billing == "chargebee" else None
        url = f"{self.webhook_url}/webhooks/{self.settings.billing}"
        async with httpx.AsyncClient(auth=auth, timeout=10) as http:
            return await asyncio.gather(
                *(http.post(url, content=body, headers=headers) for _ in range(times))
            )


def on_pairs(*names: str) -> pytest.MarkDecorator:
    """Run a test on some pairs only (``"chargebee×salesforce"``, ...): for behaviour that is
    pair-independent past the connectors, which other tests cover on every pair. The test is
    collected for those pairs alone, rather than skipped on the others."""
    chosen = [p for p in PAIRS if "×".join(p) in names]
    assert len(chosen) == len(names), f"unknown pair in {names}"
    return pytest.mark.parametrize(
        "pair_deployment", chosen, indirect=True, ids=["-".join(p) for p in chosen]
    )


def covering(pairs: list[tuple[str, str]] = PAIRS) -> list[tuple[str, str]]:
    """The fewest pairs in which every billing platform and every CRM of ``pairs`` appears:
    2 of the 2 × 2 matrix, 4 of 4 × 2."""
    billings = list(dict.fromkeys(b for b, _ in pairs))
    crms = list(dict.fromkeys(c for _, c in pairs))
    n = max(len(billings), len(crms))
    chosen = [(billings[i % len(billings)], crms[i % len(crms)]) for i in range(n)]
    assert all(p in pairs for p in chosen), f"{chosen} not all in the matrix"
    return chosen


def on_cover() -> pytest.MarkDecorator:
    """Run a full-stack test once per vendor rather than once per pair (:func:`covering`): for
    depth whose branch logic tests/fast proves and whose vendor side (a webhook route, a retried
    write, a CRM's task) needs each billing platform and each CRM once. Every pair still gets a
    smoke run per use case."""
    return on_pairs(*("×".join(p) for p in covering()))
