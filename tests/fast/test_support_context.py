"""SupportContextWorkflow, every branch, on the time-skipping test server over fake activities."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.client import Client

from domain.ids import idempotency_key, support_workflow_id
from domain.models import CrmAccount
from domain.policy import Mode, Outcome
from domain.records import CaseDetail
from domain.support import WORKFLOW_TYPE, SupportContextInput, SupportContextResult
from tests.fast.fakes import Fakes, fake_worker, governance, policy
from tests.support_context.fakes import linked_snapshot

CRM, BILLING = "fakecrm", "fakebill"


class Case:
    def __init__(self) -> None:
        uid = uuid.uuid4().hex[:8]
        self.id, self.account, self.customer = f"500{uid}", f"001{uid}", f"cus-{uid}"
        self.invoice = f"INV-{uid}"
        self.wf_id = support_workflow_id(CRM, self.id)

    def found(
        self, *, customer: str | None = None, platform: str | None = BILLING, account: bool = True
    ) -> dict[str, Any]:
        detail = CaseDetail(
            id=self.id, number="00042", account_id=self.account if account else None
        )
        linked = CrmAccount(
            id=self.account,
            name="Northwind",
            billing_customer_id=customer,
            billing_platform=platform if customer else None,
        )
        return {
            "case": detail.model_dump(mode="json"),
            "account": linked.model_dump(mode="json") if account else None,
        }


def support_fakes(case: Case, **outcomes: Outcome) -> Fakes:
    return (
        governance(Fakes(), **outcomes)
        .on("support_get_case", case.found(customer=case.customer))
        .on(
            "support_customer_snapshot",
            {"snapshot": linked_snapshot(case.customer, case.invoice).model_dump(mode="json")},
        )
        .on(
            "support_open_dunning",
            lambda i: {
                "runs": [
                    {"workflow_id": f"dunning:{BILLING}:{inv}", "invoice_id": inv}
                    for inv in i["invoice_ids"]
                ]
            },
        )
        .on("support_annotate_case", {"id": "note-1"})
    )


async def run(client: Client, case: Case, fakes: Fakes) -> SupportContextResult:
    async with fake_worker(client, fakes) as task_queue:
        return await client.execute_workflow(
            WORKFLOW_TYPE,
            SupportContextInput(crm=CRM, billing=BILLING, case_id=case.id),
            id=case.wf_id,
            task_queue=task_queue,
            result_type=SupportContextResult,
        )


async def test_a_linked_customer_gets_a_note_citing_its_invoices_and_open_dunning(
    client: Client,
) -> None:
    case = Case()
    fakes = support_fakes(case)
    result = await run(client, case, fakes)
    assert (result.outcome, result.customer_id, result.note_id) == (
        "summarized",
        case.customer,
        "note-1",
    )
    # read-only toward billing: one snapshot read; the only write is the note on the case
    assert fakes.names() == [
        "support_get_case",
        "support_customer_snapshot",
        "support_open_dunning",
        "draft_support_summary",  # issue 22's drafting seam: unanswered here, the rules text
        "decide_policy",
        "support_annotate_case",
        "write_crm_audit",
    ]
    assert fakes.inputs("support_open_dunning")[0]["invoice_ids"] == [case.invoice]
    (note,) = fakes.inputs("support_annotate_case")
    assert note["case_id"] == case.id
    assert note["idempotency_key"] == idempotency_key(case.wf_id, "billing-context")
    assert f"Open dunning: invoice {case.invoice}" in note["text"]
    assert f"- {case.invoice}-prev: 245.00 USD, paid" in note["text"]
    assert fakes.audited() == [("annotate_case", "executed (note-1)")]
    assert fakes.inputs("write_crm_audit")[0]["entry"]["case_id"] == case.id


@pytest.mark.parametrize(
    ("found", "snapshot", "why"),
    [
        ({"account": False}, True, "case 00042 is not on an account"),
        ({}, True, "has no fakebill customer"),
        ({"customer": "cus-x", "platform": "otherbill"}, True, "is linked to otherbill"),
        ({"customer": "cus-gone"}, False, "which fakebill does not know"),
    ],
    ids=["no-account", "unlinked", "other-platform", "unknown-to-billing"],
)
async def test_no_billing_account_gets_a_short_note_saying_why(
    client: Client, found: dict[str, Any], snapshot: bool, why: str
) -> None:
    case = Case()
    fakes = support_fakes(case).on("support_get_case", case.found(**found))
    if not snapshot:
        fakes.on("support_customer_snapshot", {"snapshot": None})
    result = await run(client, case, fakes)
    assert result.outcome == "no_billing_account" and result.customer_id is None
    (note,) = fakes.inputs("support_annotate_case")
    assert note["text"].startswith("No billing account linked: ") and why in note["text"]
    assert "support_open_dunning" not in fakes.names()
    assert len(fakes.inputs("support_customer_snapshot")) == (0 if snapshot else 1)


async def test_a_case_that_is_gone_writes_nothing(client: Client) -> None:
    case = Case()
    fakes = support_fakes(case).on("support_get_case", {"case": None, "account": None})
    result = await run(client, case, fakes)
    assert result.outcome == "case_not_found"
    assert fakes.names() == ["support_get_case"]


async def test_a_paid_up_customer_needs_no_dunning_lookup(client: Client) -> None:
    case = Case()
    snapshot = linked_snapshot(case.customer, case.invoice)
    paid = snapshot.model_copy(
        update={"invoices": [i for i in snapshot.invoices if i.id.endswith("-prev")]}
    )
    fakes = support_fakes(case).on(
        "support_customer_snapshot", {"snapshot": paid.model_dump(mode="json")}
    )
    result = await run(client, case, fakes)
    assert result.outcome == "summarized"
    assert "support_open_dunning" not in fakes.names()


async def test_a_denied_note_is_not_written_and_the_audit_says_why(client: Client) -> None:
    case = Case()
    fakes = support_fakes(case)
    fakes.on("decide_policy", policy(default=Outcome.DENY))
    result = await run(client, case, fakes)
    assert fakes.writes() == []
    assert fakes.audited() == [("annotate_case", "blocked")]
    assert result.outcome == "summarized" and result.note_id is None


async def test_observe_mode_reads_but_writes_nothing_not_even_the_audit(client: Client) -> None:
    case = Case()
    fakes = support_fakes(case)
    fakes.on("decide_policy", policy(default=Outcome.DENY, mode=Mode.OBSERVE))
    result = await run(client, case, fakes)
    assert fakes.writes() == [] and fakes.audited() == []
    assert fakes.names()[:2] == ["support_get_case", "support_customer_snapshot"]
    assert result.outcome == "summarized" and result.note_id is None
