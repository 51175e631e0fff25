"""Activities for support context (customer 360): read the case, its account and the billing
customer; find the customer's open dunning runs; write the note onto the case.

Toward billing these are reads only (``customer_snapshot``): support context never writes there.
The one write is the case note, made idempotent by the key the workflow passes (Salesforce sets
a field, HubSpot creates a note unique by ``revbridge_key``).

Open dunning is found from the deterministic dunning workflow ID of each unpaid invoice
(``dunning:{billing}:{invoice_id}``) and a describe, not from a visibility query: describe is
strongly consistent (visibility lags, so a case opened seconds after a failed payment could miss
the run that just started), needs no search attribute to have been set by whoever started the
run, and costs at most one call per unpaid invoice in the snapshot. What it cannot see is a run
for an invoice older than the snapshot's window — dunning is about recent invoices.

**A support desk beside the CRM** (issue 22, Zendesk): the desk is an activity-level choice, so
the workflow is unchanged. :class:`DeskRoutedCrm` wraps the deployment's CRM: in a run whose
workflow ID is ``case:<desk>:<ticket>`` (started by the desk's webhook), ``get_case`` /
``get_account`` / ``annotate_case`` go to the desk (its ticket, the "account" it derives from the
ticket's organization and requester with their billing customer, its internal note); every
other call, and every other run, goes to the CRM. When the billing customer the desk found has
a CRM account, that account is the run's account (its ID, name, tier and owner: the audit entry
and an approval task land on it). The run's audit entries go to the CRM's agent log without the
desk's own IDs (a ticket or a desk-derived account means nothing to the CRM: a Salesforce lookup
would refuse it, a HubSpot association could hit an unrelated record with the same number); the
entry's workflow ID names the ticket.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Protocol

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.errors import vendor_errors
from activities.models import WriteResult
from activities.writes import writes
from connectors.base import BillingPlatform, CrmSystem, NotFound
from domain.audit import AuditEntry
from domain.dunning import DunningStatus
from domain.ids import dunning_workflow_id
from domain.models import CrmAccount, Frozen
from domain.records import CaseDetail, CustomerSnapshot
from domain.support import INVOICES_SHOWN, OpenDunning

#: the dunning run's status query is a nicety: never let a slow worker hold up the case note
STATUS_QUERY_TIMEOUT = timedelta(seconds=2)
DESCRIBE_TIMEOUT = timedelta(seconds=5)


class GetSupportCaseInput(Frozen):
    case_id: str


class SupportCase(Frozen):
    #: None: the CRM has no such case (deleted, or a stale event)
    case: CaseDetail | None
    #: None: the case has no account, or the account is gone
    account: CrmAccount | None = None


class SupportSnapshotInput(Frozen):
    customer_id: str
    invoices: int = INVOICES_SHOWN


class SupportSnapshot(Frozen):
    #: None: billing does not know the customer the CRM account points at
    snapshot: CustomerSnapshot | None


class OpenDunningInput(Frozen):
    billing: str
    invoice_ids: list[str]


class OpenDunningResult(Frozen):
    runs: list[OpenDunning] = []


class AnnotateCaseInput(Frozen):
    case_id: str
    text: str
    idempotency_key: str


class SupportDesk(Protocol):
    """The CRM-shaped calls support context makes, as a support desk answers them."""

    vendor: str

    def get_case(self, case_id: str) -> CaseDetail: ...

    def get_account(self, account_id: str) -> CrmAccount: ...

    def annotate_case(self, case_id: str, text: str, idempotency_key: str) -> str: ...


class DeskRoutedCrm:
    """The CRM, with a desk's support-context runs routed to the desk (module docstring)."""

    def __init__(self, crm: CrmSystem, desk: SupportDesk, billing: str | None = None) -> None:
        self._crm = crm
        self.desk = desk
        self._prefix = f"case:{desk.vendor}:"
        self._billing = billing or getattr(desk, "billing_name", None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._crm, name)

    def _for_run(self) -> CrmSystem | SupportDesk:
        try:
            workflow_id = activity.info().workflow_id
        except RuntimeError:  # not in an activity (a direct call): the CRM, as before
            return self._crm
        return self.desk if (workflow_id or "").startswith(self._prefix) else self._crm

    def get_case(self, case_id: str) -> CaseDetail:
        return self._for_run().get_case(case_id)

    def get_account(self, account_id: str) -> CrmAccount:
        target = self._for_run()
        account = target.get_account(account_id)
        if target is self._crm or not (account.billing_customer_id and self._billing):
            return account
        linked = self._crm.find_account(self._billing, account.billing_customer_id)
        if linked is None:
            return account
        return linked.model_copy(
            update={
                "billing_customer_id": account.billing_customer_id,
                "billing_platform": account.billing_platform,
            }
        )

    def annotate_case(self, case_id: str, text: str, idempotency_key: str) -> str:
        return self._for_run().annotate_case(case_id, text, idempotency_key)

    def write_audit(self, entry: AuditEntry) -> str:
        if entry.workflow_id.startswith(self._prefix):
            update: dict[str, Any] = {"case_id": None}  # the ticket: in the workflow ID
            if entry.account_id and getattr(self.desk, "owns_account_id", _assume_desk_id)(
                entry.account_id
            ):
                update["account_id"] = None
            entry = entry.model_copy(update=update)
        return self._crm.write_audit(entry)


def _assume_desk_id(account_id: str) -> bool:
    return True  # a desk that cannot tell its IDs from the CRM's: drop the account, to be safe


def with_desk(crm: CrmSystem, desk: SupportDesk | None) -> CrmSystem:
    """The CRM the worker uses: ``crm`` itself without a desk."""
    return crm if desk is None else DeskRoutedCrm(crm, desk)  # type: ignore[return-value]


class SupportActivities:
    """``client`` is for tests; in a worker the open-dunning lookup uses the activity's client."""

    def __init__(
        self, billing: BillingPlatform, crm: CrmSystem, client: Client | None = None
    ) -> None:
        self.billing = billing
        self.crm = crm
        self._client = client

    def methods(self) -> list[Any]:
        """The bound activities a worker registers."""
        return [
            self.support_get_case,
            self.support_customer_snapshot,
            self.support_open_dunning,
            self.support_annotate_case,
        ]

    @activity.defn(name="support_get_case")
    @vendor_errors
    def support_get_case(self, input: GetSupportCaseInput) -> SupportCase:
        try:
            case = self.crm.get_case(input.case_id)
        except NotFound:
            return SupportCase(case=None)
        account = None
        if case.account_id:
            try:
                account = self.crm.get_account(case.account_id)
            except NotFound:
                account = None  # deleted since the case was opened: treated as no account
        return SupportCase(case=case, account=account)

    @activity.defn(name="support_customer_snapshot")
    @vendor_errors
    def support_customer_snapshot(self, input: SupportSnapshotInput) -> SupportSnapshot:
        try:
            return SupportSnapshot(
                snapshot=self.billing.customer_snapshot(input.customer_id, invoices=input.invoices)
            )
        except NotFound:
            return SupportSnapshot(snapshot=None)

    @activity.defn(name="support_open_dunning")
    async def support_open_dunning(self, input: OpenDunningInput) -> OpenDunningResult:
        """Async: it only talks to Temporal, through the worker's own (async) client."""
        client = self._client or activity.client()
        found = await asyncio.gather(
            *(self._running(client, input.billing, inv) for inv in input.invoice_ids)
        )
        return OpenDunningResult(runs=[run for run in found if run is not None])

    async def _running(self, client: Client, billing: str, invoice_id: str) -> OpenDunning | None:
        try:
            wf_id = dunning_workflow_id(billing, invoice_id)
        except ValueError:
            return None  # not a provider ID we could ever have started a run for
        handle = client.get_workflow_handle(wf_id)
        try:
            desc = await handle.describe(rpc_timeout=DESCRIBE_TIMEOUT)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise  # Temporal trouble: the activity retries
        if desc.status != WorkflowExecutionStatus.RUNNING:
            return None
        stage = case_number = None
        try:
            status = await handle.query(
                "status", result_type=DunningStatus, rpc_timeout=STATUS_QUERY_TIMEOUT
            )
            stage, case_number = status.stage, status.case_number
        except Exception as exc:  # noqa: BLE001 - best effort: the run exists, its detail is optional
            activity.logger.info("dunning %s status not read: %s", wf_id, type(exc).__name__)
        return OpenDunning(
            workflow_id=wf_id,
            invoice_id=invoice_id,
            started_at=desc.start_time,
            stage=stage,
            case_number=case_number,
        )

    @writes
    @activity.defn(name="support_annotate_case")
    @vendor_errors
    def support_annotate_case(self, input: AnnotateCaseInput) -> WriteResult:
        return WriteResult(
            id=self.crm.annotate_case(input.case_id, input.text, input.idempotency_key)
        )
