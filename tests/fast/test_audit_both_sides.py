"""Issue 13, harm 6: every governed action and refusal is audited to both systems with one
correlation ID (workflow ID + run ID + action ID) — or, where a system has no place for it, the
exception is written down in docs/audit.md. Fast: the real workflows over fake activities.

Before: the entries carried no action ID (nothing tied a CRM entry to its billing note but the
timestamps), and a refused approval in quote-to-cash (and churn) went to the CRM only although
the customer's billing record was there to hold it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from domain.approvals import QUERY, SIGNAL
from domain.audit import AuditEntry
from domain.models import CrmAccount
from domain.policy import Outcome
from tests.fast.fakes import APPROVER, Fakes
from tests.fast.test_dunning import Run, dunning, dunning_fakes, pending
from tests.fast.test_quote_to_cash import Deal, q2c, q2c_fakes
from tests.fast.test_support_context import Case, run, support_fakes
from tests.pairs import eventually

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


@pytest.fixture
def client(time_env: WorkflowEnvironment) -> Client:
    return time_env.client


def entries(fakes: Fakes, name: str) -> list[AuditEntry]:
    return [AuditEntry.model_validate(i["entry"]) for i in fakes.inputs(name)]


def correlated(fakes: Fakes) -> tuple[list[str], list[str]]:
    """The correlation IDs of the CRM entries and of the billing notes, in order (an entry may
    go with the write it is about, a note ride with a later one: the dunning case's)."""
    crm = [AuditEntry.model_validate(e).correlation_id for e in fakes.crm_entries()]
    notes = [AuditEntry.model_validate(e).correlation_id for e in fakes.billing_entries()]
    return crm, notes


def documented_exceptions() -> dict[str, str]:
    """docs/audit.md's exceptions table: use case → which entries."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Exceptions", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\w+) \| ([^|]+) \|", section, re.MULTILINE)
    return {use_case: which.strip() for use_case, which in rows if use_case != "Use"}


async def test_dunning_writes_every_entry_to_both_sides_with_one_correlation_id(
    client: Client,
) -> None:
    run_ = Run()
    credit = run_.credit()
    fakes = dunning_fakes(
        run_, assessment=run_.assessment(credit), apply_credit=Outcome.NEEDS_APPROVAL
    )
    async with dunning(client, run_, fakes) as handle:
        waiting = await pending(handle)
        await handle.signal(  # refused: not an approver
            SIGNAL, {"action_id": waiting.action_id, "decision": "approve", "approver": "x@y.z"}
        )
        await handle.signal(
            SIGNAL, {"action_id": waiting.action_id, "decision": "approve", "approver": APPROVER}
        )
        await handle.result()
        info = await handle.describe()
    crm, notes = correlated(fakes)
    assert crm == notes and len(crm) >= 5
    assert len(set(crm)) == len(crm)  # one ID per entry
    assert all(c.startswith(f"{run_.wf_id}/{info.run_id}/") for c in crm)
    assert f"{run_.wf_id}/{info.run_id}/{credit.action_id}" in crm  # the governed action's ID
    [text] = [
        i["entry"]
        for i in fakes.inputs("write_crm_audit")
        if i["entry"]["action"] == "apply_credit"
    ]
    assert AuditEntry.model_validate(text).as_text().splitlines()[1] == (
        f"correlation: {run_.wf_id}/{info.run_id}/{credit.action_id}"
    )


async def test_a_refused_approval_in_quote_to_cash_is_noted_on_the_customer_too(
    client: Client,
) -> None:
    account = CrmAccount(
        id="001acct", name="Acme", billing_customer_id="cus-old", billing_platform="fakebill"
    )
    deal = Deal(account=account, payment_terms="Net 60")  # custom terms: RevOps decides
    fakes = q2c_fakes(deal, create_subscription=Outcome.NEEDS_APPROVAL)
    async with q2c(client, deal, fakes) as handle:
        (waiting,) = await eventually(
            lambda: handle.query(QUERY, result_type=list), bool, "the approval"
        )
        await handle.signal(
            SIGNAL,
            {"action_id": waiting["action_id"], "decision": "approve", "approver": "x@y.z"},
        )
        await eventually(
            lambda: _refusals(fakes), lambda r: r == (1, 1), "the refusal on both sides"
        )
        await handle.signal(
            SIGNAL,
            {"action_id": waiting["action_id"], "decision": "approve", "approver": APPROVER},
        )
        result = await handle.result()
    crm, notes = correlated(fakes)
    assert crm == notes  # the customer existed before the run: every entry on both sides
    assert result.outcome == "live"
    notes_on = {i["target_id"] for i in fakes.inputs("add_billing_note")}
    assert notes_on == {"cus-old"}


async def _refusals(fakes: Fakes) -> tuple[int, int]:
    def count(name: str) -> int:
        return sum(e.action == "approval_refused" for e in entries(fakes, name))

    return count("write_crm_audit"), count("add_billing_note")


async def test_the_documented_exceptions_are_the_crm_only_entries(client: Client) -> None:
    exceptions = documented_exceptions()
    assert set(exceptions) == {"support_context", "churn_sweep", "quote_to_cash"}

    # support context: CRM only, every entry (documented as "all")
    case = Case()
    fakes = support_fakes(case)
    await run(client, case, fakes)
    assert entries(fakes, "write_crm_audit") and fakes.inputs("add_billing_note") == []
    assert exceptions["support_context"] == "all"

    # quote-to-cash before a customer exists: a deal not won writes no entry at all; one rolled
    # back before any customer was found writes the CRM entry only
    deal = Deal()
    fakes = q2c_fakes(deal).on("q2c_get_prices", {"prices": {}, "missing": ["price-pro"]})
    fakes.on("q2c_read_product_mapping", {"products": {}})
    async with q2c(client, deal, fakes) as handle:
        await eventually(
            lambda: handle.query("status"), lambda s: "mapping" in str(s).lower(), "mapping wait"
        )
        await handle.cancel()
        with pytest.raises(Exception):  # noqa: B017, PT011 - cancelled
            await handle.result()
    rolled: list[Any] = [e.action for e in entries(fakes, "write_crm_audit")]
    assert rolled == ["quote_to_cash_rolled_back"]
    assert fakes.inputs("add_billing_note") == []
    assert exceptions["quote_to_cash"] == "before a customer exists"
