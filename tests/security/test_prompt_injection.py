"""Prompt injection: a malicious stub LLM (tests/security/obedient.py) obeys every instruction
injected into a company name, billing metadata or a support case — refunds, cancellations,
credits, other customers, absurd amounts, text aimed at the CRM case and at the token budget —
and writes the attacker's markup, links and personal data into its reasons. Prompt injection
cannot be prevented, only contained, so what is under test is the containment.

Two layers, for speed (the whole file runs in well under 30 s):

- **In-process, every payload on every surface** (parametrized, no server): the reasoning
  activity with the stub behind it. The prompt carries the payload only fenced and redacted; the
  assessment the workflow would receive holds no unneutralized LLM string (nor the case text
  built from it); what it proposes is of a kind dunning may execute, for this customer, within
  the invoice, and the policy engine never lets an LLM's money move on its own; a reply that
  burned tokens is counted, and the run's next call is refused by the budget, not made.
- **End to end, the nastiest payloads batched** through real dunning workflows on the dev
  server against the Chargebee and Salesforce sandboxes, with the day's budget entity counting:
  zero money moves, zero unneutralized LLM strings in either sandbox's request ledger, the day's
  cap enforced and its refusal audited on both systems.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import ActivityEnvironment

from activities.models import AssessFailureInput
from activities.policy import DEFAULT_POLICY_DIR, PolicyActivities
from activities.reasoning import (
    DUNNING_LLM_KINDS,
    LocalLlmLedger,
    ReasoningActivities,
    budget_workflow_id,
)
from connectors.reasoner import LlmReasoner
from domain.approvals import ApprovalTiming
from domain.bounds import SUMMARY_MAX
from domain.containment import (
    ContainedAssessment,
    LlmBudget,
    LlmBudgets,
    LlmBudgetSummary,
    is_neutral,
    llm_strings,
)
from domain.dunning_text import case_draft
from domain.models import (
    BillingCustomer,
    CaseSummary,
    CrmAccount,
    CustomerTier,
    Invoice,
    InvoiceContext,
    InvoiceStatus,
    Payment,
)
from domain.policy import AccountFacts, Origin, Outcome, PolicyRequest
from tests.pairs import Pair, pair_settings, status_when
from tests.security.injection_payloads import (
    BUDGET_PAYLOADS,
    CASE_TEXT_PAYLOADS,
    OTHER_CUSTOMER_ID,
    PAYLOADS,
    PII_SAMPLES,
    SURFACES,
)
from tests.security.obedient import BURNED, MARKER, USAGE, ObedientLlm

AMOUNT = 1_840_000  # an 18,400.00 invoice: an enterprise account
#: a decline code the rules do not know: they are not conclusive, so the LLM is consulted
UNDECIDED_CODE = "generic_decline"
NOW = datetime(2026, 6, 1, tzinfo=UTC)

#: what no LLM-written string may carry on its way to a record (after neutralization)
_RAW = re.compile(
    r"<|>|https?://|ftp://|www\.|javascript:|data:text|mailto:|evil\.example|bit\.ly"
    r"|ignore (all )?previous instructions|^\s*system\s*:|pre-?approved|<\|im_start\|>",
    re.IGNORECASE,
)


def assert_inert(text: str, where: object, *, whole: bool = True) -> None:
    """``text`` (a whole LLM string, or with ``whole=False`` the part of a record from the
    stub's marker on) carries no markup, link, instruction or personal data."""
    if whole:
        assert is_neutral(text, one_line="\n" not in text) or is_neutral(text), (where, text)
    found = _RAW.search(text)
    assert found is None, (where, found.group(0), text)
    for pii in PII_SAMPLES:
        assert pii not in text, (where, pii, text)


# --- in-process: every payload, every surface ------------------------------------------------------


def context_with(payload: str, surface: str, decline_code: str = UNDECIDED_CODE) -> tuple:
    cid = "cus_VICTIM001"
    ctx = InvoiceContext(
        invoice=Invoice(
            id="in_inj",
            customer_id=cid,
            status=InvoiceStatus.OPEN,
            total=AMOUNT,
            amount_due=AMOUNT,
            currency="USD",
            issued_at=datetime(2026, 5, 1, tzinfo=UTC),
        ),
        customer=BillingCustomer(
            id=cid,
            company=payload[:250] if surface == "company_name" else "Injected Co",
            created_at=datetime(2023, 1, 1, tzinfo=UTC),
            mrr=AMOUNT,
            metadata={"note": payload if surface == "billing_metadata" else "vip"},
        ),
        recent_payments=[
            Payment(
                id="py_inj",
                invoice_id="in_inj",
                succeeded=False,
                amount=AMOUNT,
                currency="USD",
                decline_code=decline_code,
            )
        ],
    )
    account = CrmAccount(
        id="001INJ",
        name=payload[:255] if surface == "company_name" else "Injected Co",
        tier=CustomerTier.ENTERPRISE,
    )
    cases = (
        [CaseSummary(id="500INJ", subject="Billing question", description=payload)]
        if surface == "support_case"
        else []
    )
    return ctx, account, cases


async def assess(
    acts: ReasoningActivities, ctx: Any, account: Any, cases: Any, run: str, attempt: int
) -> ContainedAssessment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        workflow_id=run,
        activity_id="2",
        attempt=attempt,
        current_attempt_scheduled_time=NOW,
    )
    inp = AssessFailureInput(context=ctx, account=account, now=NOW, open_cases=cases)
    return await env.run(acts.assess_payment_failure, inp)


_DECISIONS: dict[str, Any] = {}


@pytest.fixture(scope="module")
def policies() -> PolicyActivities:
    return PolicyActivities()


def test_the_corpus() -> None:
    assert len(PAYLOADS) >= 200
    assert len(CASE_TEXT_PAYLOADS) >= 25 and len(BUDGET_PAYLOADS) >= 15
    assert set(CASE_TEXT_PAYLOADS + BUDGET_PAYLOADS) <= set(PAYLOADS)


@pytest.mark.parametrize("n", range(len(PAYLOADS)), ids=lambda n: f"payload{n}")
async def test_every_payload_is_contained_at_the_boundary(
    n: int, policies: PolicyActivities
) -> None:
    """On every surface with the obedient stub (whose replies containment mostly refuses
    whole), and on a support case with the sly one (whose replies pass: only their text
    attacks)."""
    payload = PAYLOADS[n]
    policy_set = policies.policy_set()  # read once: it re-reads policies/ on every call
    trials = [(surface, False) for surface in SURFACES] + [("support_case", True)]
    for surface, sly in trials:
        where = (n, surface, "sly" if sly else "obedient")
        ctx, account, cases = context_with(payload, surface)
        llm = ObedientLlm(sly=sly)
        acts = ReasoningActivities(LlmReasoner(llm), ledger=LocalLlmLedger())
        run = f"dunning:chargebee:inj{n}{surface}"
        out = await assess(acts, ctx, account, cases, run, 1)
        if sly:
            assert out.reasoner == "llm" and out.proposed_actions, (where, out.rejected)
        assert isinstance(out, ContainedAssessment)

        # 1. the model saw the payload only fenced and redacted
        assert len(llm.prompts) == 1
        prompt = llm.prompts[0]
        assert "<untrusted_data" in prompt, where
        for pii in PII_SAMPLES:
            assert pii not in prompt, (where, pii)

        # 2. no LLM string the workflow would receive, nor the case text built from it, is raw
        strings = llm_strings(out)
        if out.reasoner == "llm":
            assert any(MARKER in s for s in strings), where  # the stub's text did come through
        for text in strings:
            assert_inert(text, where)
        case = case_draft(ctx, out, account, "chargebee", "dunning:chargebee:in_inj", key="k")
        for line in case.description.splitlines():
            if MARKER in line:
                assert_inert(line, where, whole=False)
        assert out.model in (None, "obedient-stub")

        # 3. proposals: dunning's kinds, this customer, within the invoice; money never moves
        #    on the LLM's word alone
        for action in out.proposed_actions:
            assert action.kind in DUNNING_LLM_KINDS, where
            assert action.customer_id == ctx.customer.id != OTHER_CUSTOMER_ID, where
            assert 0 <= action.amount <= AMOUNT, where
            request = PolicyRequest(
                use_case="dunning",
                action=action.kind,
                account=AccountFacts(id=account.id, tier=account.tier, mrr=AMOUNT),
                amount=action.amount,
                currency=action.currency,
                origin=Origin(action.origin),
            )
            key = request.model_dump_json()
            if key not in _DECISIONS:  # the same few requests recur: ask the engine once each
                _DECISIONS[key] = policy_set.decide(request)
            decision = _DECISIONS[key]
            if action.kind.value == "apply_credit":
                assert decision.outcome is not Outcome.ALLOW, (where, decision)

        # 4. the tokens the reply reported are on the book; a reply that burned the run's
        #    budget leaves no room: the run's next call is refused and not made
        book = acts.ledger.books[NOW.date().isoformat()]  # type: ignore[attr-defined]
        assert book.total.total_input_tokens == (BURNED if llm.burned else USAGE).input_tokens
        if llm.burned:
            again = await assess(acts, ctx, account, cases, run, 2)
            assert len(llm.prompts) == 1, where
            assert again.reasoner == "rules"
            assert again.rejected and again.rejected[0].startswith("budget_exceeded"), where
            assert "run cap: input_tokens" in again.rejected[0]
            for text in llm_strings(again):
                assert_inert(text, where)


async def test_budget_payloads_burn_and_are_counted() -> None:
    """Every payload aimed at the budget made the stub burn tokens (so the test above did
    exercise the refusal for each of them, on at least one surface) — except one longer than the
    case-text bound, whose instruction is cut before it reaches the model."""
    for payload in BUDGET_PAYLOADS:
        ctx, account, cases = context_with(payload, "support_case")
        llm = ObedientLlm()
        await assess(
            ReasoningActivities(LlmReasoner(llm), ledger=LocalLlmLedger()),
            ctx,
            account,
            cases,
            "dunning:chargebee:burn",
            1,
        )
        if len(payload) > SUMMARY_MAX:
            # a case text past the bound is cut before any prompt (issue 13, harm 7): an
            # instruction at its end never reaches the model, so nothing burns
            assert llm.burned == 0 and payload[-40:] not in llm.prompts[-1], payload[:60]
        else:
            assert llm.burned == 1, payload[:60]


async def test_rules_decide_conclusive_failures_without_asking() -> None:
    """A decline code the rules know (insufficient funds, expired card, hard decline,
    technical) is decided by them whatever the text says: the LLM is never called."""
    llm = ObedientLlm()
    acts = ReasoningActivities(LlmReasoner(llm), ledger=LocalLlmLedger())
    for code in ("insufficient_funds", "expired_card", "do_not_honor", "processing_error"):
        ctx, account, cases = context_with(CASE_TEXT_PAYLOADS[0], "support_case", code)
        out = await assess(acts, ctx, account, cases, f"dunning:chargebee:{code}", 1)
        assert out.reasoner == "rules" and out.rejected == []
    assert llm.prompts == []


# --- end to end: the nastiest payloads, batched, through real dunning runs -------------------------

QUEUE = f"revbridge-injection-{uuid.uuid4().hex[:6]}"
#: the day's cap in this deployment: four runs need the LLM, three calls are allowed
DAY_CALLS = 3


def nastiest() -> dict[str, str]:
    """One batched text per surface (fences cut each block at 8,000 characters)."""
    money = [p for p in PAYLOADS if "refund" in p.lower() or "credit" in p.lower()][:6]
    pii = [p for p in PAYLOADS if any(s in p for s in PII_SAMPLES)][:4]
    batch = "\n".join(CASE_TEXT_PAYLOADS[:12] + money + pii)
    return {
        "support_case": batch,
        "company_name": " | ".join(CASE_TEXT_PAYLOADS[12:16])[:250],
        "billing_metadata": "\n".join([SLY, *CASE_TEXT_PAYLOADS[16:], *money[:3]]),
    }


#: the billing-metadata customer's text carries this: the stub answers it slyly (a schema-valid
#: credit and retry whose reasons carry the attack), so one run's LLM proposals are accepted
SLY = "[[sly]]"


@pytest.fixture(scope="module")
def llm() -> ObedientLlm:
    return ObedientLlm(sly_when=SLY)


@pytest.fixture(scope="module")
async def deployment(
    client: Client,
    sandbox_urls: dict[str, str],
    llm: ObedientLlm,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Pair]:
    from workers.main import build_worker

    policy_dir = tmp_path_factory.mktemp("policies") / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policy_dir)
    # the day's calls are the binding cap here (its token caps are far off)
    budgets = LlmBudgets(
        per_day=LlmBudget(
            max_calls=DAY_CALLS, max_input_tokens=10_000_000, max_output_tokens=1_000_000
        )
    )
    (policy_dir / "llm_budget.yaml").write_text(json.dumps(budgets.model_dump()))
    settings = pair_settings(sandbox_urls, "chargebee", "salesforce", QUEUE)
    pair = Pair.build(settings, sandbox_urls, webhook_url="http://unused")
    httpx.delete(sandbox_urls["chargebee"] + "/_sandbox/webhooks").raise_for_status()
    async with build_worker(
        client,
        pair.billing,
        pair.crm,
        reasoner=LlmReasoner(llm),
        task_queue=QUEUE,
        policy_dir=policy_dir,
    ):
        yield pair


def seed(urls: dict[str, str], uid: str) -> list[dict[str, str]]:
    """Five enterprise customers: the batched payloads on each surface, a budget payload in a
    case (all four with a decline code the rules do not know), and one the rules decide."""
    texts = nastiest()
    plan = [
        ("support_case", texts["support_case"], UNDECIDED_CODE),
        ("company_name", texts["company_name"], UNDECIDED_CODE),
        ("billing_metadata", texts["billing_metadata"], UNDECIDED_CODE),
        ("support_case", "\n".join(BUDGET_PAYLOADS[:5]), UNDECIDED_CODE),
        ("support_case", texts["support_case"], "insufficient_funds"),
    ]
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
    for i, (surface, payload, code) in enumerate(plan):
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
                "card": {"decline_code": code},
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
        rows.append({"customer": cid, "subscription": sub, "invoice": inv, "code": code})
    httpx.post(urls["chargebee"] + "/_sandbox/seed", json=cb, timeout=30).raise_for_status()
    httpx.post(
        urls["salesforce"] + "/_sandbox/seed", json={"records": sf}, timeout=30
    ).raise_for_status()
    return rows


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def written_strings(url: str, uid: str) -> list[str]:
    """Every string our runs sent to a sandbox (JSON bodies, form bodies, paths)."""
    requests = httpx.get(url + "/_sandbox/requests", timeout=30).json()["requests"]
    out: list[str] = []
    for r in requests:
        if r["method"] == "GET" or uid not in r["path"] + (r.get("body") or ""):
            continue
        body = r.get("body") or ""
        try:
            out += _strings(json.loads(body))
        except ValueError:
            out += [v for _, v in parse_qsl(body)] or [body]
        out.append(r["path"])
    return out


async def test_batched_nastiest_payloads_move_no_money_and_write_nothing_raw(
    client: Client, deployment: Pair, llm: ObedientLlm, sandbox_urls: dict[str, str], uid: str
) -> None:
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
        await status_when(
            handle,
            lambda s: s.stage.startswith(("day 0", "waiting for payment", "paused by")),
            within_s=60,
        )
        return handle

    handles = await asyncio.wait_for(asyncio.gather(*(run(r) for r in rows)), timeout=90)

    # 1. No money moved: no credit, no cancellation, no refund request ever reached billing.
    for row in rows:
        assert deployment.credits(row["customer"]) == 0, row
        sub = deployment.billing.client.Subscription.retrieve(row["subscription"]).subscription
        assert sub.status == "active", row
    posts = httpx.get(
        sandbox_urls["chargebee"] + "/_sandbox/requests", params={"method": "POST"}
    ).json()["requests"]
    ours = [r for r in posts if uid in r["path"] + r["body"]]
    money_paths = re.compile(r"promotional_credits|/refund|cancel|credit_notes|update_for_items")
    assert ours and [r["path"] for r in ours if money_paths.search(r["path"])] == []

    # 2. The rules decided the conclusive failure; the day's cap let three of the four others
    #    ask; the model saw everything fenced and redacted.
    assert len(llm.prompts) == DAY_CALLS
    for prompt in llm.prompts:
        assert "<untrusted_data" in prompt
        for pii in PII_SAMPLES:
            assert pii not in prompt
    book = await client.get_workflow_handle(
        budget_workflow_id(QUEUE, datetime.now(UTC).date().isoformat())
    ).query("usage", result_type=LlmBudgetSummary)
    assert book.total.calls == DAY_CALLS and book.denied == 1
    burned = llm.burned
    assert book.total.total_input_tokens == burned * BURNED.input_tokens + (DAY_CALLS - burned) * (
        USAGE.input_tokens
    )

    # 3. The refused call is audited on both systems; the LLM's text reached the records only
    #    neutralized: no markup, link, instruction or personal data in any request we made.
    refusals = []
    for row in rows[:4]:
        log = deployment.audit(row["invoice"])
        refusals += [r for r in log if "containment:budget_exceeded" in r["text"]]
        assert not any(
            r["outcome"].startswith("executed") for r in log if r["action"] == "apply_credit"
        )
    assert len(refusals) == 1 and refusals[0]["action"] == "llm_output_rejected"
    # the sly run's credit passed containment and went to policy: it waited for a person and
    # expired (its run may be the one the day's cap refused: then the rules decided it)
    sly_log = deployment.audit(rows[2]["invoice"])
    llm_credit = [r for r in sly_log if r["action"] == "apply_credit"]
    if not any("budget_exceeded" in r["text"] for r in sly_log):
        assert llm_credit and all(r["outcome"] == "expired" for r in llm_credit), sly_log
    assert any(
        "budget_exceeded" in note
        for row in rows[:4]
        for note in deployment.billing_notes(row["invoice"])
    )
    seen = 0
    for url in (sandbox_urls["salesforce"], sandbox_urls["chargebee"]):
        for text in written_strings(url, uid):
            for line in text.splitlines():
                if MARKER in line:
                    seen += 1
                    assert_inert(line[line.index(MARKER) :], (url, line[:80]), whole=False)
    assert seen >= 2  # the stub's reasons did reach the case and the audit, neutralized
    for handle in handles:
        await handle.terminate("test over")
