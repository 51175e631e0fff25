"""The daily billing ↔ CRM reconciliation.

The story: a Temporal Schedule starts this workflow once a day (``workers/schedules.py``; or
``revbridge reconcile``). One activity reads both systems in bulk and runs the checks
(``domain/reconcile.py``): what it hands back is the day's discrepancies, each with a stable ID,
and the exceptions the CRM already keeps (``Billing_Exception__c``) — the previous runs' open set
is read back from where people work, so a discrepancy found on two days is one exception with
its age, and one no longer found is closed. A billing-owned CRM field that drifted is restored
from billing at once (housekeeping: policy may allow it without a person), audited on both
sides. Every exception is upserted into the CRM by its stable ID (one bulk write; idempotent).
A new exception that touches money or a contract goes to the approval gate in a fix workflow of
its own (``fix.py``, one per exception ID, ever), so the daily run never waits on a person. The
run ends by writing its HTML report and CSV and putting their paths in its memo and details
(Web UI), and by auditing itself in the CRM. A dry run reads, checks and reports, and writes
nothing to either system; observe mode (policy) writes nothing either.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from workflows.governed.audit import AuditScope
from workflows.governed.base import GovernedWorkflow
from workflows.options import WRITE

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import (
        ReconcileActivities,
        ReportInput,
        RestoreFieldsInput,
        ScanInput,
        ScanResult,
        UpsertExceptionsInput,
    )
    from domain import reconcile as rx
    from domain import temporal as names
    from domain.models import NoteTarget
    from domain.policy import AccountFacts, ActionKind
    from domain.reconcile import ExceptionStatus as St
    from domain.temporal import UseCase

#: the whole book in one activity: minutes for a large one, retried a few times
SCAN: dict = {
    "start_to_close_timeout": timedelta(minutes=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=2), maximum_attempts=5),
}
REPORT: dict = {
    "start_to_close_timeout": timedelta(minutes=2),
    "retry_policy": RetryPolicy(maximum_attempts=5),
}
#: bulk writes of up to thousands of records (200 a request)
BULK_WRITE: dict = {**WRITE, "start_to_close_timeout": timedelta(minutes=10)}
#: statuses a person set: a run never puts them back to open
DECIDED = {St.APPROVED, St.REJECTED}


@workflow.defn(name=rx.WORKFLOW_TYPE)
class ReconciliationWorkflow(GovernedWorkflow):
    use_case = UseCase.RECONCILIATION

    @workflow.init
    def __init__(self, input: rx.ReconcileInput) -> None:
        self._init_governed()
        self._result = rx.ReconcileResult(dry_run=input.dry_run)

    @workflow.query(name="summary", description="The run's counts and report paths so far.")
    def summary(self) -> rx.ReconcileResult:
        return self._result

    @workflow.run
    async def run(self, input: rx.ReconcileInput) -> rx.ReconcileResult:
        workflow.upsert_search_attributes([names.USE_CASE_KEY.value_set(self.use_case)])
        today = input.today or workflow.now().date()
        self._run_id = workflow.info().workflow_id
        workflow.set_current_details(f"Reconciliation of {today}: reading both systems.")
        scan: ScanResult = await workflow.execute_activity_method(
            ReconcileActivities.reconcile_scan,
            ScanInput(today=today, since=input.since),
            summary="read both systems in bulk and check",
            **SCAN,
        )
        stored = {s.id: s for s in scan.stored}
        previous = {s.id: s.first_seen for s in scan.stored if s.status is not St.CLOSED}
        tracked = rx.track_seen(previous, [f.discrepancy for f in scan.findings], today)
        if scan.still_open:  # found again but beyond this run's bound: not resolved
            kept = set(scan.still_open)
            tracked = tracked.model_copy(
                update={"resolved": [i for i in tracked.resolved if i not in kept]}
            )
        finding = {f.discrepancy.id: f for f in scan.findings}
        records: dict[str, rx.ExceptionRecord] = {}
        #: exceptions a person is asked about today: new ones, and those whose earlier request
        #: expired unanswered (the fix workflow put them back to Open)
        ask: list[str] = []
        for oe in tracked.open:
            d = oe.discrepancy
            before = stored.get(d.id)
            if before is not None and before.status in DECIDED:
                status = before.status
            else:
                status = St.WAITING if d.fix.approver_role else St.OPEN
            if d.fix.approver_role and (before is None or before.status is St.OPEN):
                ask.append(d.id)
            records[d.id] = rx.record_of(finding[d.id], oe.first_seen, today, status)
        fixed = [] if input.dry_run else await self._restore(records, today)
        for rid in tracked.resolved:
            s = stored[rid]
            records[rid] = rx.ExceptionRecord(
                id=rid,
                kind=rx.Kind(s.kind),
                severity=rx.Severity(s.severity),
                status=St.CLOSED,
                first_seen=s.first_seen,
                last_seen=today,
                resolved_on=today,
                resolution="no longer found by the reconciliation",
            )
        still_open = [r for r in records.values() if r.status is not St.CLOSED]
        self._result = self._result.model_copy(
            update={
                "today": today,
                "found": len(scan.findings) + scan.not_shown,
                "not_filed": scan.not_shown,
                "open": len(still_open),
                "new": len(tracked.new),
                "resolved": len(tracked.resolved),
                "auto_fixed": len(fixed),
                "by_kind": _count(r.kind.value for r in still_open),
                "by_severity": _count(r.severity.value for r in still_open),
                "scan_seconds": scan.seconds,
                "counts": scan.counts,
            }
        )
        if not input.dry_run and records:
            await self._file(list(records.values()))
            await self._ask_approvals(input, [records[i] for i in ask], scan.crm)
        paths = await workflow.execute_activity_method(
            ReconcileActivities.reconcile_write_report,
            ReportInput(
                run_id=self._run_id,
                today=today,
                billing=scan.billing,
                crm=scan.crm,
                open=still_open,
                resolved=[records[i] for i in tracked.resolved] + [records[i] for i in fixed],
                auto_fixed=fixed,
                stored=scan.stored,
                counts=scan.counts,
                urls=scan.urls,
                dry_run=input.dry_run,
            ),
            summary="write the HTML report and CSV",
            **REPORT,
        )
        self._result = self._result.model_copy(
            update={"report_html": paths.html, "report_csv": paths.csv}
        )
        workflow.upsert_memo({"report_html": paths.html, "report_csv": paths.csv})
        workflow.set_current_details(
            f"Reconciliation of {today}: {len(still_open)} open ({len(tracked.new)} new), "
            f"{len(tracked.resolved)} resolved, {len(fixed)} fixed automatically. "
            f"Report: {paths.html} (CSV: {paths.csv})"
        )
        if not input.dry_run:
            await self.audit(
                "reconcile",
                decision="allow",
                outcome="completed",
                summary=f"Daily reconciliation of {today}: {len(still_open)} open, "
                f"{len(tracked.new)} new, {len(tracked.resolved)} resolved, "
                f"{len(fixed)} fixed automatically. Report: {paths.html}",
                key_suffix=today.isoformat(),
                parameters=self._result.by_kind,
            )
        await self.handlers_finished()
        return self._result

    async def _restore(self, records: dict[str, rx.ExceptionRecord], today: object) -> list[str]:
        """Billing-owned CRM fields that drifted, put back from billing in one bulk write, each
        audited on both sides (the CRM's log and a note on the billing customer)."""
        drift = [
            r
            for r in records.values()
            if r.kind is rx.Kind.CRM_FIELD_DRIFT and r.approver_role is None and r.account_id
        ]
        if not drift:
            return []
        permit = await self.ask_housekeeping(
            ActionKind.UPDATE_CRM_FIELD, AccountFacts(id=f"reconcile:{today}")
        )
        if not permit.allowed:
            self._result = self._result.model_copy(update={"writes": "restores blocked"})
            return []
        done = await self.write(
            permit,
            ReconcileActivities.reconcile_restore_fields,
            RestoreFieldsInput(
                fixes=[
                    rx.FieldRestore(
                        account_id=r.account_id or "",
                        field=r.evidence["field"],
                        value=r.evidence["billing"],
                    )
                    for r in drift
                ]
            ),
            summary=f"restore {len(drift)} billing-owned CRM field(s)",
            options=BULK_WRITE,
        )
        fixed = []
        for r in drift:
            if r.account_id in done.failed:
                continue
            fixed.append(r.id)
            records[r.id] = r.model_copy(
                update={
                    "status": St.CLOSED,
                    "resolved_on": r.last_seen,
                    "resolution": f"{r.evidence['field']} restored from billing",
                }
            )
            await self.audit(
                "restore_crm_field",
                decision=permit.decision.outcome.value,
                policy_ids=permit.decision.policy_ids,
                outcome="restored",
                summary=f"{r.evidence['field']} on CRM account {r.account_id} restored from "
                f"billing: {r.evidence['crm']} → {r.evidence['billing']} (exception {r.id}).",
                key_suffix=r.id,
                parameters={"exception": r.id, **r.evidence},
                billing_note=(NoteTarget.CUSTOMER, r.customer_id) if r.customer_id else None,
            )
        return fixed

    async def _file(self, records: list[rx.ExceptionRecord]) -> None:
        """Every exception of the day into the CRM (upserted by stable ID: no duplicates)."""
        permit = await self.ask_housekeeping(
            ActionKind.CREATE_CASE, AccountFacts(id=f"reconcile:{self._run_id}")
        )
        if not permit.allowed:
            self._result = self._result.model_copy(update={"writes": "blocked by policy"})
            return
        done = await self.write(
            permit,
            ReconcileActivities.reconcile_upsert_exceptions,
            UpsertExceptionsInput(records=records),
            summary=f"upsert {len(records)} exception(s) in the CRM",
            options=BULK_WRITE,
        )
        self._result = self._result.model_copy(
            update={"written": done.written, "write_failures": done.failed, "writes": "written"}
        )

    async def _ask_approvals(
        self, input: rx.ReconcileInput, new: list[rx.ExceptionRecord], crm: str
    ) -> None:
        """A fix workflow per money or contract exception to ask about (ID = the exception's:
        one running at a time; a finished one whose request expired is asked again): it waits
        for finance or RevOps; this run does not."""
        if self._result.writes != "written":
            return
        sent = 0
        for r in new:
            if not r.approver_role:
                continue
            try:
                await workflow.start_child_workflow(
                    rx.FIX_WORKFLOW_TYPE,
                    rx.FixInput(
                        record=r,
                        remind_after_h=input.remind_after_h,
                        expire_after_h=input.expire_after_h,
                    ),
                    id=rx.fix_workflow_id(crm, r.id),
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    static_summary=f"Approve the fix of {r.kind.value} {r.id}",
                )
                sent += 1
            except WorkflowAlreadyStartedError:
                continue
        self._result = self._result.model_copy(update={"sent_for_approval": sent})

    def _audit_scope(self) -> AuditScope:
        # a run spans the whole book: its entry goes to the CRM's log only (docs/audit.md); the
        # restores name their own billing customer
        return AuditScope(use_case=self.use_case, billing_note=None)


def _count(values: object) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:  # type: ignore[attr-defined]
        out[v] = out.get(v, 0) + 1
    return out
