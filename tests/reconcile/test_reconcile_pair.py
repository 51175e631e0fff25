"""The daily reconciliation end to end on Chargebee × Salesforce (its own sandboxes, a seeded
book with one planted discrepancy of every kind beside clean customers): the first run finds
exactly the planted ones, restores the drifted CRM field by itself (audited on both sides), files
every exception in the CRM and sends each money or contract fix to its approver; the next day's
run reports the remaining ones one day older, closes the one that was fixed meanwhile, and
creates no duplicate — in the CRM either, even when an upsert's answer is lost after it
committed."""

from __future__ import annotations

import csv
import os
import shutil
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus

from cli.reconcile import open_exceptions, render_open
from domain.approvals import QUERY, PendingApproval
from domain.models import NoteTarget
from domain.reconcile import (
    WORKFLOW_TYPE,
    ExceptionStatus,
    Kind,
    ReconcileInput,
    ReconcileResult,
    fix_workflow_id,
)
from harness.reconcile_book import PLANTED
from tests.approvals import send_approval
from tests.pairs import eventually
from tests.reconcile.conftest import ReconcilePair

DAY = date(2026, 12, 1)


HISTORIES = Path(__file__).resolve().parents[1] / "histories"


async def keep_history(p: ReconcilePair, workflow_id: str, name: str) -> None:
    """`make histories` commits this run's history for the replay gate (tests/replay); a
    committed one is never overwritten (a new branch gets a new name)."""
    path = HISTORIES / f"{name}.json"
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1" and not path.exists():
        history = await p.client.get_workflow_handle(workflow_id).fetch_history()
        path.write_text(history.to_json())


async def run(p: ReconcilePair, day: date, tag: str, **kw: object) -> ReconcileResult:
    return await p.client.execute_workflow(
        WORKFLOW_TYPE,
        ReconcileInput(today=day, **kw),
        id=f"reconcile-test-{tag}",
        task_queue=p.task_queue,
        result_type=ReconcileResult,
    )


def exceptions(p: ReconcilePair) -> dict[str, dict]:
    rows = p.crm.query(
        "SELECT Exception_Id__c, Kind__c, Status__c, First_Seen__c, Last_Seen__c, "
        "Resolved_On__c, Account__c, Billing_Customer_Id__c, Age_Days__c "
        "FROM Billing_Exception__c"
    )
    return {r["Exception_Id__c"]: r for r in rows}


def by_kind(rows: dict[str, dict]) -> dict[str, dict]:
    return {r["Kind__c"]: r for r in rows.values()}


async def test_a_day_then_the_next(rpair: ReconcilePair) -> None:
    p = rpair
    # --- a dry run writes nothing, in either system ----------------------------------------------
    dry = await run(p, DAY, "dry", dry_run=True)
    assert dry.found == len(PLANTED) and dry.written == 0
    assert exceptions(p) == {}

    # --- day one ---------------------------------------------------------------------------------
    first = await run(p, DAY, "day1")
    assert first.found == len(PLANTED), first
    assert first.auto_fixed == 1 and first.new == len(PLANTED)
    rows = exceptions(p)
    assert len(rows) == len(PLANTED)
    kinds = by_kind(rows)
    assert set(kinds) == {k.value for k in PLANTED.values()}
    # each planted customer produced its own kind, and nothing names a clean one
    for tag, kind in PLANTED.items():
        account, customer = p.planted.who[tag]
        row = kinds[kind.value]
        assert row["Account__c"] == account or row["Billing_Customer_Id__c"] == customer, tag
    clean = {x for t in p.planted.clean for x in p.planted.who[t] if x}
    assert not clean & {r["Account__c"] for r in rows.values()}
    assert not clean & {r["Billing_Customer_Id__c"] for r in rows.values()}
    # the drifted MRR is restored from billing and its exception closed; audited both sides
    drift_acc, drift_cus = p.planted.who["drift"]
    assert p.sf.account(drift_acc)["MRR__c"] == 700.0
    assert kinds[Kind.CRM_FIELD_DRIFT]["Status__c"] == ExceptionStatus.CLOSED
    logs = p.crm.query("SELECT Action__c, Outcome__c FROM AI_Agent_Log__c")
    assert ("restore_crm_field", "restored") in {(r["Action__c"], r["Outcome__c"]) for r in logs}
    notes = p.billing.list_notes(NoteTarget.CUSTOMER, drift_cus)
    assert any("restore_crm_field" in n or "restored" in n for n in notes), notes
    # every money or contract fix waits for its approver in a workflow of its own
    assert first.sent_for_approval == len(PLANTED) - 1
    waiting = [r for r in rows.values() if r["Status__c"] == ExceptionStatus.WAITING]
    assert len(waiting) == len(PLANTED) - 1
    nopay = kinds[Kind.PAID_WITHOUT_PAYMENT]["Exception_Id__c"]
    handle = p.client.get_workflow_handle(fix_workflow_id("salesforce", nopay))
    pending = await eventually(
        lambda: handle.query(QUERY, result_type=list[PendingApproval]), bool, "pending"
    )
    assert pending[0].action.kind.value == "refund" and "finance" in pending[0].approver_roles
    # the report: HTML with the chart and the table, and the CSV, both named in the memo
    assert first.report_html and first.report_csv
    page = Path(first.report_html).read_text(encoding="utf-8")
    assert "<svg" in page and page.count('class="bar"') == 30
    assert page.count("<tr><td><code>rx-") == len(PLANTED) - 1
    with open(first.report_csv, encoding="utf-8") as fh:
        assert len(list(csv.DictReader(fh))) == len(PLANTED) - 1
    desc = await p.client.get_workflow_handle("reconcile-test-day1").describe()
    assert (await desc.memo_value("report_html")) == first.report_html

    # --- finance approves the refund review; meanwhile the missing payment is recorded ----------
    await send_approval(p.client, handle.id, pending[0].action_id, "alice@example.com")
    assert (await handle.result())["status"] == "executed"
    await keep_history(p, handle.id, "ReconciliationFixWorkflow__approved")
    await keep_history(p, "reconcile-test-dry", "ReconciliationWorkflow__dry_run")
    await keep_history(p, "reconcile-test-day1", "ReconciliationWorkflow__day_one")
    assert exceptions(p)[nopay]["Status__c"] == ExceptionStatus.APPROVED
    httpx.post(
        p.cb_url + "/_sandbox/seed",
        json={"transactions": [{"invoice_id": p.planted.invoices["nopay"], "amount": 70_000}]},
    ).raise_for_status()

    # --- day two: one day older, the paid one closed, nothing new, no duplicates ----------------
    second = await run(p, DAY + timedelta(days=1), "day2")
    assert second.found == len(PLANTED) - 2  # the drift was restored, the payment found
    assert second.new == 0 and second.resolved == 1 and second.sent_for_approval == 0
    rows2 = exceptions(p)
    assert len(rows2) == len(PLANTED)
    assert rows2[nopay]["Status__c"] == ExceptionStatus.CLOSED
    assert rows2[nopay]["Account__c"] == rows[nopay]["Account__c"]  # closing keeps the details
    assert rows2[nopay]["Resolved_On__c"] == (DAY + timedelta(days=1)).isoformat()
    still = [r for r in rows2.values() if r["Status__c"] != ExceptionStatus.CLOSED]
    assert len(still) == len(PLANTED) - 2
    assert all(r["First_Seen__c"] == DAY.isoformat() for r in still)
    assert all(r["Age_Days__c"] == 1 for r in still)
    await keep_history(p, "reconcile-test-day2", "ReconciliationWorkflow__day_two")

    # --- day three: every upsert's answer is lost after it committed; the retry adds nothing ----
    fault = {
        "kind": "commit_then_timeout",
        "method": "PATCH",
        "path": r".*/composite/sobjects/Billing_Exception__c/Exception_Id__c",
        "delay_s": 4,
        "times": 1,
    }
    httpx.post(p.sf_url + "/_sandbox/faults", json=fault).raise_for_status()
    httpx.delete(p.sf_url + "/_sandbox/requests").raise_for_status()
    third = await run(p, DAY + timedelta(days=2), "day3")
    ledger = httpx.get(p.sf_url + "/_sandbox/requests").json()["requests"]
    upserts = [r for r in ledger if "Billing_Exception__c/Exception_Id__c" in r["path"]]
    assert len(upserts) == 2  # the lost answer, and the retry
    assert third.open == len(PLANTED) - 2 and third.new == 0
    assert len(exceptions(p)) == len(PLANTED)

    # `revbridge reconcile --open` lists them from the CRM, one day older each day
    shown = render_open(open_exceptions(p.settings), DAY + timedelta(days=2))
    assert shown.startswith(f"{len(PLANTED) - 2} open exception(s):")
    assert shown.count("  2d  ") == len(PLANTED) - 2

    # --- a request that expired unanswered (its fix workflow set the exception back to Open) is
    # asked again by the next day's run; the others are still waiting and are not asked twice
    unapplied = kinds[Kind.UNAPPLIED_PAYMENT]["Exception_Id__c"]
    expired = p.client.get_workflow_handle(fix_workflow_id("salesforce", unapplied))
    await expired.terminate("stands in for the expiry")
    p.crm.client.Billing_Exception__c.upsert(f"Exception_Id__c/{unapplied}", {"Status__c": "Open"})
    fourth = await run(p, DAY + timedelta(days=3), "day4")
    assert fourth.sent_for_approval == 1 and fourth.new == 0
    assert (await expired.describe()).status == WorkflowExecutionStatus.RUNNING
    assert exceptions(p)[unapplied]["Status__c"] == ExceptionStatus.WAITING
    await keep_history(p, "reconcile-test-day4", "ReconciliationWorkflow__asks_again_after_expiry")

    # the approvals still waiting belong to this test only
    for rid, row in rows.items():
        if row["Status__c"] == ExceptionStatus.WAITING and rid != nopay:
            h = p.client.get_workflow_handle(fix_workflow_id("salesforce", rid))
            if (await h.describe()).status == WorkflowExecutionStatus.RUNNING:
                await h.terminate("test over")


async def test_a_run_files_at_most_its_bound_and_closes_nothing_it_did_not_check(
    rpair: ReconcilePair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Books far apart find more than one run files (its payloads stay bounded): the most
    severe go first, the rest wait, and an exception already filed among the rest stays open."""
    import activities.reconcile as acts

    p = rpair
    open_before = {k for k, r in exceptions(p).items() if r["Status__c"] != "Closed"}
    monkeypatch.setattr(acts, "MAX_FINDINGS", 3)
    result = await run(p, DAY + timedelta(days=8), "bounded")
    assert result.found == len(open_before) and result.not_filed == len(open_before) - 3
    assert result.resolved == 0
    after = {k for k, r in exceptions(p).items() if r["Status__c"] != "Closed"}
    assert after == open_before


async def test_observe_mode_reads_and_reports_but_writes_nothing(
    rpair: ReconcilePair, tmp_path: Path
) -> None:
    """The rollout's first step: policies/modes.yaml says observe; the run still reads, checks
    and writes its report, and neither system receives a single write (from the ledgers)."""
    from workers.main import build_worker

    p = rpair
    policies = tmp_path / "policies"
    shutil.copytree(Path(__file__).resolve().parents[2] / "policies", policies)
    modes = policies / "modes.yaml"
    modes.write_text(modes.read_text().replace("reconciliation: assist", "reconciliation: observe"))
    tq = p.task_queue + "-observe"
    for url in (p.cb_url, p.sf_url):
        httpx.delete(url + "/_sandbox/requests").raise_for_status()
    before = exceptions(p)
    async with build_worker(p.client, p.billing, p.crm, task_queue=tq, policy_dir=policies):
        result = await p.client.execute_workflow(
            WORKFLOW_TYPE,
            ReconcileInput(today=DAY + timedelta(days=9)),
            id="reconcile-test-observe",
            task_queue=tq,
            result_type=ReconcileResult,
        )
    assert result.found > 0 and result.writes == "blocked by policy"
    assert result.written == 0 and result.sent_for_approval == 0
    assert result.report_html and Path(result.report_html).exists()
    for url in (p.cb_url, p.sf_url):
        sent = httpx.get(url + "/_sandbox/requests").json()["requests"]
        writes = [
            r for r in sent if r["method"] != "GET" and not r["path"].endswith("/oauth2/token")
        ]
        assert writes == [], writes
    assert exceptions(p) == before
