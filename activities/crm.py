"""Activities against the configured CRM (vendor-neutral names).

The dunning hot path reads the account with its open cases in one request
(``find_account_with_cases``) and writes the case with its audit entry in one request
(``upsert_case(draft, audit)``) where the connector offers them; a connector that does not yet
falls back to the separate calls, with the same results and keys.
"""

from __future__ import annotations

import inspect

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
        #: the connector's one-request forms, where it has them (else None / False)
        self._with_cases = getattr(crm, "find_account_with_cases", None)
        self._case_with_audit = _accepts(crm, "upsert_case", "audit")
        #: several audit entries in one request (HubSpot's notes batch create), else None
        self._audits = getattr(crm, "write_audits", None)

    @activity.defn(name="find_crm_account")
    @vendor_errors
    def find_crm_account(self, input: FindAccountInput) -> FindAccountResult:
        batches = self._audits is not None
        if self._with_cases is not None:
            account, cases = self._with_cases(input.billing, input.customer_id)
            return FindAccountResult(account=account, open_cases=cases, audits_batch=batches)
        account = self.crm.find_account(input.billing, input.customer_id)
        cases = self.crm.open_cases(account.id) if account else []
        return FindAccountResult(account=account, open_cases=cases, audits_batch=batches)

    @writes
    @activity.defn(name="upsert_crm_case")
    @vendor_errors
    def upsert_crm_case(self, input: UpsertCaseInput) -> CaseRef:
        """The case and, with ``input.audit``, its audit entry (one request where the CRM has
        a composite API; else the case, then the entry on it — both idempotent by key)."""
        if input.audit is None or (input.audit_rides and self._audits is not None):
            # a riding entry goes with the run's next audit entry (``write_crm_audit``'s more)
            return self.crm.upsert_case(input.draft)
        if self._case_with_audit:
            return self.crm.upsert_case(input.draft, audit=input.audit)  # type: ignore[call-arg]
        case = self.crm.upsert_case(input.draft)
        self.crm.write_audit(input.audit.model_copy(update={"case_id": case.id}))
        return case

    @writes
    @activity.defn(name="write_crm_audit")
    @vendor_errors
    def write_crm_audit(self, input: WriteAuditInput) -> WriteResult:
        """``input.entry`` and, where the CRM batches audit notes, the riding ``input.more``
        before it, in one request (each once per its key); elsewhere ``more`` went with its
        write already, and so did ``entry`` when ``entry_rides``."""
        if self._audits is not None and (input.more or input.entry_rides):
            ids = self._audits([*input.more, input.entry])
            return WriteResult(id=ids[-1])
        if input.entry_rides:
            return WriteResult(id="")
        return WriteResult(id=self.crm.write_audit(input.entry))

    @writes
    @activity.defn(name="upsert_crm_task")
    @vendor_errors
    def upsert_crm_task(self, input: UpsertTaskInput) -> WriteResult:
        return WriteResult(id=self.crm.upsert_task(input.draft))


def _accepts(obj: object, method: str, parameter: str) -> bool:
    """Whether ``obj.method`` takes ``parameter`` (a connector not yet on the newer signature)."""
    fn = getattr(obj, method, None)
    if fn is None:
        return False
    try:
        return parameter in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
