"""The approval gate inside a running dunning workflow: approve, reject, expire with a reminder,
wrong approver, the agent approving itself, a stale action ID, duplicates, and the rollout modes —
each with its side effects (or their absence) checked in the sandboxes and the audit trail.

Runs one deployment (Chargebee × Salesforce) with its own copy of policies/, so a test can switch
a rollout mode the way an operator would: by editing modes.yaml, no restart.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from simple_salesforce import format_soql
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from domain import temporal as names
from domain.approvals import (
    SIGNAL,
    UPDATE,
    ApprovalSignal,
    ApprovalTiming,
    Decision,
    PendingApproval,
)
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.pairs import Pair, pair_settings, pending_of, status_when

GLOBEX = DEMO_CUSTOMERS[1]
NORTHWIND = DEMO_CUSTOMERS[0]
CREDIT = GLOBEX.invoice_total * 5 // 100
ROOT = Path(__file__).resolve().parents[2]
SLOW = ApprovalTiming(remind_after=timedelta(hours=1), expire_after=timedelta(hours=2))


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("policies")
    shutil.copytree(ROOT / "policies", path, dirs_exist_ok=True)
    yield path


@pytest.fixture
def set_mode(policy_dir: Path) -> Iterator[callable]:
    original = (policy_dir / "modes.yaml").read_text()

    def set_mode(mode: str) -> None:
        data = yaml.safe_load(original)
        data["use_cases"]["dunning"] = mode
        (policy_dir / "modes.yaml").write_text(yaml.safe_dump(data))

    yield set_mode
    (policy_dir / "modes.yaml").write_text(original)


@pytest.fixture(scope="module")
async def gov(
    client: Client, sandbox_urls: dict[str, str], policy_dir: Path
) -> AsyncIterator[Pair]:
    from workers.main import build_worker

    settings = pair_settings(sandbox_urls, "chargebee", "salesforce", "revbridge-governance")
    pair = Pair.build(settings, sandbox_urls, webhook_url="http://unused")
    httpx.delete(sandbox_urls["chargebee"] + "/_sandbox/webhooks")  # direct starts only
    async with build_worker(
        client, pair.billing, pair.crm, task_queue=settings.task_queue, policy_dir=policy_dir
    ):
        yield pair


async def start(
    client: Client,
    pair: Pair,
    customer,
    uid: str,
    timing: ApprovalTiming = SLOW,  # noqa: ANN001
) -> tuple[WorkflowHandle, dict]:
    ids = pair.seed(customer, uid)
    pair.billing_driver.decline(ids["invoice"])  # the sandbox's webhooks go nowhere here
    handle = await pair.start_directly(
        client, ids, f"ev_{uid}", amount_due=customer.invoice_total, approval=timing
    )
    return handle, ids


async def audit_when(pair: Pair, ids: dict, predicate, within_s: float = 10) -> list[dict]:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        log = pair.audit(ids["invoice"])
        if predicate(log):
            return log
        await asyncio.sleep(0.1)
    raise AssertionError(f"audit never matched: {[(r['action'], r['outcome']) for r in log]}")


def approve(
    pending: PendingApproval,
    approver: str,
    decision: Decision = Decision.APPROVE,
    action_id: str | None = None,
) -> ApprovalSignal:
    return ApprovalSignal(
        action_id=action_id or pending.action_id, decision=decision, approver=approver
    )


def actions_of(pair: Pair, ids: dict) -> list[tuple[str, str]]:
    return [(r["action"], r["outcome"]) for r in pair.audit(ids["invoice"])]


async def test_approval_by_signal_applies_the_credit_once_despite_duplicates(
    client: Client, gov: Pair, uid: str
) -> None:
    handle, ids = await start(client, gov, GLOBEX, uid)
    pending = await pending_of(handle)
    # the Web UI's "Send a Signal" with the JSON from current details, sent twice
    await handle.signal(SIGNAL, approve(pending, "Alice@Example.com"))
    await handle.signal(SIGNAL, approve(pending, "alice@example.com"))
    status = await status_when(handle, lambda s: s.stage == "waiting for payment")
    assert "apply_credit: needs_approval → executed (alice@example.com)" in status.actions
    assert gov.credits(ids["customer"]) == CREDIT  # once
    # the case, the credit (once), the refused duplicate; then day 0 of the playbook
    log = await audit_when(gov, ids, lambda log: len(log) == 5)
    assert sorted(r["action"] for r in log) == [
        "apply_credit",
        "approval_refused",
        "create_case",
        "create_task",
        "send_email",
    ]
    assert "already decided" in next(r["text"] for r in log if r["action"] == "approval_refused")
    await handle.terminate("test done")


async def test_rejection_leaves_nothing_behind(client: Client, gov: Pair, uid: str) -> None:
    handle, ids = await start(client, gov, GLOBEX, uid)
    pending = await pending_of(handle)
    result = await handle.execute_update(
        UPDATE, approve(pending, "alice@example.com", Decision.REJECT)
    )
    assert "reject recorded" in result
    status = await status_when(handle, lambda s: s.stage == "waiting for payment")
    assert "apply_credit: needs_approval → rejected (alice@example.com)" in status.actions
    assert gov.credits(ids["customer"]) == 0
    assert ("apply_credit", "rejected") in actions_of(gov, ids)
    assert (await handle.describe()).typed_search_attributes.get(names.APPROVAL_KEY) == "rejected"
    await handle.terminate("test done")


async def test_wrong_approver_agent_and_stale_id_change_nothing_and_are_audited(
    client: Client, gov: Pair, uid: str
) -> None:
    handle, ids = await start(client, gov, GLOBEX, uid)
    pending = await pending_of(handle)
    # the update's validator refuses at once, before anything is written to history
    for bad, reason in [
        (approve(pending, "bob@example.com"), "may not approve apply_credit: it needs finance"),
        (approve(pending, "agent:dunning"), "cannot approve its own action"),
        (approve(pending, "alice@example.com", action_id="act-0000"), "stale or wrong action ID"),
        (approve(pending, "mallory@evil.test"), "may not approve"),
    ]:
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(UPDATE, bad)
        assert reason in str(err.value.cause)
    # the same through signals: accepted by the server, refused by the workflow, audited
    await handle.signal(SIGNAL, approve(pending, "bob@example.com"))
    await handle.signal(SIGNAL, approve(pending, "alice@example.com", action_id="act-0000"))
    await asyncio.sleep(0.5)
    assert (await pending_of(handle)).action_id == pending.action_id  # still waiting
    assert gov.credits(ids["customer"]) == 0
    await handle.signal(SIGNAL, approve(pending, "alice@example.com"))
    await status_when(handle, lambda s: s.stage == "waiting for payment")
    log = await audit_when(
        gov, ids, lambda log: sum(r["action"] == "approval_refused" for r in log) == 2
    )
    refused = [r for r in log if r["action"] == "approval_refused"]
    assert any("bob@example.com" in r["text"] for r in refused)
    assert gov.credits(ids["customer"]) == CREDIT
    await handle.terminate("test done")


async def test_unanswered_approval_reminds_then_expires(
    client: Client, gov: Pair, uid: str
) -> None:
    quick = ApprovalTiming(remind_after=timedelta(seconds=1), expire_after=timedelta(seconds=2))
    handle, ids = await start(client, gov, GLOBEX, uid, timing=quick)
    pending = await pending_of(handle)
    status = await status_when(handle, lambda s: s.stage == "waiting for payment", within_s=30)
    assert "apply_credit: needs_approval → expired" in status.actions
    assert gov.credits(ids["customer"]) == 0
    assert ("apply_credit", "expired") in actions_of(gov, ids)
    tasks = gov.crm.query(
        format_soql(
            "SELECT Subject, Priority, WhatId FROM Task WHERE Subject LIKE {}",
            "Approval waiting:%" + ids["invoice"] + "%",
        )
    )
    assert len(tasks) == 1 and tasks[0]["Priority"] == "High"
    assert tasks[0]["WhatId"] == gov.account_id(ids["customer"])
    # too late: an approval after expiry is refused by the validator
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(UPDATE, approve(pending, "alice@example.com"))
    assert (await handle.describe()).typed_search_attributes.get(names.APPROVAL_KEY) == "expired"
    await handle.terminate("test done")


async def test_observe_mode_reads_and_reports_but_writes_nothing(
    client: Client, gov: Pair, uid: str, set_mode
) -> None:  # noqa: ANN001
    set_mode("observe")
    handle, ids = await start(client, gov, GLOBEX, uid)
    status = await status_when(handle, lambda s: s.stage == "waiting for payment")
    assert status.actions == ["create_case: deny → blocked", "apply_credit: deny → blocked"]
    assert gov.cases(ids["invoice"]) == []
    assert gov.credits(ids["customer"]) == 0
    # day 0 of the playbook is read and reported too: no email, no task
    assert (
        status.reminders_sent == 1 and gov.crm_driver.tasks(gov.account_id(ids["customer"])) == []
    )
    # observe means read and report only: the audit entries stay in the run (query
    # ``observed``), none is written to either system
    assert gov.audit(ids["invoice"]) == []
    observed = await handle.query("observed")
    assert [line.split(":")[0] for line in observed] == [
        "create_case",
        "apply_credit",
        "send_email",
        "create_task",
    ]
    assert observed[-1].endswith("owner task blocked")
    await handle.terminate("test done")


async def test_assist_mode_asks_before_every_write_and_switching_needs_no_deploy(
    client: Client, gov: Pair, uid: str, set_mode
) -> None:  # noqa: ANN001
    set_mode("assist")
    handle, ids = await start(client, gov, NORTHWIND, uid)
    pending = await pending_of(handle)
    assert pending.action.kind.value == "create_case"
    assert "mode_assist" in pending.policy_ids
    assert gov.cases(ids["invoice"]) == []
    set_mode("auto")  # the operator flips the mode; the next decision sees it
    await handle.execute_update(UPDATE, approve(pending, "bob@example.com"))
    status = await status_when(handle, lambda s: s.stage == "waiting for payment")
    assert status.actions == ["create_case: needs_approval → executed (bob@example.com)"]
    assert len(gov.cases(ids["invoice"])) == 1
    await handle.terminate("test done")


# --- the same from a terminal ----------------------------------------------------------------------


def revbridge(*argv: str) -> int:
    from cli.main import main

    return main(list(argv))


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, client: Client, gov: Pair) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", client.service_client.config.target_host)
    monkeypatch.setenv("REVBRIDGE_TASK_QUEUE", gov.settings.task_queue)


async def test_cli_lists_pending_refuses_the_wrong_approver_and_approves(
    client: Client, gov: Pair, uid: str, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    handle, ids = await start(client, gov, GLOBEX, uid)
    pending = await pending_of(handle)
    await asyncio.sleep(1.5)  # visibility is eventually consistent
    assert await asyncio.to_thread(revbridge, "pending", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"workflow_id": handle.id, "action_id": pending.action_id} in [
        {"workflow_id": r["workflow_id"], "action_id": r["action_id"]} for r in listed
    ]

    code = await asyncio.to_thread(
        revbridge, "approve", handle.id, "--action", pending.action_id, "--as", "bob@example.com"
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "refused" in err[0] and "needs finance" in err[0]
    assert gov.credits(ids["customer"]) == 0

    code = await asyncio.to_thread(
        revbridge,
        "approve",
        handle.id,
        "--action",
        pending.action_id,
        "--as",
        "alice@example.com",
        "--note",
        "goodwill",
    )
    assert code == 0 and "approve recorded" in capsys.readouterr().out
    await status_when(handle, lambda s: s.stage == "waiting for payment")
    assert gov.credits(ids["customer"]) == CREDIT
    await handle.terminate("test done")


async def test_cli_pending_names_runs_that_do_not_answer_instead_of_waiting_on_them(
    client: Client,
    uid: str,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run waiting for approval whose worker is gone (a stopped deployment) cannot answer the
    query: the list is still printed, and the silent runs named on stderr."""
    import cli.approvals

    monkeypatch.setattr(cli.approvals, "QUERY_TIMEOUT", timedelta(seconds=1))
    orphan = await client.start_workflow(
        "DunningWorkflow",
        id=f"no-worker-{uid}",
        task_queue=f"nobody-polls-{uid}",
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(names.APPROVAL_KEY, "pending")]
        ),
    )
    try:
        await asyncio.sleep(1.5)  # visibility is eventually consistent
        assert await asyncio.to_thread(revbridge, "pending", "--json") == 0
        out, err = capsys.readouterr()
        assert orphan.id not in {r["workflow_id"] for r in json.loads(out)}
        [line] = err.strip().splitlines()
        assert "did not answer within 1 s" in line and "is a worker running" in line
    finally:
        await orphan.terminate("test done")


async def test_cli_start_checks_who_may_start_what(
    client: Client, gov: Pair, uid: str, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = gov.seed(NORTHWIND, uid)
    gov.billing_driver.decline(ids["invoice"])
    # support may only read: refused, one line, nothing started
    code = await asyncio.to_thread(
        revbridge, "start", "dunning", "--invoice", ids["invoice"], "--as", "carol@example.com"
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "may not start dunning" in err[0]
    with pytest.raises(RPCError):
        await client.get_workflow_handle(gov.workflow_id(ids["invoice"])).describe()
    # a RevOps analyst may
    code = await asyncio.to_thread(
        revbridge, "start", "dunning", "--invoice", ids["invoice"], "--as", "dave@example.com"
    )
    assert code == 0, capsys.readouterr().err
    handle = client.get_workflow_handle(gov.workflow_id(ids["invoice"]))
    status = await status_when(handle, lambda s: s.stage == "waiting for payment")
    assert status.case_id and len(gov.cases(ids["invoice"])) == 1
    await handle.terminate("test done")
