"""Assist mode end to end on Chargebee × Salesforce (issue 22): a failed payment, a model's reminder
(the real Anthropic client on the Anthropic sandbox) that passes containment, a Salesforce task
with the exact text and its SHA-256, an approval, and exactly that text in the mailbox — once, a
repeated approval changing nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.policy import DEFAULT_POLICY_DIR
from connectors.anthropic_llm import AnthropicLlm
from connectors.email import SmtpMailer
from connectors.reasoner import LlmReasoner
from domain.approvals import SIGNAL, ApprovalSignal, Decision, PendingApproval
from domain.drafts import SHA_PREFIX, draft_sha256
from domain.policy import ActionKind
from sandbox.anthropic import AnthropicEmulator, tool_reply
from sandbox.framework import ServerThread
from sandbox.mailbox import MailboxEmulator
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.pairs import ANTHROPIC_KEY, Pair, eventually, status_when
from workers.main import build_worker

#: Initech pays by card and its processing_error is a code the rules know: the assessment asks
#: no model, so the one scripted reply is the reminder's
INITECH = dataclasses.replace(DEMO_CUSTOMERS[2])
REVOPS = "bob@example.com"


@pytest.fixture
def assist_policies(tmp_path: Path) -> Path:
    """The packaged policies with dunning in assist mode and only reminders drafted by a model."""
    target = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, target)
    modes = (target / "modes.yaml").read_text()
    (target / "modes.yaml").write_text(modes.replace("  dunning: auto", "  dunning: assist"))
    drafting = (target / "drafting.yaml").read_text()
    (target / "drafting.yaml").write_text(
        drafting.replace("llm_kinds: []", "llm_kinds: [reminder]")
    )
    return target


async def pending_kind(handle: object, kind: ActionKind) -> PendingApproval:
    async def probe() -> list[PendingApproval]:
        return await handle.query("pending_approvals", result_type=list[PendingApproval])  # type: ignore[attr-defined]

    found = await eventually(
        probe, lambda p: any(a.action.kind is kind for a in p), f"a pending {kind.value}", 60
    )
    return next(a for a in found if a.action.kind is kind)


async def approve(handle: object, pending: PendingApproval) -> None:
    approver = pending.eligible_approvers[0] if pending.eligible_approvers else REVOPS
    await handle.signal(  # type: ignore[attr-defined]
        SIGNAL,
        ApprovalSignal(action_id=pending.action_id, decision=Decision.APPROVE, approver=approver),
    )


@pytest.mark.parametrize("pair_deployment", [("chargebee", "salesforce")], indirect=True)
async def test_assist_mode_sends_exactly_the_approved_model_draft_once(
    temporal_env: WorkflowEnvironment,
    pair: Pair,
    anthropic_em: AnthropicEmulator,
    anthropic_url: str,
    assist_policies: Path,
    uid: str,
) -> None:
    client = temporal_env.client
    httpx.delete(pair.billing_url + "/_sandbox/webhooks").raise_for_status()
    ids = pair.seed(INITECH, uid)
    amount = INITECH.invoice_total
    subject = f"Payment for invoice {ids['invoice']} did not go through"
    body = (
        f"Hello,\n\nWe could not collect {amount / 100:,.2f} USD for invoice {ids['invoice']}. "
        "Please check the payment method on file.\n\nThank you."
    )
    anthropic_em.script([tool_reply({"subject": subject, "body": body, "language": "en"})])
    await asyncio.to_thread(pair.billing_driver.decline, ids["invoice"])

    mailbox = MailboxEmulator(starttls=False)
    llm = AnthropicLlm(api_key=ANTHROPIC_KEY, base_url=anthropic_url, timeout_s=5.0)
    queue = f"drafting-assist-{uuid.uuid4().hex[:6]}"
    with ServerThread({mailbox: 0}):
        port = mailbox.start_smtp()
        try:
            async with build_worker(
                client,
                pair.billing,
                pair.crm,
                reasoner=LlmReasoner(llm),
                task_queue=queue,
                policy_dir=assist_policies,
                mailer=SmtpMailer("127.0.0.1", port, "billing@revbridge.test"),
            ):
                handle = await pair.start_directly(client, ids, f"ev_{uid}", task_queue=queue)
                # assist mode: the case waits for a person too
                case = await pending_kind(handle, ActionKind.CREATE_CASE)
                await approve(handle, case)
                send = await pending_kind(handle, ActionKind.SEND_EMAIL)
                sha = draft_sha256(subject, body)
                assert send.action.subject_id == SHA_PREFIX + sha
                assert send.action.origin == "llm"
                assert mailbox.inbox() == []  # nothing before the approval
                account = pair.account_id(ids["customer"])
                assert account is not None
                (task,) = [
                    t
                    for t in pair.crm_driver.tasks(account)
                    if t["subject"].startswith("Approve & send reminder 1")
                ]
                assert body in task["description"] and sha in task["description"]
                assert send.action_id in task["description"]
                await approve(handle, send)
                await status_when(handle, lambda s: s.reminders_sent == 1, within_s=60)
                await approve(handle, send)  # again: already decided, nothing sent
                await eventually(
                    lambda: asyncio.sleep(0.5, result=len(mailbox.inbox())),
                    lambda n: n >= 1,
                    "the approved email",
                )
                await asyncio.sleep(1.0)
                await handle.terminate("test over")
        finally:
            mailbox.stop_smtp()
            llm.close()
    (mail,) = mailbox.inbox()
    assert mail["subject"] == subject
    assert mail["body"].replace("\r\n", "\n").strip() == body
    log = pair.audit(ids["invoice"])
    assert any(r["action"] == "send_email" and "(variant: llm)" in r["text"] for r in log)
