"""``revbridge report recovery``: runs grouped by the draft variant in their memo, recovery rate
and time to recover per variant, read from visibility and results (a fake client here; the
bench runs it on a live stack)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from cli.main import parser
from cli.report import RunRow, collect, render, summarize, variant_of
from domain.dunning import DunningResult

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def row(variant: str, outcome: str, hours: float) -> RunRow:
    return RunRow(variant, outcome, T0, T0 + timedelta(hours=hours))


def test_a_run_is_llm_when_any_reminder_was_a_model_draft() -> None:
    assert variant_of({"draft_variants": "llm,template"}) == "llm"
    assert variant_of({"draft_variants": "template"}) == "template"
    assert variant_of({}) == "none"


def test_rates_and_hours_per_variant_leave_out_runs_with_nothing_to_recover() -> None:
    rows = [
        row("llm", "recovered", 10),
        row("llm", "recovered", 30),
        row("llm", "written_off", 200),
        row("template", "recovered", 50),
        row("template", "written_off", 200),
        row("template", "already_paid", 0),
    ]
    s = summarize(rows)
    assert s["llm"] == {
        "runs": 3,
        "recovered": 2,
        "recovery_rate": 0.667,
        "median_hours_to_recover": 20.0,
        "mean_hours_to_recover": 20.0,
    }
    assert (s["template"]["runs"], s["template"]["recovery_rate"]) == (2, 0.5)
    assert s["none"]["recovery_rate"] is None
    table = render(s)
    assert "66.7%" in table and "50.0%" in table


class FakeExecution:
    def __init__(self, wf_id: str, memo: dict[str, Any], hours: float) -> None:
        self.id, self.run_id, self._memo = wf_id, "run-1", memo
        self.start_time, self.close_time = T0, T0 + timedelta(hours=hours)

    async def memo(self) -> dict[str, Any]:
        return self._memo


class FakeClient:
    def __init__(self, runs: dict[str, tuple[dict[str, Any], str, float]]) -> None:
        self.runs = runs
        self.queries: list[str] = []

    async def list_workflows(self, query: str) -> Any:
        self.queries.append(query)
        for wf_id, (memo, _, hours) in self.runs.items():
            yield FakeExecution(wf_id, memo, hours)

    def get_workflow_handle(self, wf_id: str, **_: Any) -> Any:
        outcome = self.runs[wf_id][1]

        class Handle:
            async def result(self, follow_runs: bool = True) -> DunningResult:
                return DunningResult(outcome=outcome, invoice_id="INV-1")

        return Handle()


def test_collect_reads_memo_result_and_times_of_completed_dunning_runs() -> None:
    client = FakeClient(
        {
            "dunning:chargebee:INV-1": ({"draft_variants": "llm"}, "recovered", 12),
            "dunning:chargebee:INV-2": ({"draft_variants": "template"}, "written_off", 336),
        }
    )
    rows = asyncio.run(collect(client, "StartTime > '2026-11-01'"))
    assert [(r.variant, r.outcome) for r in rows] == [
        ("llm", "recovered"),
        ("template", "written_off"),
    ]
    assert "WorkflowType = 'DunningWorkflow'" in client.queries[0]
    assert "ExecutionStatus = 'Completed'" in client.queries[0]
    assert client.queries[0].endswith("AND (StartTime > '2026-11-01')")


def test_the_cli_has_report_recovery() -> None:
    args = parser().parse_args(["report", "recovery", "--json"])
    assert args.report_command == "recovery" and args.json
