"""``revbridge replay``: the committed histories pass, the gate catches an unpatched reorder (and
lets the patched one through), and histories fetched from a real server replay by ID and by query.

The CLI runs in-process in a worker thread (``main`` calls ``asyncio.run``, and the tests already
run inside the session's event loop). Everything is imported as passthrough because the workflow
sandbox re-imports this module to validate the variant workflows below.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import httpx
    import pytest
    from temporalio.client import Client, WorkflowHistory, WorkflowQueryFailedError
    from temporalio.service import RPCError
    from temporalio.testing import WorkflowEnvironment

    import cli.replay
    from activities.crm import CrmActivities
    from activities.models import (
        FindAccountInput,
    )
    from cli.main import main
    from cli.stack import temporal_binary
    from domain import temporal as names
    from domain.dunning import WORKFLOW_TYPE, DunningInput, DunningResult, DunningStatus
    from domain.models import PaymentFailed
    from sandbox.scenarios import DEMO_CUSTOMERS, chargebee_seed, salesforce_seed
    from workflows.dunning.workflow import DunningWorkflow
    from workflows.options import READ

HISTORIES = Path(__file__).parent.parent / "histories"
DUNNING = sorted(HISTORIES.glob("DunningWorkflow__*.json"))
RECOVERED = HISTORIES / "DunningWorkflow__recovered_with_approval.json"
PATCH_ID = "find-account-first"


def _main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # `replay` exits 1 when a history fails
        return int(exc.code or 0)


async def revbridge(*argv: str) -> int:
    return await asyncio.to_thread(_main, ["replay", *argv])


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- variants of DunningWorkflow that exist only to prove the gate --------------------------------


class _DunningVariant(DunningWorkflow):
    """``DunningWorkflow`` with a change to its command sequence: the CRM account is looked up (by
    the customer on the failure event) before anything else, then the run goes on as shipped."""

    async def _look_up_account_first(self, input: DunningInput) -> None:
        await workflow.wait_condition(lambda: bool(self.s.failures))
        await workflow.execute_activity_method(
            CrmActivities.find_crm_account,
            FindAccountInput(billing=input.billing, customer_id=self.s.failures[0].customer_id),
            summary="find the linked CRM account",
            **READ,
        )


@workflow.defn(name="DunningWorkflow")
class ReorderedDunning(_DunningVariant):
    """The change shipped as is: every run that started on the old code breaks."""

    @workflow.run
    async def run(self, input: DunningInput) -> DunningResult:
        await self._look_up_account_first(input)
        return await super().run(input)


@workflow.defn(name="DunningWorkflow")
class PatchedReorderedDunning(_DunningVariant):
    """The same change behind ``workflow.patched``: old histories take the old path."""

    @workflow.run
    async def run(self, input: DunningInput) -> DunningResult:
        if workflow.patched(PATCH_ID):
            await self._look_up_account_first(input)
        return await super().run(input)


def recovered_history() -> WorkflowHistory:
    return WorkflowHistory.from_json(RECOVERED.stem, RECOVERED.read_text())


# --- committed histories -------------------------------------------------------------------------


async def test_committed_histories_replay_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert await revbridge(str(HISTORIES)) == 0
    out = lines(capsys.readouterr().out)
    files = sorted(HISTORIES.glob("*.json"))
    assert len(out) == len(files) + 1
    for line, path in zip(out, files, strict=False):
        assert line.startswith(f"ok  {path.stem} ({path.stem.split('__')[0]}, ")
        assert line.endswith(" events)")
    assert out[-1] == f"replayed {len(files)}: {len(files)} ok, 0 failed"


async def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert await revbridge("--json", str(RECOVERED)) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["replayed"], doc["ok"], doc["failed"]) == (1, 1, 0)
    [result] = doc["results"]
    assert result["workflow_id"] == RECOVERED.stem and result["workflow_type"] == "DunningWorkflow"
    assert result["ok"] and result["error"] is None and result["events"] > 10


# --- the negative control ------------------------------------------------------------------------


async def test_unpatched_reorder_is_nondeterministic() -> None:
    # the raw SDK first: the variant really is incompatible with the committed history
    from temporalio.worker import Replayer

    from infra.codec import data_converter

    replayer = Replayer(workflows=[ReorderedDunning], data_converter=data_converter())
    with pytest.raises(workflow.NondeterminismError):
        await replayer.replay_workflow(recovered_history())

    [result] = await cli.replay.replay_histories([recovered_history()], [ReorderedDunning])
    assert not result.ok and result.nondeterministic
    assert "find_crm_account" in result.error or "get_invoice_context" in result.error  # type: ignore[operator]


async def test_cli_fails_the_gate_on_an_unpatched_reorder(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.replay, "default_workflows", lambda: [ReorderedDunning])
    assert await revbridge(*map(str, DUNNING)) == 1
    out = lines(capsys.readouterr().out)
    recovered = next(line for line in out if RECOVERED.stem in line)
    assert recovered.startswith(f"FAIL {RECOVERED.stem}: nondeterministic — ")
    assert "\n" not in recovered
    # every dunning run schedules get_invoice_context first, so the reorder breaks them all
    assert sum(line.startswith("FAIL ") for line in out) == len(DUNNING)
    assert out[-1] == f"replayed {len(DUNNING)}: 0 ok, {len(DUNNING)} failed"


async def test_cli_passes_the_gate_with_the_patch(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    [result] = await cli.replay.replay_histories([recovered_history()], [PatchedReorderedDunning])
    assert result.ok, result.error

    monkeypatch.setattr(cli.replay, "default_workflows", lambda: [PatchedReorderedDunning])
    assert await revbridge(*map(str, DUNNING)) == 0
    assert (
        lines(capsys.readouterr().out)[-1]
        == f"replayed {len(DUNNING)}: {len(DUNNING)} ok, 0 failed"
    )


# --- usage errors --------------------------------------------------------------------------------


async def test_no_source_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert await revbridge() == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(lines(captured.err)) == 1 and captured.err.startswith("revbridge replay: ")


@pytest.mark.parametrize(
    "argv",
    [
        ["--query", "WorkflowType='DunningWorkflow'", "--workflow-id", "x"],
        ["--run-id", "r"],
        ["does/not/exist.json"],
    ],
    ids=["two-sources", "run-id-alone", "missing-file"],
)
async def test_bad_arguments_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await revbridge(*argv) == 2
    assert len(lines(capsys.readouterr().err)) == 1


@pytest.mark.parametrize(
    "content", ["this is not json\n", '{"events": []}', '{"no": "events"}'], ids=str
)
async def test_a_file_that_is_not_a_history_is_a_usage_error(
    tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "DunningWorkflow__bad.json"
    bad.write_text(content)
    assert await revbridge(str(RECOVERED), str(bad)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing replayed: files are all read before the first replay
    [line] = lines(captured.err)
    assert str(bad) in line


async def test_unreachable_server_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    assert await revbridge("--workflow-id", "anything") == 2
    [line] = lines(capsys.readouterr().err)
    assert "cannot reach Temporal at 127.0.0.1:1" in line


# --- from a real server --------------------------------------------------------------------------


@pytest.fixture
def server_address(temporal_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch) -> str:
    address = temporal_env.client.service_client.config.target_host
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", temporal_env.client.namespace)
    return address


@pytest.fixture
async def waiting_dunning(
    worker: None, client: Client, sandbox_urls: dict[str, str], uid: str
) -> AsyncIterator[str]:
    """A real DunningWorkflow on the session worker (Chargebee × Salesforce sandboxes), parked
    waiting for the payment; started the way the webhook service starts it, signal-with-start."""
    globex = DEMO_CUSTOMERS[1]
    for vendor, body in (
        ("chargebee", chargebee_seed((globex,), uid)),
        ("salesforce", salesforce_seed((globex,), uid)),
    ):
        httpx.post(sandbox_urls[vendor] + "/_sandbox/seed", json=body).raise_for_status()
    ids = globex.ids(uid)
    event = PaymentFailed(
        billing="chargebee",
        event_id=f"ev_{uid}",
        invoice_id=ids["invoice"],
        customer_id=ids["customer"],
        amount_due=globex.invoice_total,
        occurred_at=datetime.now(UTC),
    )
    handle = await client.start_workflow(
        WORKFLOW_TYPE,
        DunningInput(billing="chargebee", invoice_id=ids["invoice"]),
        id=f"dunning:chargebee:{ids['invoice']}",
        task_queue=names.TASK_QUEUE,
        start_signal=names.SIGNAL_PAYMENT_FAILED,
        start_signal_args=[event],
    )
    stage = None
    for _ in range(200):
        with contextlib.suppress(RPCError, WorkflowQueryFailedError):  # first task not done yet
            stage = (await handle.query("status", result_type=DunningStatus)).stage
        if stage == "waiting for payment":
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"{handle.id} did not reach 'waiting for payment' (at {stage!r})")
    yield handle.id
    await handle.terminate("replay test done")


async def _wait_visible(client: Client, query: str, within_s: float = 10.0) -> None:
    for _ in range(int(within_s / 0.1)):
        if (await client.count_workflows(query)).count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"nothing visible for {query!r}")


async def test_replay_by_workflow_id_and_by_query(
    server_address: str,
    waiting_dunning: str,
    client: Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wf_id = waiting_dunning
    assert await revbridge("--workflow-id", wf_id) == 0
    out = lines(capsys.readouterr().out)
    assert out[0].startswith(f"ok  {wf_id} (DunningWorkflow, ")
    assert out[-1] == "replayed 1: 1 ok, 0 failed"

    run_id = (await client.get_workflow_handle(wf_id).describe()).run_id
    assert await revbridge("--workflow-id", wf_id, "--run-id", run_id) == 0
    capsys.readouterr()

    query = f"WorkflowType='DunningWorkflow' AND ExecutionStatus='Running' AND WorkflowId='{wf_id}'"
    await _wait_visible(client, query)
    assert await revbridge("--query", query) == 0
    out = lines(capsys.readouterr().out)
    assert len(out) == 2 and out[0].startswith(f"ok  {wf_id} (DunningWorkflow, ")
    assert out[1] == "replayed 1: 1 ok, 0 failed"

    # the same running history, fetched by the server source, fails the unpatched reorder
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli.replay, "default_workflows", lambda: [ReorderedDunning])
        assert await revbridge("--workflow-id", wf_id) == 1
    assert lines(capsys.readouterr().out)[0].startswith(f"FAIL {wf_id}: nondeterministic — ")


async def test_replay_a_file_exported_by_the_temporal_cli(
    server_address: str, waiting_dunning: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exported = tmp_path / "DunningWorkflow__exported.json"
    shown = subprocess.run(  # noqa: S603 - our pinned binary, fixed arguments
        [
            str(temporal_binary()),
            "workflow",
            "show",
            "--address",
            server_address,
            "--workflow-id",
            waiting_dunning,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    exported.write_text(shown.stdout)
    assert await revbridge(str(exported)) == 0
    assert lines(capsys.readouterr().out)[0].startswith(f"ok  {exported.stem} (DunningWorkflow, ")


async def test_no_such_workflow_and_bad_query_are_usage_errors(
    server_address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await revbridge("--workflow-id", "no-such-workflow-anywhere") == 2
    [line] = lines(capsys.readouterr().err)
    assert "no-such-workflow-anywhere" in line and "NOT_FOUND" in line

    assert await revbridge("--query", "this is not = a query (") == 2
    assert len(lines(capsys.readouterr().err)) == 1

    # a valid query that matches nothing is not an error: nothing to break
    assert await revbridge("--query", "WorkflowId='no-such-workflow-anywhere'") == 0
    captured = capsys.readouterr()
    assert lines(captured.out) == ["replayed 0: 0 ok, 0 failed"]
    assert lines(captured.err) == ["no workflow executions match the query"]


async def test_progress_goes_to_stderr_every_n_when_piped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.replay, "PROGRESS_EVERY", 2)
    assert await revbridge(str(RECOVERED), str(RECOVERED), str(RECOVERED)) == 0
    assert lines(capsys.readouterr().err) == ["[2/3] replayed"]
