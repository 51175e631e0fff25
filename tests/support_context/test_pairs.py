"""Support context through real sandboxes and official clients, the pair's worker, a real dunning run
for the open-dunning part: the linked note on every billing × CRM pair, the other branches once per
vendor (``on_cover``; each branch is in tests/fast/test_support_context.py).

Cases are opened through the CRM driver (the CRM emits its case-created webhook); the test then
starts the run as the webhook service does, joining the run if the webhook already started it.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from hubspot import HubSpot
from hubspot.crm.objects.notes import BatchReadInputSimplePublicObjectId as NoteBatchRead
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from cli.demo_support import written_note
from connectors.hubspot import engagement_ref
from domain.approvals import QUERY
from domain.ids import idempotency_key, support_workflow_id
from domain.support import SupportContextResult
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.pairs import Pair, eventually, on_cover, stage
from tests.support_context.conftest import start_support

NORTHWIND = DEMO_CUSTOMERS[0]  # expired card: dunning opens a case and waits for payment

#: where each CRM's annotate_case write goes (for fault injection and counting)
ANNOTATE = {
    "salesforce": ("PATCH", r"/services/data/v[0-9.]+/sobjects/Case/{case}"),
    "hubspot": ("POST", r"/crm/v3/objects/(notes|0-46)"),
}


def missing_case(crm: str, uid: str) -> str:
    """A well-formed case ID no case has, fresh per test (one run per case ID, ever)."""
    if crm == "salesforce":
        return f"500{uid[:10]}AA"  # 15 characters, the Case key prefix
    return "9" + str(int(uid, 16))[:12]  # HubSpot object IDs are numeric


def ledger(url: str, after: int = 0) -> list[dict[str, Any]]:
    rows = httpx.get(url + "/_sandbox/requests").raise_for_status().json()["requests"]
    return [r for r in rows if r["seq"] > after]


async def churn_settled(client: Client, pair: Pair, customer_id: str) -> None:
    """The failed payment also started the customer's churn intervention, which audits on both
    sides (a billing note per entry): let it reach its wait before the support run's billing
    ledger is read, so its notes are not taken for the support run's."""
    from domain.churn import ChurnStatus
    from domain.ids import churn_workflow_id

    handle = client.get_workflow_handle(churn_workflow_id(pair.settings.billing, customer_id))

    async def idle() -> bool:
        try:
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                return True
            status = await handle.query("status", result_type=ChurnStatus)
        except RPCError:
            return True  # never started: nothing to wait for
        return status.stage in ("following the account", "closed") or bool(
            await handle.query(QUERY, result_type=list)
        )

    await eventually(idle, bool, "the churn intervention at its wait", within_s=30)


def mark(url: str) -> int:
    return max((r["seq"] for r in ledger(url)), default=0)


def writes(rows: list[dict[str, Any]]) -> list[str]:
    """Requests that change state (searches are POSTs that only read; token fetches are auth)."""
    return [
        f"{r['method']} {r['path']}"
        for r in rows
        if r["method"] not in ("GET", "HEAD")
        and not r["path"].endswith("/search")
        and "/oauth2/token" not in r["path"]
    ]


async def run_case(client: Client, pair: Pair, case_id: str) -> SupportContextResult:
    handle = await start_support(
        client, pair.settings.crm, pair.settings.billing, case_id, pair.settings.task_queue
    )
    return await handle.result()


async def test_linked_customer_note_cites_invoices_payments_and_open_dunning(
    client: Client, pair: Pair, uid: str
) -> None:
    ids = pair.seed(NORTHWIND, uid)
    pair.billing_driver.decline(ids["invoice"])
    dunning = client.get_workflow_handle(pair.workflow_id(ids["invoice"]))
    try:
        dunning_status = await stage(dunning, "waiting for payment", within_s=30)
        failed = pair.billing.get_invoice_context(ids["invoice"]).last_failure
        assert failed is not None
        account_id = pair.account_id(ids["customer"])
        assert account_id is not None
        await churn_settled(client, pair, ids["customer"])
        billing_mark = mark(pair.billing_url)

        case_id = pair.crm_driver.open_case(
            account_id, "Card declined: why is our invoice open?", "We changed cards last week."
        )
        result = await run_case(client, pair, case_id)
        billing_requests = ledger(pair.billing_url, billing_mark)
    finally:
        await dunning.terminate("test over")

    assert (result.outcome, result.customer_id) == ("summarized", ids["customer"])
    note = written_note(pair.settings, pair.crm, case_id, result.note_id)
    assert note is not None
    total = f"{NORTHWIND.invoice_total / 100:,.2f} USD"
    assert f"Payment status: 1 unpaid invoice(s), {total} due ({ids['invoice']})." in note
    assert f"Last payment: {failed.id} failed (expired_card), {total}" in note
    assert re.search(rf"^- {re.escape(ids['invoice'])}: {re.escape(total)}, open", note, re.M)
    assert f"Open dunning: invoice {ids['invoice']} since " in note
    assert f"dunning case {dunning_status.case_number}" in note
    assert f"workflow {dunning.id}." in note
    assert "@" not in note  # the seeded customer has an email in billing: it stays there
    # Read-only toward billing: the billing sandbox saw reads only while this workflow ran
    # (the dunning run was idle, waiting for payment).
    assert billing_requests, "the snapshot was read through the billing API"
    assert writes(billing_requests) == []
    # Audited in the CRM's agent log, nothing in billing
    log = pair.crm.audit_log(support_workflow_id(pair.settings.crm, case_id))
    assert [(r["action"], r["outcome"]) for r in log] == [
        ("annotate_case", f"executed ({result.note_id})")
    ]


@on_cover()
async def test_unlinked_account_gets_no_billing_account_note(
    client: Client, pair: Pair, uid: str
) -> None:
    account_id = pair.crm_driver.create_account(f"Walk-in Prospect {uid}")
    case_id = pair.crm_driver.open_case(account_id, "Pricing question")
    billing_mark = mark(pair.billing_url)
    result = await run_case(client, pair, case_id)
    assert (result.outcome, result.customer_id) == ("no_billing_account", None)
    note = written_note(pair.settings, pair.crm, case_id, result.note_id)
    assert note is not None
    assert note.startswith(
        f"No billing account linked: account {account_id} has no {pair.settings.billing} customer."
    )
    assert ledger(pair.billing_url, billing_mark) == []  # not even a read


@on_cover()
async def test_missing_case_writes_nothing(client: Client, pair: Pair, uid: str) -> None:
    crm_url = pair.urls[pair.settings.crm]
    crm_mark, billing_mark = mark(crm_url), mark(pair.billing_url)
    case_id = missing_case(pair.settings.crm, uid)
    result = await run_case(client, pair, case_id)
    assert (result.outcome, result.note_id) == ("case_not_found", None)
    assert writes(ledger(crm_url, crm_mark)) == []
    assert ledger(pair.billing_url, billing_mark) == []


@on_cover()
async def test_a_retried_annotate_writes_once(client: Client, pair: Pair, uid: str) -> None:
    crm = pair.settings.crm
    crm_url = pair.urls[crm]
    account_id = pair.crm_driver.create_account(f"Retry Co {uid}")
    case_id = pair.crm_driver.open_case(account_id, "Invoice copy please")
    method, path = ANNOTATE[crm]
    path = path.format(case=case_id)
    # The CRM commits the write, then answers 500: the activity retries with the same key.
    httpx.post(
        crm_url + "/_sandbox/faults",
        json={"kind": "commit_then_error", "method": method, "path": path, "status": 500},
    ).raise_for_status()
    crm_mark = mark(crm_url)
    result = await run_case(client, pair, case_id)
    assert result.outcome == "no_billing_account" and result.note_id
    attempts = [
        r
        for r in ledger(crm_url, crm_mark)
        if r["method"] == method and re.fullmatch(path, r["path"])
    ]
    # the first attempt committed and lost its answer; the retry found the write already there
    assert len(attempts) >= 2, attempts
    assert (attempts[0]["status"], attempts[0].get("fault")) == (500, "commit_then_error")
    key = idempotency_key(support_workflow_id(crm, case_id), "billing-context")
    assert len(_case_notes(pair, case_id, key)) == 1


def _case_notes(pair: Pair, case_id: str, key: str) -> list[str]:
    """What the CRM holds for the case's billing context: Salesforce has one field (a retry can
    only set it again); HubSpot must have exactly one note on the ticket with the key's marker
    (notes have no unique property)."""
    if pair.settings.crm == "salesforce":
        text = written_note(pair.settings, pair.crm, case_id, None)
        return [text] if text else []
    hs = pair.settings.hubspot
    assert hs is not None and hs.api_url
    client = HubSpot(
        access_token=hs.access_token.get_secret_value(),
        host=hs.api_url,
        base_url=hs.api_url,
        retry=False,
    )
    assoc = client.crm.associations.v4.basic_api.get_page("tickets", case_id, "notes", limit=500)
    ids = [str(r.to_object_id) for r in assoc.results]
    if not ids:
        return []
    notes = client.crm.objects.notes.batch_api.read(
        NoteBatchRead(inputs=[{"id": i} for i in ids], properties=["hs_note_body"])
    )
    ref = "RevBridge ref: " + engagement_ref(key)
    return [n.id for n in notes.results if (n.properties.get("hs_note_body") or "").endswith(ref)]
