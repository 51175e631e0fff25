"""`revbridge demo --scenario reconcile` on a fresh Chargebee × Salesforce stack of its own: the
planted book is found exactly, the MRR fixed by itself, the rest waiting for a person, and the
report written."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from cli.demo_reconcile import run_scenario
from connectors.registry import build_billing, build_crm
from domain import reconcile as rx
from harness.reconcile_book import planted_kinds
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.salesforce import SalesforceEmulator
from tests.pairs import CB_KEY, SF_ID, SF_SECRET, pair_settings


async def test_the_reconcile_demo(
    client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from workers.main import build_worker

    monkeypatch.setenv("REVBRIDGE_REPORT_DIR", str(tmp_path))
    cb_em = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=None)
    # fix workflows are named by exception ID, which names the CRM's records: on a shared server
    # another test's book (the same emulator IDs) would own them, so this book's IDs are its own
    sf_em = SalesforceEmulator(
        client_id=SF_ID, client_secret=SF_SECRET, id_base=uuid.uuid4().int % 10**9
    )
    with ServerThread({cb_em: 0, sf_em: 0}) as thread:
        urls: dict[str, Any] = dict(thread.urls)
        for missing in ("stripe", "hubspot"):
            urls.setdefault(missing, "http://127.0.0.1:9")
        tq = f"reconcile-demo-{uuid.uuid4().hex[:6]}"
        settings = pair_settings(urls, "chargebee", "salesforce", tq)
        billing, crm = build_billing(settings), build_crm(settings)
        lines: list[str] = []
        async with build_worker(client, billing, crm, task_queue=tq):
            summary = await run_scenario(
                settings, billing, crm, client, lines.append, f"demo{uuid.uuid4().hex[:6]}"
            )
        planted = planted_kinds(None)
        assert summary["found"] == len(planted)
        assert sorted(summary["by_kind"]) == sorted(
            k.value for k in planted.values() if k is not rx.Kind.CRM_FIELD_DRIFT
        )
        assert summary["auto_fixed"] == 1 and summary["sent_for_approval"] == len(planted) - 1
        assert Path(summary["report_html"]).exists()
        assert any("waiting for finance or RevOps" in line for line in lines)
        async for wf in client.list_workflows(f"WorkflowType = '{rx.FIX_WORKFLOW_TYPE}'"):
            if wf.status == WorkflowExecutionStatus.RUNNING and wf.task_queue == tq:
                await client.get_workflow_handle(wf.id).terminate("test over")
