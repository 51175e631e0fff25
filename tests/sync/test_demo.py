"""`revbridge demo --scenario sync` (cli/demo_sync.py ``run_scenario``) on Chargebee × HubSpot and
Chargebee × Salesforce, each on sandboxes of its own with a worker on its own task queue: the
plan change on the CRM account at once, the minor changes in one bulk write, the conflict on the
billing contact waiting in the review queue, and the backfill dry run's summary."""

from __future__ import annotations

import os
import uuid

import pytest
from temporalio.testing import WorkflowEnvironment

from cli.config import CliError
from cli.demo_sync import check_pair, run_scenario
from connectors.registry import build_billing, build_crm
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.salesforce import SalesforceEmulator
from tests.pairs import CB_KEY, HS_SECRET, HS_TOKEN, SF_ID, SF_SECRET, pair_settings


def test_the_pairs_the_demo_runs_on() -> None:
    check_pair("chargebee", "salesforce")
    check_pair("chargebee", "hubspot")
    with pytest.raises(CliError, match="Chargebee × HubSpot"):
        check_pair("stripe", "hubspot")


@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
async def test_the_sync_demo(
    crm: str, temporal_env: WorkflowEnvironment, sandbox_urls: dict[str, str]
) -> None:
    from workers.main import build_worker

    cb = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=None)
    if crm == "hubspot":
        other = HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET)
    else:
        other = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    uid = uuid.uuid4().hex[:6]
    with ServerThread({cb: 0, other: 0}) as thread:
        urls = {**sandbox_urls, **thread.urls}
        settings = pair_settings(urls, "chargebee", crm, f"demo-sync-{crm}-{uid}")
        os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
        lines: list[str] = []
        client = temporal_env.client
        async with build_worker(
            client, build_billing(settings), build_crm(settings), task_queue=settings.task_queue
        ):
            summary = await run_scenario(
                settings,
                client,
                lines.append,
                ui_url="http://ui.test",
                suffix=uid,
                flusher=f"account-sync-flush:chargebee:{crm}-demo-{uid}",
            )
            for wf_id in (
                summary["conflict"]["workflow_id"],
                f"account-sync-flush:chargebee:{crm}-demo-{uid}",
            ):
                await client.get_workflow_handle(wf_id).terminate("test over")
            flush = summary["batched_flush"]
    assert summary["pair"] == {"billing": "chargebee", "crm": crm}
    change = summary["plan_change"]
    assert change["mrr_after"] < change["mrr_before"]  # down to one seat
    assert flush["bulk_calls"] >= 1 and flush["records_written"] >= 2
    conflict = summary["conflict"]
    assert conflict["field"] == "billing_contact"
    assert conflict["crm_value"] == f"ap+{uid}@initech.example"
    assert conflict["billing_value"] == f"finance+{uid}@initech.example"
    backfill = summary["backfill"]
    assert backfill["dry_run"] and backfill["linked_already"] >= 3
    assert any("waiting in the review queue" in line for line in lines)
    assert any(line.startswith("  ✓ backfill (dry run)") for line in lines)
