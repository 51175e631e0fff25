"""Activities for quote-to-cash: read the won deal, the product mapping and the prices; find,
create, link and (as compensation) delete the billing customer; create and cancel the
subscription; write the billing link back to the CRM; and, for the catch-up, list won deals and
start the runs the CRM's callout never started.

Thin: each calls a connector (vendor errors classified by :func:`vendor_errors`) and decides
nothing. Every write carries the idempotency key the workflow derived from its ID and the step.
Reading the mapping file is an activity too, so the mapping a run used is in its history and a
replay never depends on the file as it is today.
"""

from __future__ import annotations

import asyncio
import os
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.errors import to_application_error, vendor_errors
from activities.writes import writes
from connectors.base import BillingPlatform, ConnectorError, CrmSystem, ErrorKind, NotFound
from connectors.expansion import expansion_crm, usage_source
from domain import temporal as names
from domain.expansion import ExpansionLink
from domain.ids import q2c_workflow_id
from domain.models import BillingCustomer, Frozen
from domain.quote import WORKFLOW_TYPE, ProductMapping, QuoteToCashInput
from domain.records import (
    BillingLink,
    CustomerDraft,
    Opportunity,
    Price,
    Subscription,
    SubscriptionDraft,
    SubscriptionRef,
)
from domain.settings import go_live_from_env
from domain.starts import start_options
from domain.temporal import UseCase

PRODUCTS_FILE = "products.yaml"
USE_CASE = UseCase.QUOTE_TO_CASH

# --- inputs and outputs (one of each per activity) ------------------------------------------------


class ReadMappingInput(Frozen):
    pass


class GetOpportunityInput(Frozen):
    opportunity_id: str


class OpportunityFound(Frozen):
    #: None: the CRM has no such opportunity (deleted, or a stale event)
    opportunity: Opportunity | None
    #: the deployment's go-live date (REVBRIDGE_GO_LIVE): deals closed before it are not provisioned
    go_live: date | None = None
    #: a won deal that a usage-based expansion opened: the existing subscription it upgrades
    expansion: ExpansionLink | None = None


class GetPricesInput(Frozen):
    #: what the mapping names (Chargebee item price IDs, Stripe lookup keys or price IDs)
    refs: list[str]


class PricesFound(Frozen):
    #: by the reference asked for
    prices: dict[str, Price] = {}
    missing: list[str] = []


class FindCustomerInput(Frozen):
    crm: str
    account_id: str
    email: str | None = None
    company: str | None = None


class CustomerSearch(Frozen):
    #: the customer already linked to the account in billing, if any
    linked: BillingCustomer | None = None
    #: customers with the contact's exact email (a unique key)
    by_email: list[BillingCustomer] = []
    #: customers whose company name contains the account's (the fuzzy ranking is the caller's)
    by_company: list[BillingCustomer] = []


class CreateCustomerInput(Frozen):
    draft: CustomerDraft


class SetCrmLinkInput(Frozen):
    customer_id: str
    crm: str
    #: None clears the link (compensation)
    account_id: str | None
    idempotency_key: str


class CreateSubscriptionInput(Frozen):
    draft: SubscriptionDraft


class WriteBillingLinkInput(Frozen):
    link: BillingLink


class UndoCustomerInput(Frozen):
    """Delete the customer a run created. ``customer_id`` None: the create's outcome is unknown
    (it failed for good, perhaps after committing); the draft is replayed under its key to
    learn the ID (the vendor answers a committed create again), then deleted."""

    draft: CustomerDraft
    customer_id: str | None = None
    idempotency_key: str


class UndoSubscriptionInput(Frozen):
    """Cancel the subscription a run created (see :class:`UndoCustomerInput` for an unknown ID)."""

    draft: SubscriptionDraft
    subscription_id: str | None = None
    idempotency_key: str
    reason: str


class Undone(Frozen):
    #: what was undone, in words ("" when there was nothing to undo)
    did: str
    record_id: str | None = None


class ChangeSubscriptionInput(Frozen):
    customer_id: str
    subscription_id: str
    from_price_id: str
    to_price_id: str
    idempotency_key: str


class PlanChanged(Frozen):
    subscription: SubscriptionRef
    mrr_before: int = 0


class ActiveSubscriptionsInput(Frozen):
    customer_id: str
    #: the billing prices of the won deal's lines
    price_ids: list[str]


class ActiveSubscriptions(Frozen):
    #: the customer's live subscriptions on one of those prices
    subscriptions: list[Subscription] = []


#: subscription states that no longer bill (every platform's spelling)
ENDED = frozenset({"cancelled", "canceled", "expired", "incomplete_expired", "ended", "deleted"})


class WonSinceInput(Frozen):
    since: datetime
    limit: int = 200


class WonOpportunities(Frozen):
    crm: str
    billing: str
    opportunity_ids: list[str] = []


class StartRunsInput(Frozen):
    crm: str
    billing: str
    opportunity_ids: list[str]
    trigger: str = "catch_up"


class StartedRuns(Frozen):
    #: runs started now or already running (a running one is left to run)
    running: list[str] = []
    #: runs that already ran to the end (a finished deal is never run again; domain.starts)
    already_done: list[str] = []
    #: deals closed before go-live: no run started (``revbridge link`` links them)
    before_go_live: list[str] = []


class QuoteActivities:
    """Holds the pair's connectors and where the product mapping lives."""

    def __init__(
        self,
        billing: BillingPlatform,
        crm: CrmSystem,
        mapping_path: Path,
        go_live: date | None | str = "env",
    ) -> None:
        self.billing = billing
        self.crm = crm
        #: deals won before it are never provisioned (default: REVBRIDGE_GO_LIVE, or none)
        self.go_live = go_live_from_env(os.environ) if go_live == "env" else go_live
        self.mapping_path = Path(mapping_path)

    def methods(self) -> list[Any]:
        return [
            self.q2c_read_product_mapping,
            self.q2c_get_opportunity,
            self.q2c_get_prices,
            self.q2c_find_billing_customer,
            self.q2c_create_billing_customer,
            self.q2c_set_crm_link,
            self.q2c_create_subscription,
            self.q2c_active_subscriptions,
            self.q2c_write_billing_link,
            self.q2c_undo_customer,
            self.q2c_undo_subscription,
            self.q2c_won_opportunities,
            self.q2c_start_runs,
            self.q2c_change_subscription,
        ]

    @activity.defn(name="q2c_read_product_mapping")
    def q2c_read_product_mapping(self, input: ReadMappingInput) -> ProductMapping:
        # A missing or broken file is retried (a person is fixing it), not fatal.
        return ProductMapping.parse(self.mapping_path.read_text(encoding="utf-8"))

    @activity.defn(name="q2c_get_opportunity")
    @vendor_errors
    def q2c_get_opportunity(self, input: GetOpportunityInput) -> OpportunityFound:
        try:
            opp = self.crm.get_opportunity(input.opportunity_id)
        except NotFound:
            return OpportunityFound(opportunity=None)
        # a won expansion opportunity changes the subscription it grew out of (issue 21)
        records = expansion_crm(self.crm) if opp.won else None
        expansion = records.expansion_of(opp.id) if records is not None else None
        return OpportunityFound(opportunity=opp, go_live=self.go_live, expansion=expansion)

    @writes
    @activity.defn(name="q2c_change_subscription")
    @vendor_errors
    def q2c_change_subscription(self, input: ChangeSubscriptionInput) -> PlanChanged:
        """Upgrade the existing subscription (prorated) instead of creating a second one; a
        subscription already on the new plan is success, so a retry changes nothing."""
        usage = usage_source(self.billing)
        if usage is None:
            raise ConnectorError(
                self.billing.name,
                ErrorKind.PERMANENT,
                "plan changes for won expansions are not built for this platform yet",
                code="unsupported",
            )
        before = self.billing.customer_snapshot(input.customer_id, invoices=1)
        mrr_before = next((s.mrr for s in before.subscriptions if s.id == input.subscription_id), 0)
        ref = usage.change_plan(
            input.subscription_id, input.from_price_id, input.to_price_id, input.idempotency_key
        )
        return PlanChanged(subscription=ref, mrr_before=mrr_before)

    @activity.defn(name="q2c_active_subscriptions")
    @vendor_errors
    def q2c_active_subscriptions(self, input: ActiveSubscriptionsInput) -> ActiveSubscriptions:
        """The customer's live subscriptions for the same products: a second one would bill a
        paying customer twice, so policy sends it to RevOps with both shown."""
        snapshot = self.billing.customer_snapshot(input.customer_id, invoices=1)
        wanted = set(input.price_ids)
        return ActiveSubscriptions(
            subscriptions=[
                s
                for s in snapshot.subscriptions
                if s.plan in wanted and s.status.lower() not in ENDED
            ]
        )

    @activity.defn(name="q2c_get_prices")
    @vendor_errors
    def q2c_get_prices(self, input: GetPricesInput) -> PricesFound:
        prices: dict[str, Price] = {}
        missing: list[str] = []
        for ref in dict.fromkeys(input.refs):
            try:
                prices[ref] = self.billing.get_price(ref)
            except NotFound:
                missing.append(ref)
        return PricesFound(prices=prices, missing=missing)

    @activity.defn(name="q2c_find_billing_customer")
    @vendor_errors
    def q2c_find_billing_customer(self, input: FindCustomerInput) -> CustomerSearch:
        linked = self.billing.find_customer_by_crm(input.crm, input.account_id)
        if linked is not None:
            return CustomerSearch(linked=linked)
        by_email = self.billing.find_customers(input.email, None) if input.email else []
        by_company = self.billing.find_customers(None, input.company) if input.company else []
        return CustomerSearch(by_email=by_email, by_company=by_company)

    @writes
    @activity.defn(name="q2c_create_billing_customer")
    @vendor_errors
    def q2c_create_billing_customer(self, input: CreateCustomerInput) -> BillingCustomer:
        return self.billing.create_customer(input.draft)

    @writes
    @activity.defn(name="q2c_set_crm_link")
    @vendor_errors
    def q2c_set_crm_link(self, input: SetCrmLinkInput) -> None:
        self.billing.set_crm_link(
            input.customer_id, input.crm, input.account_id, input.idempotency_key
        )

    @writes
    @activity.defn(name="q2c_create_subscription")
    @vendor_errors
    def q2c_create_subscription(self, input: CreateSubscriptionInput) -> SubscriptionRef:
        return self.billing.create_subscription(input.draft)

    @writes
    @activity.defn(name="q2c_write_billing_link")
    @vendor_errors
    def q2c_write_billing_link(self, input: WriteBillingLinkInput) -> None:
        self.crm.write_billing_link(input.link)

    @writes
    @activity.defn(name="q2c_undo_customer")
    @vendor_errors
    def q2c_undo_customer(self, input: UndoCustomerInput) -> Undone:
        customer_id = input.customer_id or self._replayed(
            lambda: self.billing.create_customer(input.draft).id
        )
        if customer_id is None:
            return Undone(did="")
        self.billing.delete_customer(customer_id, input.idempotency_key)
        return Undone(did=f"deleted customer {customer_id}", record_id=customer_id)

    @writes
    @activity.defn(name="q2c_undo_subscription")
    @vendor_errors
    def q2c_undo_subscription(self, input: UndoSubscriptionInput) -> Undone:
        sub_id = input.subscription_id or self._replayed(
            lambda: self.billing.create_subscription(input.draft).id
        )
        if sub_id is None:
            return Undone(did="")
        status = self.billing.cancel_subscription(sub_id, input.idempotency_key, input.reason)
        return Undone(did=f"cancelled subscription {sub_id} ({status})", record_id=sub_id)

    @staticmethod
    def _replayed(create: Any) -> str | None:
        """The ID a create under the same key committed; None when the vendor refuses the
        request for good (it never committed: nothing to undo)."""
        try:
            return create()
        except ConnectorError as err:
            if err.kind is ErrorKind.PERMANENT:
                return None
            raise

    # --- the catch-up -----------------------------------------------------------------------------

    @activity.defn(name="q2c_won_opportunities")
    @vendor_errors
    def q2c_won_opportunities(self, input: WonSinceInput) -> WonOpportunities:
        return WonOpportunities(
            crm=self.crm.name,
            billing=self.billing.name,
            opportunity_ids=self.crm.won_opportunities(input.since, input.limit),
        )

    @activity.defn(name="q2c_start_runs")
    async def q2c_start_runs(self, input: StartRunsInput) -> StartedRuns:
        """Start a QuoteToCashWorkflow for each deal, exactly as the webhook service does: the
        same deterministic ID and the same policies (``domain.starts``: a deal that finished is
        never run again, a failed one may be redone, a running one is left to run). Heartbeats
        its progress, so
        a retry resumes where the last attempt stopped."""
        client: Client = activity.client()
        info = activity.info()
        progress = (
            StartedRuns.model_validate(info.heartbeat_details[0])
            if info.heartbeat_details
            else StartedRuns()
        )
        running, already_done = list(progress.running), list(progress.already_done)
        before = list(progress.before_go_live)
        for index, opp_id in enumerate(input.opportunity_ids):
            if index < len(running) + len(already_done) + len(before):
                continue
            if self.go_live is not None and await asyncio.to_thread(self._before_go_live, opp_id):
                before.append(opp_id)  # an old deal someone edited: never provisioned again
                activity.heartbeat(
                    StartedRuns(
                        running=running, already_done=already_done, before_go_live=before
                    ).model_dump(mode="json")
                )
                continue
            wf_id = q2c_workflow_id(input.crm, opp_id)
            try:
                await client.start_workflow(
                    WORKFLOW_TYPE,
                    QuoteToCashInput(
                        crm=input.crm,
                        billing=input.billing,
                        opportunity_id=opp_id,
                        trigger=input.trigger,
                    ),
                    id=wf_id,
                    task_queue=info.task_queue,
                    # the webhook route's policies (domain.starts): a deal that finished is
                    # never run again, a failed (rolled-back) one may be, a running one is left
                    **start_options(WORKFLOW_TYPE),
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(names.USE_CASE_KEY, USE_CASE),
                            SearchAttributePair(names.APPROVAL_KEY, "none"),
                        ]
                    ),
                    static_summary=f"Quote-to-cash for {input.crm} opportunity {opp_id}",
                    rpc_timeout=timedelta(seconds=10),
                )
                running.append(wf_id)
            except WorkflowAlreadyStartedError:
                desc = await client.get_workflow_handle(wf_id).describe(
                    rpc_timeout=timedelta(seconds=10)
                )
                if desc.status == WorkflowExecutionStatus.RUNNING:
                    running.append(wf_id)
                else:
                    already_done.append(wf_id)
            activity.heartbeat(
                StartedRuns(
                    running=running, already_done=already_done, before_go_live=before
                ).model_dump(mode="json")
            )
        return StartedRuns(running=running, already_done=already_done, before_go_live=before)

    def _before_go_live(self, opportunity_id: str) -> bool:
        """Closed before go-live (an unknown close date counts as before: never guess)."""
        try:
            opp = self.crm.get_opportunity(opportunity_id)
        except NotFound:
            return False  # the run closes it as not found
        except ConnectorError as err:
            raise to_application_error(err) from None
        assert self.go_live is not None
        return opp.close_date is None or opp.close_date < self.go_live
