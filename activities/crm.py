"""Activities against the configured CRM (vendor-neutral names)."""

from __future__ import annotations

from temporalio import activity

from activities.errors import vendor_errors
from activities.models import (
    FindAccountInput,
    FindAccountResult,
    UpsertCaseInput,
    UpsertTaskInput,
    WriteAuditInput,
    WriteResult,
)
from activities.writes import writes
from connectors.base import CrmSystem
from domain.models import CaseRef


class CrmActivities:
    def __init__(self, crm: CrmSystem) -> None:
        self.crm = crm

    @activity.defn(name="find_crm_account")
    @vendor_errors
    def find_crm_account(self, input: FindAccountInput) -> FindAccountResult:
        account = self.crm.find_account(input.billing, input.customer_id)
        cases = self.crm.open_cases(account.id) if account else []
        return FindAccountResult(account=account, open_cases=cases)

    @writes
    @activity.defn(name="upsert_crm_case")
    @vendor_errors
    def upsert_crm_case(self, input: UpsertCaseInput) -> CaseRef:
        return self.crm.upsert_case(input.draft)

    @writes
    @activity.defn(name="write_crm_audit")
    @vendor_errors
    def write_crm_audit(self, input: WriteAuditInput) -> WriteResult:
        return WriteResult(id=self.crm.write_audit(input.entry))

    @writes
    @activity.defn(name="upsert_crm_task")
    @vendor_errors
    def upsert_crm_task(self, input: UpsertTaskInput) -> WriteResult:
        return WriteResult(id=self.crm.upsert_task(input.draft))
