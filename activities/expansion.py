"""Activities for usage-based expansion: the scheduled intake's page (bulk usage and plan limits
for a page of customers, handed to each customer's expansion workflow), the one backfill a new
workflow asks for, the CRM account read, and the CRM writes (the signal record, the opportunity
with its draft quote, the close) — each write keyed by the workflow, so a retry after a
committed-then-timed-out call finds the record instead of making a second.

Thin: the vendor work is in ``connectors/expansion/``; the forecast and the decision are pure
(``domain/forecast.py``) and run in the workflow. The intake reads ``policies/expansion.yaml``
and hands it over with the usage, so the thresholds a decision used are in its history.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError

from activities.errors import to_application_error, vendor_errors
from activities.policy import DEFAULT_POLICY_DIR
from activities.writes import writes
from connectors.base import BillingPlatform, ConnectorError, CrmSystem
from connectors.expansion import (
    ExpansionCrm,
    ExpansionDraft,
    ExpansionRecords,
    OpportunityState,
    SignalRecord,
    UsageSource,
    expansion_crm,
    usage_source,
)
from domain import expansion as ex
from domain.expansion import (
    ExpansionInput,
    MeteredPlan,
    UsageBatch,
    UsageDay,
    expansion_workflow_id,
)
from domain.forecast import ExpansionPolicy, load_policy
from domain.models import CrmAccount, Frozen
from domain.quote import ProductMapping

log = logging.getLogger("revbridge.expansion")

POLICY_FILE = "expansion.yaml"
PRODUCTS_FILE = "products.yaml"
#: customers of a page signalled at once
INTAKE_CONCURRENCY = 8


class IntakePageInput(Frozen):
    billing: str
    crm: str
    intake_id: str
    cursor: str | None = None
    limit: int = 100
    lookback_days: int = ex.LOOKBACK_DAYS
    #: the day the intake runs for (UTC); None: today
    today: date | None = None


class IntakePageResult(Frozen):
    customers: int
    metered: int = 0
    signalled: int = 0
    usage_days: int = 0
    next_cursor: str | None = None


class BackfillInput(Frozen):
    subscription_ids: list[str]
    since: date
    #: the metered plans to read (runs before Stripe read by subscription IDs alone)
    plans: list[MeteredPlan] = []


class UsageDays(Frozen):
    days: list[UsageDay] = []


class FindAccountInput(Frozen):
    billing: str
    customer_id: str


class AccountFound(Frozen):
    account: CrmAccount | None = None


class UpsertSignalInput(Frozen):
    record: SignalRecord


class RecordId(Frozen):
    id: str


class UpsertExpansionInput(Frozen):
    draft: ExpansionDraft
    billing: str
    #: the billing price of the upgrade: its CRM product comes from policies/products.yaml
    upgrade_price_id: str | None = None


class CloseExpansionInput(Frozen):
    opportunity_id: str
    quote_id: str | None = None
    reason: str


class OpportunityStateInput(Frozen):
    opportunity_id: str


class ExpansionActivities:
    def __init__(
        self,
        billing: BillingPlatform,
        crm: CrmSystem,
        policy_dir: Path = DEFAULT_POLICY_DIR,
        usage: UsageSource | None = None,
        records: ExpansionCrm | None = None,
    ) -> None:
        self.billing = billing
        self.crm = crm
        self.policy_dir = Path(policy_dir)
        self._usage = usage
        self._records = records

    def methods(self) -> list[Any]:
        return [
            self.expansion_intake_page,
            self.expansion_backfill,
            self.expansion_find_account,
            self.expansion_upsert_signal,
            self.expansion_upsert_records,
            self.expansion_close,
            self.expansion_opportunity_state,
        ]

    # --- the vendors' expansion side ------------------------------------------------------------

    @property
    def usage(self) -> UsageSource:
        if self._usage is None:
            self._usage = usage_source(self.billing)
        if self._usage is None:
            raise ApplicationError(
                f"usage-based expansion does not read usage from {self.billing.name} yet",
                type="expansion.unsupported",
                non_retryable=True,
            )
        return self._usage

    @property
    def records(self) -> ExpansionCrm:
        if self._records is None:
            self._records = expansion_crm(self.crm)
        if self._records is None:
            raise ApplicationError(
                f"usage-based expansion does not write to {self.crm.name} yet",
                type="expansion.unsupported",
                non_retryable=True,
            )
        return self._records

    def policy(self) -> ExpansionPolicy:
        return load_policy(self.policy_dir / POLICY_FILE)

    # --- the intake -------------------------------------------------------------------------------

    def read_page(
        self, cursor: str | None, limit: int, since: date
    ) -> tuple[list[str], dict[str, list[MeteredPlan]], list[UsageDay], str | None]:
        """One page of customers, their metered plans and the usage since ``since``: a few
        bulk calls for the whole page."""
        page = self.billing.list_customers(cursor, limit)
        ids = [c.id for c in page.customers]
        plans = self.usage.metered_plans(ids) if ids else {}
        every = [p for ps in plans.values() for p in ps]
        days = self.usage.daily_usage(every, since) if every else []
        return ids, plans, days, page.next_cursor

    @activity.defn(name="expansion_intake_page")
    async def expansion_intake_page(self, input: IntakePageInput) -> IntakePageResult:
        """A page of customers: their metered plans and the last days' usage in bulk, then a
        batch for each metered customer's workflow (signal-with-start). The batch's event ID is
        the intake's and the customer's: a retried page is deduplicated by the workflow, and its
        daily totals replace (never add to) what the workflow holds."""
        info = activity.info()
        done = int(info.heartbeat_details[0]) if info.heartbeat_details else 0
        today = input.today or datetime.now(UTC).date()
        since = today - timedelta(days=max(1, input.lookback_days) - 1)
        try:
            policy = self.policy()
        except Exception as exc:  # a broken file: one line, retried while a person fixes it
            raise ApplicationError(f"{POLICY_FILE}: {exc}"[:300], type="expansion.policy") from None
        try:
            ids, plans, days, next_cursor = await asyncio.to_thread(
                self.read_page, input.cursor, input.limit, since
            )
        except ConnectorError as err:
            raise to_application_error(err) from None
        days = [d for d in days if d.day <= today]  # today is the last complete day
        by_sub: dict[str, list[UsageDay]] = {}
        for d in days:
            by_sub.setdefault(d.subscription_id, []).append(d)
        client = activity.client()
        targets = [c for c in ids if plans.get(c)]

        async def one(customer_id: str) -> None:
            mine = plans[customer_id]
            batch = UsageBatch(
                event_id=f"{input.intake_id}:{customer_id}",
                customer_id=customer_id,
                today=today,
                days=[
                    d for p in mine for d in by_sub.get(p.subscription_id, []) if d.item == p.item
                ],
                plans=mine,
                policy=policy,
                covers_from=since,
            )
            await client.start_workflow(
                ex.WORKFLOW_TYPE,
                ExpansionInput(billing=input.billing, crm=input.crm, customer_id=customer_id),
                id=expansion_workflow_id(input.billing, customer_id),
                task_queue=info.task_queue,
                start_signal=ex.SIGNAL_USAGE,
                start_signal_args=[batch],
                # one long-lived workflow per customer: a running one receives the batch; a
                # closed one (idle, or ended) may be followed by a new one
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )

        for start in range(done, len(targets), INTAKE_CONCURRENCY):
            chunk = targets[start : start + INTAKE_CONCURRENCY]
            await asyncio.gather(*(one(c) for c in chunk))
            activity.heartbeat(start + len(chunk))
        return IntakePageResult(
            customers=len(ids),
            metered=len(targets),
            signalled=len(targets) - min(done, len(targets)),
            usage_days=len(days),
            next_cursor=next_cursor,
        )

    # --- a customer's workflow --------------------------------------------------------------------

    @activity.defn(name="expansion_backfill")
    @vendor_errors
    def expansion_backfill(self, input: BackfillInput) -> UsageDays:
        """The history a new workflow lacks, read once (the workflow keeps it after that)."""
        plans = list(input.plans) or [
            MeteredPlan(subscription_id=sub, item="", plan_price_id="", included_per_period=1)
            for sub in input.subscription_ids
        ]
        return UsageDays(days=self.usage.daily_usage(plans, input.since))

    @activity.defn(name="expansion_find_account")
    @vendor_errors
    def expansion_find_account(self, input: FindAccountInput) -> AccountFound:
        return AccountFound(account=self.records.find_account(input.billing, input.customer_id))

    @activity.defn(name="expansion_opportunity_state")
    @vendor_errors
    def expansion_opportunity_state(self, input: OpportunityStateInput) -> OpportunityState:
        return self.records.opportunity_state(input.opportunity_id)

    @writes
    @activity.defn(name="expansion_upsert_signal")
    @vendor_errors
    def expansion_upsert_signal(self, input: UpsertSignalInput) -> RecordId:
        return RecordId(id=self.records.upsert_signal(input.record))

    @writes
    @activity.defn(name="expansion_upsert_records")
    @vendor_errors
    def expansion_upsert_records(self, input: UpsertExpansionInput) -> ExpansionRecords:
        draft = input.draft
        if draft.product_code is None and input.upgrade_price_id:
            draft = draft.model_copy(
                update={"product_code": self.product_code(input.billing, input.upgrade_price_id)}
            )
        return self.records.upsert_expansion(draft)

    @writes
    @activity.defn(name="expansion_close")
    @vendor_errors
    def expansion_close(self, input: CloseExpansionInput) -> OpportunityState:
        return self.records.close_expansion(input.opportunity_id, input.quote_id, input.reason)

    def product_code(self, billing: str, price_id: str) -> str | None:
        """The CRM product a billing price is sold as (policies/products.yaml, reversed)."""
        path = self.policy_dir / PRODUCTS_FILE
        if not path.exists():
            return None
        mapping = ProductMapping.parse(path.read_text(encoding="utf-8"))
        return next(
            (
                code
                for code in sorted(mapping.products)
                if mapping.price_for(code, billing) == price_id
            ),
            None,
        )
