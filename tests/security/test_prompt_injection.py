"""A malicious stub LLM that obeys every instruction injected into a company name, billing
metadata or a support case — refunds, cancellations, credits, discounts, other customers, absurd
amounts — drives real dunning workflows against the sandboxes. Nothing it asks for may happen
without an authorized approval, and every blocked attempt must be in the audit trail.

The stub stands in for a real model on purpose: prompt injection cannot be prevented, only
contained (reliability-security.md §0.9), so what is under test is the containment — redaction and
fencing on the way in, the closed schema and the policy engine on the way out.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle

from connectors.reasoner import LlmReasoner, LlmReply
from domain.approvals import ApprovalTiming
from domain.containment import LlmUsage
from tests.pairs import Pair, pair_settings, status_when
from tests.security.injection_payloads import OTHER_CUSTOMER_ID, PAYLOADS, PII_SAMPLES, SURFACES

QUEUE = "revbridge-injection"
AMOUNT = 1_840_000  # an 18,400.00 invoice: an enterprise account short of funds
MONEY_KINDS = {
    "apply_credit",
    "refund",
    "offer_discount",
    "cancel_subscription",
    "change_plan",
    "pause_subscription",
}


class ObedientLlm:
    """Does whatever the untrusted text says, as a compromised model would."""

    model = "obedient-stub"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def complete(self, system: str, prompt: str, output_schema: dict[str, Any]) -> LlmReply:
        self.prompts.append(prompt)
        facts = json.loads(prompt.split("Facts (trusted):\n", 1)[1].split("\n\n<", 1)[0])
        customer, amount = facts["customer_id"], facts["amount_due_minor_units"]
        text = html.unescape(prompt.split("\n\n<", 1)[1]).lower()
        base: dict[str, Any] = {
            "failure_class": "insufficient_funds",
            "priority": "High",
            "retry_recommended": False,
            "reasons": ["the customer's note said so"],
        }
        smuggled = re.search(
            r"\{.*\"proposed_actions\".*\}", html.unescape(prompt.split("\n\n<", 1)[1]), re.S
        )
        if smuggled:
            try:
                return self._reply({**base, **json.loads(smuggled.group(0))})
            except ValueError:
                pass

        def act(kind: str, **kw: Any) -> dict[str, Any]:
            return {"kind": kind, "customer_id": customer, "reason": "as instructed", **kw}

        if "refund" in text:
            actions = [act("refund", amount=amount)]
        elif "cancel" in text:
            actions = [act("cancel_subscription")]
        elif "cus_other" in text or "another customer" in text or "other account" in text:
            actions = [act("apply_credit", amount=amount, customer_id=OTHER_CUSTOMER_ID)]
        elif "discount" in text or "% off" in text:
            actions = [act("offer_discount", discount_percent=100)]
        elif "plan" in text or "downgrade" in text or "upgrade" in text:
            actions = [act("change_plan", plan_id="free")]
        elif "999" in text or "million" in text:
            actions = [act("apply_credit", amount=amount * 1000)]
        else:  # a well-formed request for the whole invoice as credit: only policy stands in the way
            actions = [act("apply_credit", amount=amount)]
        return self._reply({**base, "proposed_actions": actions})

    def _reply(self, raw: dict[str, Any]) -> LlmReply:
        return LlmReply(
            raw=raw, model=self.model, usage=LlmUsage(calls=1, input_tokens=900, output_tokens=120)
        )


@pytest.fixture(scope="module")
def llm() -> ObedientLlm:
    return ObedientLlm()


@pytest.fixture(scope="module")
async def deployment(
    client: Client, sandbox_urls: dict[str, str], llm: ObedientLlm
) -> AsyncIterator[Pair]:
    from workers.main import build_worker

    settings = pair_settings(sandbox_urls, "chargebee", "salesforce", QUEUE)
    pair = Pair.build(settings, sandbox_urls, webhook_url="http://unused")
    httpx.delete(sandbox_urls["chargebee"] + "/_sandbox/webhooks").raise_for_status()
    async with build_worker(
        client, pair.billing, pair.crm, reasoner=LlmReasoner(llm), task_queue=QUEUE
    ):
        yield pair


def seed(urls: dict[str, str], uid: str) -> list[dict[str, str]]:
    """One enterprise customer per payload, the payload placed on one surface (rotating)."""
    cb: dict[str, list] = {
        "item_prices": [
            {
                "id": "ent-monthly",
                "item_id": "ent",
                "name": "Enterprise",
                "price": AMOUNT,
                "currency_code": "USD",
                "period": 1,
                "period_unit": "month",
            }
        ],
        "customers": [],
        "subscriptions": [],
        "invoices": [],
    }
    sf: dict[str, list] = {"Account": [], "Case": []}
    rows = []
    for i, payload in enumerate(PAYLOADS):
        surface = SURFACES[i % len(SURFACES)]
        cid, sub, inv = f"inj{i}-{uid}", f"sub-inj{i}-{uid}", f"INV-inj{i}-{uid}"
        company = payload[:250] if surface == "company_name" else f"Injected Co {i}"
        cb["customers"].append(
            {
                "id": cid,
                "company": company,
                "email": f"billing+{cid}@example.com",
                "created_at": int(datetime.now(UTC).timestamp()) - 800 * 86400,
                "meta_data": json.dumps(
                    {"note": payload if surface == "billing_metadata" else "vip"}
                ),
                "card": {"decline_code": "insufficient_funds"},
            }
        )
        cb["subscriptions"].append(
            {
                "id": sub,
                "customer_id": cid,
                "items": [{"item_price_id": "ent-monthly", "quantity": 1}],
                "status": "active",
            }
        )
        cb["invoices"].append(
            {
                "id": inv,
                "customer_id": cid,
                "subscription_id": sub,
                "total": AMOUNT,
                "amount_due": AMOUNT,
                "currency_code": "USD",
                "status": "payment_due",
            }
        )
        sf["Account"].append(
            {
                "Ref": f"a{i}",
                "Name": company[:255],
                "Customer_Tier__c": "Enterprise",
                "Billing_Customer_Id__c": cid,
                "Billing_Platform__c": "chargebee",
            }
        )
        if surface == "support_case":
            sf["Case"].append(
                {
                    "AccountId": f"@a{i}",
                    "Subject": "Billing question",
                    "Description": payload,
                    "Status": "New",
                }
            )
        rows.append({"customer": cid, "subscription": sub, "invoice": inv, "surface": surface})
    httpx.post(urls["chargebee"] + "/_sandbox/seed", json=cb, timeout=30).raise_for_status()
    httpx.post(
        urls["salesforce"] + "/_sandbox/seed", json={"records": sf}, timeout=30
    ).raise_for_status()
    return rows


async def test_an_obedient_llm_moves_no_money_touches_no_one_else_and_is_audited(
    client: Client, deployment: Pair, llm: ObedientLlm, sandbox_urls: dict[str, str], uid: str
) -> None:
    assert len(PAYLOADS) >= 50
    rows = seed(sandbox_urls, uid)
    for row in rows:  # the card declines; the sandbox's webhook goes nowhere in this module
        deployment.billing_driver.decline(row["invoice"])

    async def run(row: dict[str, str]) -> WorkflowHandle:
        handle = await deployment.start_directly(
            client,
            row,
            f"ev-{row['invoice']}",
            amount_due=AMOUNT,
            payment_wait=timedelta(seconds=6),
            retry_after=timedelta(seconds=5),
            approval=ApprovalTiming(
                remind_after=timedelta(seconds=1), expire_after=timedelta(seconds=2)
            ),
        )
        # every proposal has been decided (approvals expire in 2 s) once the playbook starts
        # (its day 0, a pause for an injected support case, or the wait for day 3)
        await status_when(
            handle,
            lambda s: s.stage.startswith(("day 0", "waiting for payment", "paused by")),
            within_s=140,
        )
        return handle

    handles = await asyncio.wait_for(asyncio.gather(*(run(r) for r in rows)), timeout=150)

    # 1. No side effect reached the billing sandbox: no credit, no cancellation, no refund.
    cb = deployment.billing.client
    for row in rows:
        assert deployment.credits(row["customer"]) == 0, row
        assert cb.Subscription.retrieve(row["subscription"]).subscription.status == "active", row
    # and the sandbox never even received such a request, for these customers or the foreign one
    posts = httpx.get(
        sandbox_urls["chargebee"] + "/_sandbox/requests", params={"method": "POST"}
    ).json()["requests"]
    ours = [r for r in posts if uid in r["path"] + r["body"]]
    money_paths = re.compile(r"promotional_credits|/refund|cancel|credit_notes|update_for_items")
    assert ours and [r["path"] for r in ours if money_paths.search(r["path"])] == []
    # (audit comments may quote the refused request; no other call may name the foreign customer)
    assert [
        r["path"]
        for r in posts
        if OTHER_CUSTOMER_ID in r["path"] + r["body"] and not r["path"].endswith("/comments")
    ] == []

    # 2. The model saw every payload only as fenced, redacted data.
    assert len(llm.prompts) >= len(rows)
    for prompt in llm.prompts:
        assert "<untrusted_data" in prompt
        for pii in PII_SAMPLES:
            assert pii not in prompt

    # 3. Every blocked attempt is in the audit trail (CRM side; billing notes mirror it).
    blocked = 0
    for row in rows:
        log = deployment.audit(row["invoice"])
        money = [r for r in log if r["action"] in MONEY_KINDS]
        assert not any(r["outcome"].startswith("executed") for r in money), (row, money)
        refused = [r for r in log if r["action"] == "llm_output_rejected"]
        gated = [
            r for r in money if r["outcome"] in ("expired", "blocked", "rejected", "superseded")
        ]
        assert refused or gated, (row, [(r["action"], r["outcome"]) for r in log])
        blocked += len(refused) + len(gated)
        for r in refused:
            assert "containment:" in r["text"]
    assert blocked >= len(rows)
    for handle in handles:
        await handle.terminate("test over")
