"""SupportContextWorkflow on the dev server, over in-memory vendors (tests/support_context/fakes):
what it writes on the case in each situation, that it never touches billing beyond one read,
and that a retried or repeated write lands once."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client

from domain import temporal as names
from domain.dunning import DunningInput
from domain.ids import dunning_workflow_id, idempotency_key, support_workflow_id
from domain.models import CrmAccount
from domain.support import SupportStatus
from tests.support_context.conftest import FakeDeployment, keep_history, start_support
from tests.support_context.fakes import linked_snapshot


def _account(uid: str, customer_id: str | None = None, platform: str | None = None) -> CrmAccount:
    return CrmAccount(
        id=f"001{uid}",
        name="Northwind Analytics",
        billing_customer_id=customer_id,
        billing_platform=platform,
    )


async def test_linked_customer_gets_a_note_citing_invoices_payments_and_open_dunning(
    client: Client, fake: FakeDeployment, uid: str
) -> None:
    customer, invoice, case_id = f"cus-{uid}", f"INV-{uid}", f"500{uid}"
    fake.billing.snapshots[customer] = linked_snapshot(customer, invoice)
    fake.crm.add_case(case_id, _account(uid, customer, "fakebill"))
    # A dunning run is open for the unpaid invoice (no worker polls its queue: it stays running).
    dunning = await client.start_workflow(
        "DunningWorkflow",
        DunningInput(billing="fakebill", invoice_id=invoice),
        id=dunning_workflow_id("fakebill", invoice),
        task_queue=f"nobody-{uid}",
    )
    try:
        handle, result = await fake.run(client, case_id)
    finally:
        await dunning.terminate("test over")

    assert result.outcome == "summarized"
    assert result.customer_id == customer
    key = idempotency_key(support_workflow_id("fakecrm", case_id), "billing-context")
    note_id, on_case, text = fake.crm.notes[key]
    assert (result.note_id, on_case) == (note_id, case_id)
    assert f"Payment status: 1 unpaid invoice(s), 245.00 USD due ({invoice})." in text
    assert f"Last payment: pay-{invoice} failed (expired_card), 245.00 USD" in text
    assert f"- {invoice}-prev: 245.00 USD, paid" in text
    assert f"Open dunning: invoice {invoice} since " in text
    assert f"workflow dunning:fakebill:{invoice}." in text
    # read-only toward billing: one snapshot read, nothing else
    assert fake.billing.calls == [f"customer_snapshot:{customer}"]
    # audited in the CRM only, against the case and the account
    (entry,) = fake.crm.audits.values()
    assert (entry.use_case, entry.action, entry.decision) == (
        "support_context",
        "annotate_case",
        "allow",
    )
    assert entry.outcome == f"executed ({note_id})"
    assert (entry.case_id, entry.account_id) == (case_id, f"001{uid}")
    # the Web UI story: search attributes, static summary, current details, status query
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(names.CUSTOMER_KEY) == customer
    assert desc.typed_search_attributes.get(names.USE_CASE_KEY) == "support_context"
    assert await desc.static_summary() == f"Support context for fakecrm case {case_id} (fakebill)"
    status = await handle.query("status", result_type=SupportStatus)
    assert status.outcome == "summarized" and status.open_dunning == [dunning.id]
    await keep_history(handle, "summarized")


async def test_unlinked_account_gets_a_short_no_billing_account_note(
    client: Client, fake: FakeDeployment, uid: str
) -> None:
    case_id = f"500{uid}"
    fake.crm.add_case(case_id, _account(uid))
    handle, result = await fake.run(client, case_id)
    assert (result.outcome, result.customer_id) == ("no_billing_account", None)
    ((note_id, _, text),) = fake.crm.notes.values()
    assert result.note_id == note_id
    assert text.startswith(f"No billing account linked: account 001{uid} has no fakebill customer.")
    assert fake.billing.calls == []
    await keep_history(handle, "no_billing_account")


async def test_unknown_customer_or_other_platform_or_no_account_is_not_an_error(
    client: Client, fake: FakeDeployment, uid: str
) -> None:
    cases = {
        f"500a{uid}": (_account(f"a{uid}", f"cus-gone-{uid}"), "which fakebill does not know"),
        f"500b{uid}": (_account(f"b{uid}", "cus_9", "stripe"), "is linked to stripe, not fakebill"),
        f"500c{uid}": (None, "is not on an account"),
    }
    for case_id, (account, why) in cases.items():
        fake.crm.add_case(case_id, account)
        _, result = await fake.run(client, case_id)
        assert result.outcome == "no_billing_account"
        text = next(t for _, c, t in fake.crm.notes.values() if c == case_id)
        assert text.startswith("No billing account linked: ") and why in text, text
    assert fake.billing.calls == [f"customer_snapshot:cus-gone-{uid}"]


async def test_missing_case_writes_nothing(client: Client, fake: FakeDeployment, uid: str) -> None:
    handle, result = await fake.run(client, f"500gone{uid}")
    assert (result.outcome, result.note_id) == ("case_not_found", None)
    assert fake.crm.notes == {} and fake.crm.audits == {} and fake.billing.calls == []
    await keep_history(handle, "case_not_found")


async def test_a_retried_annotate_writes_once(
    client: Client, fake: FakeDeployment, uid: str
) -> None:
    case_id = f"500{uid}"
    fake.crm.add_case(case_id, _account(uid))
    fake.crm.lose_answers = 1  # the first write commits, its answer is lost: the activity retries
    _, result = await fake.run(client, case_id)
    assert fake.crm.annotate_calls == 2
    assert len(fake.crm.notes) == 1
    assert result.note_id == next(iter(fake.crm.notes.values()))[0]


async def test_a_redelivered_case_event_joins_the_same_run(
    client: Client, fake: FakeDeployment, uid: str
) -> None:
    case_id = f"500{uid}"
    fake.crm.add_case(case_id, _account(uid))
    _, first = await fake.run(client, case_id)
    again = await start_support(client, "fakecrm", "fakebill", case_id, fake.task_queue)
    assert (await again.result()) == first
    assert fake.crm.annotate_calls == 1 and len(fake.crm.notes) == 1


async def test_observe_mode_blocks_the_note_and_reports_why(
    client: Client, fake_observe: FakeDeployment, uid: str
) -> None:
    """Observe mode reads and reports: no note and no audit entry in the CRM; the run keeps what
    it would have audited (query ``observed``) and says why in its status."""
    fake = fake_observe
    case_id = f"500{uid}"
    fake.crm.add_case(case_id, _account(uid))
    handle, result = await fake.run(client, case_id)
    assert (result.outcome, result.note_id) == ("no_billing_account", None)
    assert fake.crm.notes == {}
    assert fake.crm.audits == {}
    assert await handle.query("observed") == ["annotate_case: blocked"]
    status = await handle.query("status", result_type=SupportStatus)
    assert status.policy == "deny: blocked"


async def test_open_dunning_needs_a_running_run(
    client: Client, fake: FakeDeployment, uid: str
) -> None:
    """A closed dunning run for the unpaid invoice is not 'open dunning'."""
    customer, invoice, case_id = f"cus-{uid}", f"INV-{uid}", f"500{uid}"
    fake.billing.snapshots[customer] = linked_snapshot(customer, invoice)
    fake.crm.add_case(case_id, _account(uid, customer))
    closed = await client.start_workflow(
        "DunningWorkflow",
        DunningInput(billing="fakebill", invoice_id=invoice),
        id=dunning_workflow_id("fakebill", invoice),
        task_queue=f"nobody-{uid}",
        execution_timeout=timedelta(minutes=5),
    )
    await closed.terminate("closed before the case")
    _, result = await fake.run(client, case_id)
    text = next(iter(fake.crm.notes.values()))[2]
    assert result.outcome == "summarized"
    assert "Open dunning: none." in text
