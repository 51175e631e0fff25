"""The month close: ratable revenue posted to the ERP as summarized journal entries, once, and
only after finance approves them (issue 20).

The story: a monthly Schedule (or ``revbridge revenue close --month``) starts one run per
billing platform and month. It reads the accounts (``policies/revenue.yaml``), then walks the
billing platform's invoices and credit notes issued in the lookback window a page at a time;
each page comes back as the revenue it recognizes in the month per currency and product
(``domain/revenue.py``: daily ratable schedules, credits reversed), and the run adds the pages
up. The totals become one balanced entry per currency (deferred revenue → revenue per product
account); an unbalanced entry is refused before any call. A dry run stops there and shows them.
Otherwise the run reads what the ERP already holds for the month: an entry already posted (same
external ID) is not proposed again, and a month that changed since it was posted is never posted
a second time in full: the run reads the lines the ERP holds for it (adjustments too) and
proposes only the difference, as an adjusting entry (``revenue-adjusting-entries``; an
unchanged re-close proposes nothing). What is left is proposed through the approval gate
as one action — its totals in the approval's details — and posted to NetSuite only when a finance
approver says yes, each entry exactly once by its external ID. The decision is audited in the
CRM's agent log, and the ERP side carries it in each entry's memo (the approver and this run):
a month's ledger spans every customer, so no single billing record could hold the note.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.governed.audit import AuditScope
from workflows.governed.base import GovernedWorkflow
from workflows.governed.gate import Governed, Permit
from workflows.options import READ

with workflow.unsafe.imports_passed_through():
    from activities.revenue import RevenueActivities
    from domain import temporal as names
    from domain.approvals import ApprovalTiming, ProposedAction
    from domain.ids import idempotency_key
    from domain.policy import AccountFacts, ActionKind
    from domain.revenue import (
        WORKFLOW_TYPE,
        Accounts,
        JournalEntry,
        PostEntryInput,
        RevenueCloseInput,
        RevenueCloseResult,
        RevenuePageInput,
        add_totals,
        entries_from_totals,
        entry_total,
        format_minor,
        month_bounds,
        previous_month,
        settle,
        unbalanced,
    )
    from domain.temporal import UseCase

#: a month the ERP holds entries for is compared line by line; a difference is proposed as an
#: adjusting entry (before: listed as ``changed`` for finance to adjust by hand)
ADJUSTING_PATCH = "revenue-adjusting-entries"
#: a page of 100 invoices with their lines (and the credited invoices of a credit-note page)
PAGE: dict = {**READ, "start_to_close_timeout": timedelta(minutes=2)}


@workflow.defn(name=WORKFLOW_TYPE)
class RevenuePostingWorkflow(GovernedWorkflow):
    use_case = UseCase.REVENUE_RECOGNITION

    @workflow.init
    def __init__(self, input: RevenueCloseInput) -> None:
        self._init_governed()
        self._input = input
        self._month = input.month or previous_month(workflow.now().date())
        self._result = RevenueCloseResult(
            month=self._month, outcome="reading", documents=input.documents, lines=input.lines
        )

    @workflow.query(name="status", description="The close so far: entries, totals, outcome.")
    def status(self) -> RevenueCloseResult:
        return self._result

    def _set(self, **changes: object) -> None:
        self._result = self._result.model_copy(update=changes)

    @workflow.run
    async def run(self, input: RevenueCloseInput) -> RevenueCloseResult:
        month = self._month
        if input.runs == 0:
            workflow.upsert_search_attributes([names.USE_CASE_KEY.value_set(self.use_case)])
        accounts = await workflow.execute_activity_method(
            RevenueActivities.revenue_accounts, month, summary="revenue accounts", **READ
        )
        totals = await self._read(input, month)
        entries = entries_from_totals(totals, accounts)
        bad = unbalanced(entries)
        if bad:  # balanced by construction; the guard stays in front of any ERP call
            raise ApplicationError(
                f"unbalanced journal entries refused: {', '.join(bad)}",
                type="revenue.unbalanced",
                non_retryable=True,
            )
        summary = _totals(entries, accounts)
        self._set(entries=entries, totals=summary)
        workflow.set_current_details(f"Revenue close {month}: {summary or 'no revenue'}.")
        if input.dry_run:
            self._set(outcome="dry_run")
            return self._result
        posted = {
            e.external_id: e.internal_id
            for e in await workflow.execute_activity_method(
                RevenueActivities.revenue_posted_entries,
                month,
                summary=f"ERP entries of {month}",
                **READ,
            )
        }
        fresh = [e for e in entries if e.external_id not in posted]
        changed = [e.external_id for e in fresh if _prefix(e) in {_prefix_of(p) for p in posted}]
        to_post = [e for e in fresh if e.external_id not in changed]
        self._set(
            posted={
                e.external_id: posted[e.external_id] for e in entries if e.external_id in posted
            },
            changed=changed,
        )
        if posted and workflow.patched(ADJUSTING_PATCH):
            # the ERP holds entries for the month: compare line by line with what it holds
            # (adjustments included), and propose only the difference as an adjusting entry
            held = await workflow.execute_activity_method(
                RevenueActivities.revenue_ledger_lines,
                month,
                summary=f"ERP lines of {month}",
                **READ,
            )
            in_full, adjusting = settle(month, entries, held, accounts)
            bad = unbalanced(adjusting)
            if bad:  # balanced by construction; refused before any ERP call all the same
                raise ApplicationError(
                    f"unbalanced adjusting entries refused: {', '.join(bad)}",
                    type="revenue.unbalanced",
                    non_retryable=True,
                )
            to_post = [*in_full, *adjusting]
            adjusted = {e.currency for e in adjusting}
            self._set(
                changed=[e.external_id for e in fresh if e.currency in adjusted],
                adjustments=adjusting,
            )
        if not to_post:
            self._set(outcome="nothing_new")
            await self.handlers_finished()
            return self._result
        governed = await self._propose(month, to_post, accounts)
        self._set(outcome=governed.status, approver=governed.approver)
        await self.handlers_finished()
        return self._result

    async def _read(self, input: RevenueCloseInput, month: str) -> list:
        lo, hi = month_bounds(month)
        issued_from = _months_before(lo, input.lookback_months)
        totals, cursor = list(input.totals), input.cursor
        documents, lines = input.documents, input.lines
        while True:
            page = await workflow.execute_activity_method(
                RevenueActivities.revenue_read_page,
                RevenuePageInput(
                    month=month,
                    issued_from=issued_from,
                    issued_to=hi,
                    cursor=cursor,
                    limit=input.page_size,
                ),
                summary=f"billing documents for {month}",
                **PAGE,
            )
            totals = add_totals(totals, page.totals)
            documents, lines = documents + page.documents, lines + page.lines
            self._set(documents=documents, lines=lines)
            cursor = page.next_cursor
            if cursor is None:
                return totals
            if self.history_full(input.history_limit):
                await self.continue_as_new(
                    input.model_copy(
                        update={
                            "month": month,
                            "cursor": cursor,
                            "totals": totals,
                            "documents": documents,
                            "lines": lines,
                            "runs": input.runs + 1,
                        }
                    )
                )

    async def _propose(
        self, month: str, entries: list[JournalEntry], accounts: Accounts
    ) -> Governed:
        totals = _totals(entries, accounts)
        currencies = {e.currency for e in entries}
        single = len(currencies) == 1
        amount = abs(sum(entry_total(e, accounts.deferred_revenue) for e in entries))
        ids = ",".join(e.external_id for e in entries)
        action = ProposedAction(
            kind=ActionKind.POST_JOURNAL_ENTRY,
            customer_id=f"ledger:{month}",
            subject_id=f"{len(entries)} entries {hashlib.sha256(ids.encode()).hexdigest()[:12]}",
            amount=amount if single else 0,
            currency=next(iter(currencies)) if single else "USD",
            terms=f"revenue {month}: {totals}",
            reason=(
                f"Month close {month}: {len(entries)} journal entr"
                f"{'y' if len(entries) == 1 else 'ies'} (deferred revenue {accounts.deferred_revenue}"
                f" released to revenue), {totals}; from {self._result.documents} billing "
                f"documents, {self._result.lines} lines"
            ),
        )
        posted: dict[str, str] = {}

        async def execute(permit: Permit, _: ProposedAction) -> str:
            who = self._executing.approver if self._executing else None
            run = workflow.info().workflow_id
            for entry in entries:
                memo = f"{entry.memo}; approved by {who or '-'}; RevBridge {run}"[:999]
                done = await self.write(
                    permit,
                    RevenueActivities.revenue_post_entry,
                    PostEntryInput(
                        entry=entry.model_copy(update={"memo": memo}),
                        key=idempotency_key(run, f"post:{entry.external_id}"),
                    ),
                    summary=f"post {entry.external_id}",
                )
                posted[done.external_id] = done.internal_id
                self._set(posted={**self._result.posted, done.external_id: done.internal_id})
            return ",".join(posted.values())

        async def audit(governed: Governed) -> None:
            await self.audit_governed(governed, billing_note=None)

        return await self.govern(
            action,
            AccountFacts(id=f"revenue:{month}"),
            f"Post the revenue recognized in {month} to the ERP: {totals}",
            execute,
            audit,
            ApprovalTiming(
                remind_after=timedelta(hours=self._input.remind_after_hours),
                expire_after=timedelta(hours=self._input.expire_after_hours),
            ),
        )

    def _audit_scope(self) -> AuditScope:
        # a month's ledger spans every customer: the CRM's agent log, and the ERP entry's memo
        return AuditScope(use_case=self.use_case, billing_note=None)


def _months_before(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def _prefix(entry: JournalEntry) -> str:
    return f"rb-rev-{entry.month}-{entry.currency.lower()}-"


def _prefix_of(external_id: str) -> str:
    return external_id.rsplit("-", 1)[0] + "-"


def _totals(entries: list[JournalEntry], accounts: Accounts) -> str:
    return ", ".join(
        format_minor(entry_total(e, accounts.deferred_revenue), e.currency) for e in entries
    )
