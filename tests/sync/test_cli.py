"""A shared-field conflict through `revbridge sync conflicts` and `revbridge sync resolve` on
Chargebee × Salesforce (full stack, its own worker): both sides change the billing contact, the
conflict is listed with both values, resolved from the CLI for the CRM's value, and that value is
written to billing once — even though the first write's answer was lost (committed, then timed
out: the retry sends the same idempotency key and Chargebee replays its answer)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cli.sync import open_conflicts, render_conflicts, resolve
from domain import golden
from domain.golden import Side, SyncSignal, SyncStatus
from infra.connection import client_connect_kwargs
from sandbox.scenarios import DunningCustomer
from tests.pairs import Pair, eventually, pair_settings

QUEUE = "revbridge-sync-cli"


def signal(customer: str, side: Side, n: int, account: str | None = None) -> SyncSignal:
    return SyncSignal(
        billing="chargebee",
        customer_id=customer,
        side=side,
        event_id=f"cli-{customer}-{n}",
        occurred_at=datetime.now(UTC),
        crm_account_id=account,
    )


async def test_a_conflict_is_listed_and_resolved_from_the_cli(
    temporal_env: WorkflowEnvironment,
    sandbox_urls: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    uid: str,
) -> None:
    from workers.main import build_worker

    # approvers are not verified on this stack (a dev stack's identity-key file in the working
    # directory would turn that on: then `revbridge sync resolve` needs REVBRIDGE_ID_TOKEN)
    (tmp_path / "no-identity-keys").write_text("")
    monkeypatch.setenv("REVBRIDGE_IDENTITY_KEYS_FILE", str(tmp_path / "no-identity-keys"))
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_env.client.service_client.config.target_host)
    client = await Client.connect(**client_connect_kwargs())
    settings = pair_settings(sandbox_urls, "chargebee", "salesforce", QUEUE)
    pair = Pair.build(settings, sandbox_urls, "")
    customer = DunningCustomer("clisync", "Cli Sync Co", "SMB", "team-monthly", 4_900, 2, 90, None)
    ids = pair.seed(customer, uid)
    cid, account = ids["customer"], pair.account_id(ids["customer"])
    assert account
    wf_id = golden.account_workflow_id("chargebee", cid)
    async with build_worker(client, pair.billing, pair.crm, task_queue=QUEUE):
        handle = await client.start_workflow(
            golden.WORKFLOW_TYPE,
            golden.AccountSyncInput(billing="chargebee", customer_id=cid),
            id=wf_id,
            task_queue=QUEUE,
            start_signal=golden.SIGNAL_CHANGE,
            start_signal_args=[signal(cid, Side.BILLING, 1)],
        )
        await eventually(
            lambda: handle.query("status", result_type=SyncStatus),
            lambda s: s.immediate_writes >= 1 and s.stage == "waiting for a change",
            "the first sync",
        )
        # both sides change the billing contact before either reached the other
        pair.billing.client.Customer.update(cid, {"email": f"finance+{uid}@example.com"})
        pair.crm.client.Account.update(
            account, {"Billing_Contact_Email__c": f"ap+{uid}@example.com"}
        )
        await handle.signal(golden.SIGNAL_CHANGE, signal(cid, Side.CRM, 2, account))
        rows = await eventually(
            lambda: open_conflicts(client),
            lambda rows: any(w == wf_id for w, _ in rows),
            "the conflict listed by `revbridge sync conflicts`",
        )
        (conflict,) = [c for w, c in rows if w == wf_id]
        assert conflict.field == "billing_contact"
        assert conflict.billing_value == f"finance+{uid}@example.com"
        assert conflict.crm_value == f"ap+{uid}@example.com"
        assert "revbridge sync resolve" in render_conflicts(rows)

        # the billing write's answer is lost after it committed: the retry replays the key
        httpx.post(
            pair.urls["chargebee"] + "/_sandbox/faults",
            json={
                "kind": "commit_then_timeout",
                "method": "POST",
                "path": f"/api/v2/customers/{cid}",
                "delay_s": 3,
                "times": 1,
            },
        ).raise_for_status()
        await resolve(wf_id, "billing_contact", "crm", "bob@example.com", "the CRM is right")
        await eventually(
            lambda: handle.query("status", result_type=SyncStatus),
            lambda s: s.conflicts_resolved == 1 and s.immediate_writes == 2,
            "the resolution written",
            within_s=30,
        )
        email = pair.billing.client.Customer.retrieve(cid).customer.email
        assert email == f"ap+{uid}@example.com"
        writes = [
            r
            for r in httpx.get(pair.urls["chargebee"] + "/_sandbox/requests").json()["requests"]
            if r["method"] == "POST"
            and r["path"] == f"/api/v2/customers/{cid}"
            and "ap%2B" in str(r.get("body")) + str(r.get("query"))
            or (
                r["method"] == "POST"
                and r["path"] == f"/api/v2/customers/{cid}"
                and f"ap+{uid}" in str(r.get("body"))
            )
        ]
        keys = {r["headers"].get("chargebee-idempotency-key") for r in writes}
        assert len(writes) == 2 and len(keys) == 1  # sent twice, one key
        events = pair.billing.client.Event.list(
            {"event_type": {"is": "customer_changed"}, "limit": 100}
        ).list
        customers = [e.event.raw_data["content"]["customer"] for e in events]
        changed_to = [
            c for c in customers if c["id"] == cid and c.get("email") == f"ap+{uid}@example.com"
        ]
        assert len(changed_to) == 1  # one effect
        audit = pair.crm.audit_log(wf_id)
        resolved = [a for a in audit if a["action"] == "resolve_conflict"]
        assert len(resolved) == 1 and "bob@example.com" in resolved[0]["text"]
        await handle.terminate("test over")
