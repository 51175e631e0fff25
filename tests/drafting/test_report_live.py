"""``revbridge report recovery`` on real runs (issue 22): two dunning runs on the dev server —
one from a worker that writes templates, one from a worker whose reminders a model drafts (the
real Anthropic client on the Anthropic sandbox) — on Chargebee × Salesforce, mailing through the
SMTP mailbox; each customer pays after the first reminder in the Chargebee sandbox, whose signed
webhook reaches the deployment's webhook service and closes the run. The report command's own
code (``cli.report.recovery``: visibility query, memo, result) then shows one recovered run per
variant."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.policy import DEFAULT_POLICY_DIR
from cli.report import recovery
from connectors.anthropic_llm import AnthropicLlm
from connectors.email import SmtpMailer
from connectors.reasoner import LlmReasoner
from domain.dunning import DunningResult
from sandbox.anthropic import AnthropicEmulator, tool_reply
from sandbox.framework import ServerThread
from sandbox.mailbox import MailboxEmulator
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.pairs import ANTHROPIC_KEY, Pair, eventually, status_when
from workers.main import build_worker

#: SMB, expired card (no retry): only the customer's payment recovers it
NORTHWIND = DEMO_CUSTOMERS[0]


def _policies(root: Path, drafting: bool) -> Path:
    target = root / ("llm" if drafting else "template")
    shutil.copytree(DEFAULT_POLICY_DIR, target)
    if drafting:
        d = target / "drafting.yaml"
        d.write_text(d.read_text().replace("llm_kinds: []", "llm_kinds: [reminder]"))
    return target


@pytest.mark.parametrize("pair_deployment", [("chargebee", "salesforce")], indirect=True)
async def test_report_recovery_reads_one_recovered_run_per_variant(
    temporal_env: WorkflowEnvironment,
    pair: Pair,
    anthropic_em: AnthropicEmulator,
    anthropic_url: str,
    tmp_path: Path,
    uid: str,
) -> None:
    client = temporal_env.client
    mailbox = MailboxEmulator(starttls=False)
    llm = AnthropicLlm(api_key=ANTHROPIC_KEY, base_url=anthropic_url, timeout_s=5.0)
    ids_by: dict[str, dict[str, str]] = {}
    # the failures start the runs on these workers (not through the deployment's webhook route);
    # the payments' webhooks go to the webhook service again below
    httpx.delete(pair.billing_url + "/_sandbox/webhooks").raise_for_status()
    for variant in ("template", "llm"):
        customer = dataclasses.replace(NORTHWIND, key=f"{variant}rep")
        ids_by[variant] = pair.seed(customer, uid)
        await asyncio.to_thread(pair.billing_driver.decline, ids_by[variant]["invoice"])
    inv = ids_by["llm"]["invoice"]
    amount = f"{NORTHWIND.invoice_total / 100:,.2f} USD"
    anthropic_em.script(
        [
            tool_reply(
                {
                    "subject": f"Payment for invoice {inv} did not go through",
                    "body": f"Hello,\n\nWe could not collect {amount} for invoice {inv}. Please "
                    "add a current card.\n\nThank you.",
                    "language": "en",
                }
            )
        ]
    )
    with ServerThread({mailbox: 0}):
        port = mailbox.start_smtp()
        try:
            queues = {v: f"report-{v}-{uuid.uuid4().hex[:6]}" for v in ("template", "llm")}
            async with (
                build_worker(
                    client,
                    pair.billing,
                    pair.crm,
                    task_queue=queues["template"],
                    policy_dir=_policies(tmp_path, drafting=False),
                    mailer=SmtpMailer("127.0.0.1", port, "billing@revbridge.test"),
                ),
                build_worker(
                    client,
                    pair.billing,
                    pair.crm,
                    reasoner=LlmReasoner(llm),
                    task_queue=queues["llm"],
                    policy_dir=_policies(tmp_path, drafting=True),
                    mailer=SmtpMailer("127.0.0.1", port, "billing@revbridge.test"),
                ),
            ):
                handles = {}
                for variant, ids in ids_by.items():
                    handles[variant] = await pair.start_directly(
                        client, ids, f"ev_{ids['invoice']}", task_queue=queues[variant]
                    )
                for handle in handles.values():
                    await status_when(handle, lambda s: s.reminders_sent == 1, within_s=60)
                pair.route_billing_webhooks_here()
                for variant, handle in handles.items():
                    ids = ids_by[variant]
                    # the customer pays in Chargebee; its signed webhook closes the run
                    await asyncio.to_thread(
                        pair.billing_driver.pay, ids["invoice"], NORTHWIND.invoice_total
                    )
                    result: DunningResult = await asyncio.wait_for(handle.result(), 60)
                    assert result.outcome == "recovered"
        finally:
            mailbox.stop_smtp()
            llm.close()
    bodies = [m["body"] for m in mailbox.inbox()]
    assert len(bodies) == 2, bodies  # one reminder each
    assert any("Please add a current card" in b for b in bodies), bodies  # the model's
    assert any("(Reminder 1 of 4.)" in b for b in bodies), bodies  # the template
    query = " OR ".join(f"WorkflowId = '{pair.workflow_id(i['invoice'])}'" for i in ids_by.values())

    async def report() -> dict:
        return json.loads(await recovery(True, query))

    summary = await eventually(
        report,
        lambda s: s["llm"]["runs"] == 1 and s["template"]["runs"] == 1,
        "both runs in the visibility store",
        within_s=30,
    )
    for variant in ("llm", "template"):
        assert (summary[variant]["recovered"], summary[variant]["recovery_rate"]) == (1, 1.0)
        assert summary[variant]["median_hours_to_recover"] is not None
    assert summary["none"]["runs"] == 0
