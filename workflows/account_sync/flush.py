"""Account sync's flusher: minor changes of many customers, written in bulk.

The story: one run per deployment (``account-sync-flush:{billing}:{crm}``). Each customer's
account sync hands it minor changes (signal-with-start ``sync_minor``); they are coalesced per
customer (the latest value of each field wins), and every ``batch_every_s`` seconds — or at once
when 200 customers wait — written in ONE bulk call per 200 accounts (Salesforce sObject
Collections, HubSpot batch update). A batch spans customers, so its audit entry goes to the CRM's
agent log only (no single billing record holds it; each customer's immediate writes are audited
on both sides by its own run). Continues as new when its history grows, carrying what waits.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow

from workflows.governed.base import GovernedWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.sync import SyncActivities, SyncBulkInput
    from domain import golden
    from domain.golden import FlushInput, FlushStatus, MinorChange
    from domain.policy import AccountFacts, ActionKind
    from domain.temporal import UseCase


@workflow.defn(name=golden.FLUSH_WORKFLOW_TYPE)
class AccountSyncFlushWorkflow(GovernedWorkflow):
    use_case = UseCase.ACCOUNT_SYNC

    @workflow.init
    def __init__(self, input: FlushInput) -> None:
        self._input = input
        self.pending: dict[str, MinorChange] = dict(input.carry)
        self.st = FlushStatus(pending=len(self.pending), flushes=input.flushes)
        self._init_governed()
        self._local_decisions = True

    @workflow.signal(name=golden.SIGNAL_MINOR, description="One customer's minor changes.")
    def sync_minor(self, change: MinorChange) -> None:
        held = self.pending.get(change.customer_id)
        if held is not None:
            fields = (
                {**held.fields, **change.fields}
                if change.at >= held.at
                else {
                    **change.fields,
                    **held.fields,
                }
            )
            change = change.model_copy(update={"fields": fields, "at": max(change.at, held.at)})
        self.pending[change.customer_id] = change
        self.st = self.st.model_copy(update={"pending": len(self.pending)})

    @workflow.query(name="status", description="What waits and what was written.")
    def status(self) -> FlushStatus:
        return self.st

    @workflow.run
    async def run(self, input: FlushInput) -> FlushStatus:
        while True:
            await workflow.wait_condition(lambda: bool(self.pending) or self._full())
            if self.pending:
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: len(self.pending) >= input.batch_max,
                        timeout=timedelta(seconds=input.batch_every_s),
                        timeout_summary="next bulk flush",
                    )
                await self._flush()
            if self._full():
                await self.continue_as_new(
                    input.model_copy(update={"carry": self.pending, "flushes": self.st.flushes})
                )

    async def _flush(self) -> None:
        batch, self.pending = self.pending, {}
        n = self.st.flushes + 1
        permit = await self.ask_housekeeping(
            ActionKind.UPDATE_CRM_FIELD, AccountFacts(id=workflow.info().workflow_id)
        )
        records: dict[str, dict[str, Any]] = {}
        for change in batch.values():  # two customers on one account: the later change wins
            records[change.crm_account_id] = {
                **records.get(change.crm_account_id, {}),
                **change.fields,
            }
        if not permit.allowed:
            await self.audit(
                "sync_bulk_write",
                decision="deny",
                outcome="blocked",
                summary=f"{len(records)} accounts' minor changes not written "
                f"({', '.join(permit.decision.policy_ids)}).",
                key_suffix=str(n),
                parameters={"accounts": len(records)},
            )
            self.st = self.st.model_copy(update={"flushes": n, "pending": len(self.pending)})
            return
        ids = list(records)
        written, calls, failed = 0, 0, dict(self.st.failed)
        for start in range(0, len(ids), input_max(self._input)):
            chunk = {i: records[i] for i in ids[start : start + input_max(self._input)]}
            result = await self.write(
                permit,
                SyncActivities.sync_bulk_write_crm,
                SyncBulkInput(records=chunk),
                summary=f"bulk write of {len(chunk)} accounts",
            )
            written += result.written
            calls += 1
            failed.update(result.failed)
        fields = sorted({f for r in records.values() for f in r})
        self.st = self.st.model_copy(
            update={
                "flushes": n,
                "pending": len(self.pending),
                "records_written": self.st.records_written + written,
                "bulk_calls": self.st.bulk_calls + calls,
                "failed": dict(list(failed.items())[-50:]),
            }
        )
        await self.audit(
            "sync_bulk_write",
            decision=permit.decision.outcome.value,
            outcome=f"written ({written}/{len(records)})",
            summary=(
                f"Minor changes of {len(records)} accounts ({', '.join(fields)}) written in "
                f"{calls} bulk call(s); {len(records) - written} failed and are restored on "
                "their next read."
            ),
            policy_ids=permit.decision.policy_ids,
            key_suffix=str(n),
            parameters={"accounts": len(records), "fields": fields, "calls": calls},
        )

    def _full(self) -> bool:
        return self.history_full(self._input.history_limit)


def input_max(input: FlushInput) -> int:
    return max(1, min(input.batch_max, 200))
