"""The account sync's activities (issue 19): read one customer's golden fields from either side,
write field sets (one account, or one bulk call for a batch of minor changes), hand minor
changes to the flusher, and the backfill's plan and link writes.

Every write is a field set (setting a value twice is setting it once) and the billing write sends
the idempotency key the workflow derived from its ID and step, so a retry after a committed but
timed-out call changes nothing more.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError

from activities.errors import vendor_errors
from activities.policy import DEFAULT_POLICY_DIR
from activities.writes import writes
from connectors.base import BillingPlatform, CrmSystem
from connectors.sync import BULK_MAX, SyncBilling, SyncCrm, sync_billing, sync_crm
from domain import golden
from domain import temporal as names
from domain.health import HealthInputs
from domain.linking import BillingParty, CrmParty, LinkPlan, plan_links
from domain.models import Frozen
from domain.starts import start_options

RPC_TIMEOUT = timedelta(seconds=5)
RULES_FILE = "sync.yaml"


class SyncRulesInput(Frozen):
    customer_id: str = ""


class SyncReadInput(Frozen):
    billing: str
    customer_id: str
    read_billing: bool = True
    read_crm: bool = True
    crm_account_id: str | None = None
    #: with billing: the health profile's inputs too (domain/health.py), with the payment
    #: attempts when ``health_payments`` (an extra read: once a day)
    health: bool = False
    health_payments: bool = True


class SyncRead(Frozen):
    billing: dict[str, Any] | None = None
    crm: dict[str, Any] | None = None
    crm_account_id: str | None = None
    #: billing's inputs to the health profile (asked for, and the platform reads them)
    health: HealthInputs | None = None


class SyncCrmWriteInput(Frozen):
    account_id: str
    fields: dict[str, Any]


class SyncBillingWriteInput(Frozen):
    customer_id: str
    fields: dict[str, Any]
    idempotency_key: str


class SyncBulkInput(Frozen):
    #: account ID → fields (at most 200: one call)
    records: dict[str, dict[str, Any]]


class SyncBulkResult(Frozen):
    written: int
    failed: dict[str, str] = {}


class HandMinorInput(Frozen):
    flusher_id: str
    billing: str
    crm: str
    batch_every_s: int
    change: golden.MinorChange


class BackfillPlanInput(Frozen):
    billing: str
    page: int = 100
    auto: float = 0.92
    review: float = 0.6


class BackfillPlan(Frozen):
    plan: LinkPlan
    #: links the CRM holds already (their account carries this customer): nothing to write
    linked_already: int = 0
    #: the links to write: account ID → billing customer ID (the rest of ``plan.links``)
    to_write: dict[str, str] = {}
    billing_reads: int = 0
    crm_reads: int = 0


class BackfillLinkInput(Frozen):
    billing: str
    #: account ID → billing customer ID (at most 200: one call)
    links: dict[str, str]


class SyncActivities:
    def __init__(
        self, billing: BillingPlatform, crm: CrmSystem, policy_dir: Path = DEFAULT_POLICY_DIR
    ) -> None:
        self._billing_connector, self._crm_connector = billing, crm
        self.rules_file = policy_dir / RULES_FILE
        self._b: SyncBilling | None = None
        self._c: SyncCrm | None = None

    @property
    def b(self) -> SyncBilling:
        if self._b is None:
            self._b = sync_billing(self._billing_connector)
        return self._b

    @property
    def c(self) -> SyncCrm:
        if self._c is None:
            self._c = sync_crm(self._crm_connector)
        return self._c

    def methods(self) -> list[Any]:
        return [
            self.sync_rules,
            self.sync_read,
            self.sync_write_crm,
            self.sync_write_billing,
            self.sync_bulk_write_crm,
            self.sync_hand_minor,
            self.sync_backfill_plan,
            self.sync_backfill_link,
        ]

    @activity.defn(name="sync_rules")
    def sync_rules(self, input: SyncRulesInput) -> golden.SyncRules:
        """``policies/sync.yaml``, read at every batch (edit and save, no deploy); a bad file
        is a one-line, non-retryable error."""
        try:
            return golden.load_rules(self.rules_file)
        except golden.RulesError as exc:
            raise ApplicationError(str(exc), type="sync.bad_rules", non_retryable=True) from None

    @activity.defn(name="sync_read")
    @vendor_errors
    def sync_read(self, input: SyncReadInput) -> SyncRead:
        """The truth, re-read: the sides asked for (the CRM account found by its billing link
        when the run does not know it yet)."""
        billing, health = None, None
        if input.read_billing:
            both = getattr(self.b, "sync_view_health", None) if input.health else None
            if callable(both):  # a platform that reads the health inputs with the view
                billing, health = both(input.customer_id, input.health_payments)
            else:
                billing = self.b.sync_view(input.customer_id)
        account_id, crm = input.crm_account_id, None
        if input.read_crm:
            account_id = account_id or self.c.sync_find(input.billing, input.customer_id)
            crm = self.c.sync_view(account_id) if account_id else None
        return SyncRead(billing=billing, crm=crm, crm_account_id=account_id, health=health)

    @writes
    @activity.defn(name="sync_write_crm")
    @vendor_errors
    def sync_write_crm(self, input: SyncCrmWriteInput) -> SyncBulkResult:
        self.c.sync_write(input.account_id, input.fields)
        return SyncBulkResult(written=1)

    @writes
    @activity.defn(name="sync_write_billing")
    @vendor_errors
    def sync_write_billing(self, input: SyncBillingWriteInput) -> SyncBulkResult:
        self.b.sync_write(input.customer_id, input.fields, input.idempotency_key)
        return SyncBulkResult(written=1)

    @writes
    @activity.defn(name="sync_bulk_write_crm")
    @vendor_errors
    def sync_bulk_write_crm(self, input: SyncBulkInput) -> SyncBulkResult:
        """One bulk call for up to 200 accounts (sObject Collections / HubSpot batch update)."""
        failed = self.c.sync_bulk_write(input.records)
        return SyncBulkResult(written=len(input.records) - len(failed), failed=failed)

    @activity.defn(name="sync_hand_minor")
    async def sync_hand_minor(self, input: HandMinorInput) -> str:
        """Signal-with-start the deployment's flusher with one customer's minor changes
        (Temporal only; the account sync runs it as a local activity)."""
        client: Client = activity.client()
        await client.start_workflow(
            golden.FLUSH_WORKFLOW_TYPE,
            golden.FlushInput(
                billing=input.billing, crm=input.crm, batch_every_s=input.batch_every_s
            ),
            id=input.flusher_id,
            task_queue=activity.info().task_queue,
            start_signal=golden.SIGNAL_MINOR,
            start_signal_args=[input.change],
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(names.USE_CASE_KEY, names.UseCase.ACCOUNT_SYNC),
                    SearchAttributePair(names.APPROVAL_KEY, "none"),
                ]
            ),
            static_summary=f"Account sync: bulk writes of minor changes ({input.crm})",
            rpc_timeout=RPC_TIMEOUT,
            **start_options(golden.FLUSH_WORKFLOW_TYPE),
        )
        return input.flusher_id

    # --- backfill ---------------------------------------------------------------------------

    @activity.defn(name="sync_backfill_plan")
    @vendor_errors
    def sync_backfill_plan(self, input: BackfillPlanInput) -> BackfillPlan:
        """Both books, read page by page, and the links ``domain/linking.py`` decides (exact,
        fuzzy, ambiguous for review). Reads only."""
        customers: list[BillingParty] = []
        accounts: list[CrmParty] = []
        cursor: str | None = None
        b_reads = c_reads = 0
        while True:
            page, cursor = self.b.sync_parties(cursor, input.page)
            customers.extend(page)
            b_reads += 1
            activity.heartbeat(f"billing {len(customers)}")
            if not cursor:
                break
        while True:
            rows, cursor = self.c.sync_parties(cursor, 2000)
            accounts.extend(rows)
            c_reads += 1
            activity.heartbeat(f"crm {len(accounts)}")
            if not cursor:
                break
        plan = plan_links(customers, accounts, auto=input.auto, review=input.review)
        holds = {a.id: a.billing_customer_id for a in accounts}
        to_write = {
            x.account_id: x.customer_id
            for x in plan.links
            if holds.get(x.account_id) != x.customer_id
        }
        return BackfillPlan(
            plan=plan,
            linked_already=len(plan.links) - len(to_write),
            to_write=to_write,
            billing_reads=b_reads,
            crm_reads=c_reads,
        )

    @writes
    @activity.defn(name="sync_backfill_link")
    @vendor_errors
    def sync_backfill_link(self, input: BackfillLinkInput) -> SyncBulkResult:
        """Up to 200 links in one call: the billing link on each account (a field set)."""
        if len(input.links) > BULK_MAX:
            raise ValueError("at most 200 links per call")
        failed = self.c.sync_link_many(input.links, input.billing)
        return SyncBulkResult(written=len(input.links) - len(failed), failed=failed)
