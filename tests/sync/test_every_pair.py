"""The account sync end to end on the pairs tests/sync/test_pairs.py does not cover — Stripe ×
HubSpot, Zuora × Salesforce / HubSpot, Recurly × Salesforce / HubSpot — with the webhook service
(REVBRIDGE_ACCOUNT_SYNC on), a worker and the dev server; and on Stripe, Zuora and Recurly (×
Salesforce) the conflict review (the Web UI's approval signal) and the bulk flush of minor
changes. Together with test_pairs.py every billing platform × CRM is smoked: a plan change in
billing, made through the vendor's own client shape, reaches the CRM account through the
vendor's webhook, audited.

One deployment per pair (module-scoped: each pair's stack is built once); Zuora and Recurly
run on tenants of this module's own."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from connectors.sync import sync_billing, sync_crm
from domain import golden
from domain.approvals import Decision
from domain.golden import FlushStatus, Side, SyncSignal, SyncStatus
from domain.models import NoteTarget
from domain.settings import Settings, WebhookSettings
from sandbox.framework import App, ServerThread
from sandbox.recurly import RecurlyEmulator
from sandbox.scenarios import DunningCustomer
from sandbox.zuora import ZuoraEmulator
from tests.pairs import (
    RECURLY_KEY,
    RECURLY_SECRET,
    ZUORA_ID,
    ZUORA_SECRET,
    Pair,
    eventually,
    pair_settings,
)
from tests.sync.settle import mark, settled
from tests.sync.shuffle import (
    Capture,
    billing_captured,
    capture_server,
    deliver_shuffled,
    late_repeat_changes_nothing,
    shuffled,
)
from tests.sync.world import decide

SMOKE_PAIRS = [
    ("stripe", "hubspot"),
    ("zuora", "salesforce"),
    ("zuora", "hubspot"),
    ("recurly", "salesforce"),
    ("recurly", "hubspot"),
]
#: billing platforms whose conflict and flush paths run here (Chargebee's: test_cli, bench)
BILLINGS = ["stripe", "zuora", "recurly"]
HOOK_USER, HOOK_PASSWORD = "zuora-callouts", "sync-callout-password"


@pytest.fixture(scope="module")
def tenants(sandbox_urls: dict[str, str]) -> Iterator[dict[str, str]]:
    """The session's sandboxes, plus a Zuora tenant and a Recurly site of this module's own."""
    z = ZuoraEmulator(client_id=ZUORA_ID, client_secret=ZUORA_SECRET)
    r = RecurlyEmulator(
        api_key=RECURLY_KEY, webhook_secrets=[RECURLY_SECRET], rate_limit_per_minute=None
    )
    with ServerThread({z: 0, r: 0}) as thread:
        yield {**sandbox_urls, **thread.urls}


def sync_settings(urls: dict[str, str], billing: str, crm: str) -> Settings:
    base = pair_settings(urls, billing, crm, f"revbridge-sync-every-{billing}-{crm}")
    hooks = base.webhooks.model_dump()
    hooks.update(
        account_sync=True, zuora_username=HOOK_USER, zuora_password=SecretStr(HOOK_PASSWORD)
    )
    return base.model_copy(update={"webhooks": WebhookSettings(**hooks)})


@pytest.fixture(scope="module")
def capture() -> Iterator[Capture]:
    """A receiver that keeps billing's webhooks, for their shuffled delivery (shuffle.py)."""
    with capture_server() as cap:
        yield cap


def hook_auth(pair: Pair) -> list[str] | None:
    return [HOOK_USER, HOOK_PASSWORD] if pair.settings.billing == "zuora" else None


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's workers' own copy of the policies (a test may switch the sync's mode)."""
    from activities.policy import DEFAULT_POLICY_DIR

    target = tmp_path_factory.mktemp("policies")
    shutil.copytree(DEFAULT_POLICY_DIR, target, dirs_exist_ok=True)
    return target


@pytest.fixture(scope="module")
async def deployments(
    temporal_env: WorkflowEnvironment, tenants: dict[str, str], policy_dir: Path
) -> AsyncIterator[dict[tuple[str, str], Pair]]:
    """Every pair's deployment, built once for the module: its task queue, worker and webhook
    service (started when first asked for, stopped with the module)."""
    from contextlib import AsyncExitStack, ExitStack

    from webhooks.app import TemporalConnection, create_app
    from workers.main import build_worker

    os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
    built: dict[tuple[str, str], Pair] = {}
    async with AsyncExitStack() as workers:
        with ExitStack() as servers:

            class Lazy(dict):  # type: ignore[type-arg]
                async def get_pair(self, key: tuple[str, str]) -> Pair:
                    if key not in built:
                        settings = sync_settings(tenants, *key)
                        app = App("webhooks", create_app(settings, client=TemporalConnection()))
                        thread = servers.enter_context(ServerThread({app: 0}))
                        pair = Pair.build(settings, tenants, thread.urls["webhooks"])
                        await workers.enter_async_context(
                            build_worker(
                                temporal_env.client,
                                pair.billing,
                                pair.crm,
                                task_queue=settings.task_queue,
                                policy_dir=policy_dir,
                            )
                        )
                        built[key] = pair
                    return built[key]

            yield Lazy()  # type: ignore[misc]


def route_billing(pair: Pair) -> None:
    """The billing sandbox's webhooks (Zuora: callouts with Basic auth) to this deployment."""
    url = pair.billing_url
    httpx.delete(url + "/_sandbox/webhooks").raise_for_status()
    target: dict[str, Any] = {"url": f"{pair.webhook_url}/webhooks/{pair.settings.billing}"}
    if pair.settings.billing == "zuora":
        target["basic_auth"] = [HOOK_USER, HOOK_PASSWORD]
    httpx.post(url + "/_sandbox/webhooks", json=target).raise_for_status()


def unroute_billing(pair: Pair) -> None:
    httpx.delete(pair.billing_url + "/_sandbox/webhooks").raise_for_status()


def seeded(pair: Pair, key: str, uid: str) -> dict[str, str]:
    customer = DunningCustomer(
        key, f"{key.title()} Analytics", "Mid-Market", "team-monthly", 4_900, 5, 400, None
    )
    ids = pair.seed(customer, uid)
    ids["account"] = pair.account_id(ids["customer"]) or ""
    assert ids["account"], "the CRM account linked to the customer"
    return ids


def add_seats(pair: Pair, ids: dict[str, str], seats: int, plan: str = "team-monthly") -> None:
    """More seats, the vendor's way: Stripe a subscription update, Zuora an AddProduct order
    (the Order Processed callout), Recurly a subscription change now."""
    billing = pair.settings.billing
    if billing == "stripe":
        st = pair.billing.client
        (sub,) = st.v1.subscriptions.list({"customer": ids["customer"]}).data
        item = sub["items"]["data"][0]
        st.v1.subscriptions.update(
            sub["id"], {"items": [{"id": item["id"], "quantity": item["quantity"] + seats}]}
        )
    elif billing == "zuora":
        z = pair.billing
        (sub,) = pair.billing_driver.subscriptions(ids["customer"])
        number = "PRP-" + plan.upper()
        prp = z.request("GET", f"/v1/product-rate-plans/{number}")
        charge = prp["productRatePlanCharges"][0]["id"]
        z.request(
            "POST",
            "/v1/orders",
            json={
                "orderDate": time.strftime("%Y-%m-%d", time.gmtime()),
                "existingAccountNumber": sub["accountNumber"],
                "subscriptions": [
                    {
                        "subscriptionNumber": sub["subscriptionNumber"],
                        "orderActions": [
                            {
                                "type": "AddProduct",
                                "addProduct": {
                                    "productRatePlanNumber": number,
                                    "chargeOverrides": [
                                        {
                                            "productRatePlanChargeId": charge,
                                            "pricing": {"recurringPerUnit": {"quantity": seats}},
                                        }
                                    ],
                                },
                            }
                        ],
                    }
                ],
            },
        )
    else:
        # the client's one connection is the worker's too: used under the connector's lock
        rc = pair.billing._call
        sub = rc(lambda c: c.list_account_subscriptions(f"code-{ids['customer']}").first(), "")
        rc(
            lambda c: c.create_subscription_change(
                sub.id, {"quantity": int(sub.quantity) + seats, "timeframe": "now"}
            ),
            "",
        )


async def status(handle: WorkflowHandle[Any, Any]) -> SyncStatus:
    return await handle.query("status", result_type=SyncStatus)


@pytest.mark.parametrize(("billing", "crm"), SMOKE_PAIRS, ids=["-".join(p) for p in SMOKE_PAIRS])
async def test_a_plan_change_reaches_the_crm_account(
    deployments: Any,
    billing: str,
    crm: str,
    uid: str,
    temporal_env: WorkflowEnvironment,
    capture: Capture,
) -> None:
    """The smoke, with the burst of billing events (the customer's seeding, the plan change)
    delivered in a shuffled order and the earliest one again, late (it changes nothing); on Zuora
    and Recurly also an account edit in billing reaching the CRM, and on their Salesforce pairs a
    rep's edit of a billing-owned field restored, with both sides' webhooks echoing our writes
    back and nothing more written (the loop scenario)."""
    pair: Pair = await deployments.get_pair((billing, crm))
    loop = crm == "salesforce" and billing in ("zuora", "recurly")
    sf = pair.urls["salesforce"]
    if loop:  # the account-change Flow's callouts to this deployment
        pair.route_crm_webhooks_here()
        httpx.post(
            sf + "/_sandbox/salesforce/flows", json={"account_changed": True}
        ).raise_for_status()
    try:
        b, c = sync_billing(pair.billing), sync_crm(pair.crm)
        with billing_captured(pair, capture, hook_auth(pair)):
            ids = seeded(pair, "smoke", uid)
            before = b.sync_view(ids["customer"])["mrr"]
            add_seats(pair, ids, 5)  # +100 %: at once, not batched
            after = b.sync_view(ids["customer"])
            if billing in ("zuora", "recurly"):
                # an account edit in billing: Zuora's AccountChanged custom event, Recurly's
                # account/updated notification; the shared billing contact reaches the CRM
                set_billing_contact(pair, ids["customer"], f"payables+{uid}@example.com")
        assert after["mrr"] == 2 * before
        route_billing(pair)
        burst = shuffled(list(capture.events))
        assert len(burst.events) >= 2, f"a burst of billing events, not {len(burst.events)}"
        await deliver_shuffled(pair, burst)
        view = await eventually(
            lambda: asyncio.to_thread(c.sync_view, ids["account"]),
            lambda v: v.get("mrr") == after["mrr"],
            f"the new MRR on the {crm} account ({burst.why})",
            within_s=60,
        )
        assert view.get("plan") == after["plan"]
        assert view.get("subscription_status") == after["subscription_status"] == "active"
        wf_id = golden.account_workflow_id(billing, ids["customer"])
        await eventually(
            lambda: asyncio.to_thread(pair.crm.audit_log, wf_id),
            lambda audit: any(a["action"] == "sync_to_crm" for a in audit),
            f"the sync_to_crm audit entry in {crm}",
            within_s=60,
        )
        handle = temporal_env.client.get_workflow_handle(wf_id)
        assert (await status(handle)).signals >= 1
        await late_repeat_changes_nothing(pair, ids, handle, burst)
        if billing in ("zuora", "recurly"):
            await eventually(
                lambda: asyncio.to_thread(c.sync_view, ids["account"]),
                lambda v: v.get("billing_contact") == f"payables+{uid}@example.com",
                f"the new billing contact on the {crm} account",
                within_s=60,
            )
        if loop:
            # the health profile, from Zuora's / Recurly's own figures (sync_view_health)
            account = await eventually(
                lambda: asyncio.to_thread(pair.crm_driver.account, ids["account"]),
                lambda a: bool(a.get("Health_Summary__c")),
                "the health profile on the account",
            )
            assert account["Health_Summary__c"].startswith(after["plan"] + " · ")
            assert "@" not in account["Health_Summary__c"]
            await restored_without_ping_pong(pair, ids, handle, after["mrr"])
    finally:
        if loop:
            httpx.post(sf + "/_sandbox/salesforce/flows", json={"account_changed": False})
            httpx.delete(sf + "/_sandbox/webhooks")


def billing_writes(pair: Pair, customer: str) -> list[dict[str, Any]]:
    """Writes to the billing customer's own record (Stripe ``POST /v1/customers/{id}``, Zuora
    ``PUT /v1/accounts/{id}``, Recurly ``PUT /accounts/code-{id}``)."""
    rows = httpx.get(pair.billing_url + "/_sandbox/requests").json()["requests"]
    own = {
        ("POST", f"/v1/customers/{customer}"),
        ("PUT", f"/v1/accounts/{customer}"),
        ("PUT", f"/accounts/code-{customer}"),
    }
    return [r for r in rows if (r["method"], r["path"]) in own]


async def restored_without_ping_pong(
    pair: Pair, ids: dict[str, str], handle: WorkflowHandle[Any, Any], mrr: int
) -> None:
    since = mark(pair)
    # a rep types another MRR into the account (the Flow's callout): billing owns it
    pair.crm.client.Account.update(ids["account"], {"MRR__c": 1.0})
    await eventually(
        lambda: asyncio.to_thread(pair.crm_driver.account, ids["account"]),
        lambda a: a.get("MRR__c") == mrr / 100,
        "the MRR restored",
    )
    await eventually(lambda: status(handle), lambda s: s.restored == 1, "the restore counted")
    # the audit entry follows the write
    await eventually(
        lambda: asyncio.to_thread(pair.crm.audit_log, handle.id),
        lambda audit: [a["action"] for a in audit].count("restore_field") == 1,
        "the restore_field audit entry",
    )
    # our writes come back (the Flow's callouts for the field sets; on Zuora the audit note's
    # AccountChanged callout): once every one of them was answered and taken by the idle run,
    # nothing more is written on either side
    crm_before = len(bulk_patches(pair, ids["account"])[1])
    billing_before = len(billing_writes(pair, ids["customer"]))
    quiet = await settled(pair, handle, since)
    assert len(bulk_patches(pair, ids["account"])[1]) == crm_before
    assert len(billing_writes(pair, ids["customer"])) == billing_before
    assert quiet.restored == 1 and quiet.signals >= 4


async def started(
    pair: Pair, ids: dict[str, str], temporal_env: WorkflowEnvironment, flusher_id: str | None
) -> WorkflowHandle[Any, Any]:
    """The customer's sync started directly (webhooks off: the test decides what each side
    sees), its first sync written."""
    billing = pair.settings.billing
    handle = await temporal_env.client.start_workflow(
        golden.WORKFLOW_TYPE,
        golden.AccountSyncInput(
            billing=billing, customer_id=ids["customer"], flusher_id=flusher_id, batch_every_s=1
        ),
        id=golden.account_workflow_id(billing, ids["customer"]),
        task_queue=pair.settings.task_queue,
        start_signal=golden.SIGNAL_CHANGE,
        start_signal_args=[signal(billing, ids, Side.BILLING)],
    )
    await eventually(
        lambda: status(handle),
        lambda s: s.immediate_writes >= 1 and s.stage == "waiting for a change",
        "the first sync",
        within_s=30,
    )
    return handle


def signal(billing: str, ids: dict[str, str], side: Side) -> SyncSignal:
    return SyncSignal(
        billing=billing,
        customer_id=ids["customer"],
        side=side,
        event_id=f"t-{uuid.uuid4().hex[:10]}",
        occurred_at=__import__("datetime").datetime.now(__import__("datetime").UTC),
        crm_account_id=ids["account"] if side is Side.CRM else None,
    )


def set_billing_contact(pair: Pair, customer: str, email: str) -> None:
    """A billing admin edits the billing email in the vendor's own app (its API shape)."""
    billing = pair.settings.billing
    if billing == "stripe":
        pair.billing.client.v1.customers.update(customer, {"email": email})
    elif billing == "zuora":
        pair.billing.request(
            "PUT", f"/v1/accounts/{customer}", json={"billToContact": {"workEmail": email}}
        )
    else:  # under the connector's lock (the worker shares the client's one connection)
        pair.billing._call(lambda c: c.update_account(f"code-{customer}", {"email": email}), "")


def bulk_patches(pair: Pair, account: str) -> tuple[list[Any], list[Any]]:
    """Salesforce's ledger for the account: sObject Collections PATCHes, single-record ones."""
    rows = httpx.get(pair.urls["salesforce"] + "/_sandbox/requests").json()["requests"]
    patches = [
        r for r in rows if r["method"] == "PATCH" and account in str(r.get("body")) + r["path"]
    ]
    bulk = [r for r in patches if r["path"].endswith("/composite/sobjects")]
    single = [r for r in patches if r["path"].endswith(f"/Account/{account}")]
    return bulk, single


@pytest.mark.parametrize("billing", BILLINGS)
async def test_a_conflict_through_the_review_queue_then_a_minor_change_flushed_in_bulk(
    deployments: Any, billing: str, uid: str, temporal_env: WorkflowEnvironment
) -> None:
    pair: Pair = await deployments.get_pair((billing, "salesforce"))
    unroute_billing(pair)
    ids = seeded(pair, "review", uid)
    flusher_id = f"account-sync-flush:{billing}:salesforce-{uid}"
    handle = await started(pair, ids, temporal_env, flusher_id)

    # both sides change the billing contact before either reached the other
    set_billing_contact(pair, ids["customer"], f"finance+{uid}@example.com")
    pair.crm.client.Account.update(
        ids["account"], {"Billing_Contact_Email__c": f"ap+{uid}@example.com"}
    )
    await handle.signal(golden.SIGNAL_CHANGE, signal(billing, ids, Side.CRM))
    s = await eventually(
        lambda: status(handle), lambda s: bool(s.conflicts_open), "the conflict in the queue"
    )
    (conflict,) = s.conflicts_open
    assert conflict.field == "billing_contact"
    assert conflict.billing_value == f"finance+{uid}@example.com"
    assert conflict.crm_value == f"ap+{uid}@example.com"
    if billing == "stripe":
        # the billing write's answer will be lost after it committed: the activity retries it
        # (Zuora and Recurly: a field set, or a marked note found already there on a retry)
        httpx.post(
            pair.billing_url + "/_sandbox/faults",
            json={
                "kind": "commit_then_timeout",
                "method": "POST",
                "path": f"/v1/customers/{ids['customer']}",
                "delay_s": 3,
                "times": 1,
            },
        ).raise_for_status()
    # a reviewer takes the CRM's value (the Web UI's approval signal)
    await decide(
        temporal_env.client, handle.id, conflict.action_id, Decision.APPROVE, "bob@example.com"
    )
    await eventually(
        lambda: status(handle),
        lambda s: s.conflicts_resolved == 1 and s.stage == "waiting for a change",
        "the resolution written",
        within_s=30,
    )
    view = sync_billing(pair.billing).sync_view(ids["customer"])
    assert view["billing_contact"] == f"ap+{uid}@example.com"
    if billing == "stripe":
        # whichever write the fault hit (the field set or the audit note on the customer) was
        # sent again with the same idempotency key: Stripe replays its first answer
        ledger = httpx.get(pair.billing_url + "/_sandbox/requests").json()["requests"]
        path = ("POST", f"/v1/customers/{ids['customer']}")
        on_path = [r for r in ledger if (r["method"], r["path"]) == path]
        (lost,) = [r for r in on_path if r.get("fault") == "commit_then_timeout"]
        later = on_path[on_path.index(lost) + 1 :]
        again = [r for r in later if r.get("body") == lost.get("body")]
        key = lost["headers"].get("idempotency-key")
        assert again and key and again[0]["headers"].get("idempotency-key") == key
    # audited on both sides, once (the entries follow the write)
    await eventually(
        lambda: asyncio.to_thread(pair.billing.list_notes, NoteTarget.CUSTOMER, ids["customer"]),
        lambda notes: sum(1 for n in notes if "approved by: bob@example.com" in n) == 1,
        "the resolution's note on the billing customer",
    )
    audit = await eventually(
        lambda: asyncio.to_thread(pair.crm.audit_log, handle.id),
        lambda audit: any(a["action"] == "resolve_conflict" for a in audit),
        "the resolution's CRM audit entry",
    )
    resolved = [a for a in audit if a["action"] == "resolve_conflict"]
    assert len(resolved) == 1 and "bob@example.com" in resolved[0]["text"]

    # a minor change (one more seat: +20 %) is handed to the flusher and written in bulk
    bulk_before, singles_before = bulk_patches(pair, ids["account"])
    before = view["mrr"]
    add_seats(pair, ids, 1)
    after = sync_billing(pair.billing).sync_view(ids["customer"])["mrr"]
    assert after == before * 6 // 5
    await handle.signal(golden.SIGNAL_CHANGE, signal(billing, ids, Side.BILLING))
    await eventually(lambda: status(handle), lambda s: s.minor_handed >= 1, "handed to the flusher")
    flusher = temporal_env.client.get_workflow_handle(flusher_id)
    await eventually(
        lambda: flusher.query("status", result_type=FlushStatus),
        lambda f: f.records_written >= 1,
        "the bulk flush",
        within_s=30,
    )
    assert pair.crm_driver.account(ids["account"])["MRR__c"] == after / 100
    bulk, singles = bulk_patches(pair, ids["account"])
    # the one bulk call, and no single-account write
    assert len(bulk) == len(bulk_before) + 1 and len(singles) == len(singles_before)
    await eventually(
        lambda: asyncio.to_thread(pair.crm.audit_log, flusher_id),
        lambda audit: "sync_bulk_write" in [a["action"] for a in audit],
        "the bulk write's CRM audit entry",
    )
    await flusher.terminate("test over")
    await handle.terminate("test over")


async def test_stripe_restore_without_ping_pong_then_assist_mode_proposes(
    deployments: Any,
    uid: str,
    temporal_env: WorkflowEnvironment,
    policy_dir: Path,
    capture: Capture,
) -> None:
    """The loop scenario on Stripe × Salesforce: the restore's audit note on the customer comes
    back as ``customer.updated`` carrying our ``rb-`` key (an echo at the door), the field set
    as the Flow's callout (the same value): nothing more written on either side. Then the sync
    in assist mode: the same kind of edit is proposed as one Salesforce task and restored only
    when a person approves the proposal. The seeding's and the plan change's Stripe events reach
    the deployment in a shuffled order, and the earliest again, late (it changes nothing)."""
    pair: Pair = await deployments.get_pair(("stripe", "salesforce"))
    pair.route_crm_webhooks_here()
    sf = pair.urls["salesforce"]
    httpx.post(sf + "/_sandbox/salesforce/flows", json={"account_changed": True}).raise_for_status()
    try:
        with billing_captured(pair, capture):
            ids = seeded(pair, "loop", uid)
            add_seats(pair, ids, 5)
        route_billing(pair)
        burst = shuffled(list(capture.events))
        await deliver_shuffled(pair, burst)
        mrr = sync_billing(pair.billing).sync_view(ids["customer"])["mrr"]
        await eventually(
            lambda: asyncio.to_thread(pair.crm_driver.account, ids["account"]),
            lambda a: a.get("MRR__c") == mrr / 100,
            f"the new MRR on the account ({burst.why})",
        )
        handle = temporal_env.client.get_workflow_handle(
            golden.account_workflow_id("stripe", ids["customer"])
        )
        await late_repeat_changes_nothing(pair, ids, handle, burst)
        await restored_without_ping_pong(pair, ids, handle, mrr)
        await assist_mode_proposes_then_applies(pair, ids, handle, mrr, policy_dir, temporal_env)
    finally:
        httpx.post(sf + "/_sandbox/salesforce/flows", json={"account_changed": False})
        httpx.delete(sf + "/_sandbox/webhooks")


async def assist_mode_proposes_then_applies(
    pair: Pair,
    ids: dict[str, str],
    handle: WorkflowHandle[Any, Any],
    mrr: int,
    policy_dir: Path,
    temporal_env: WorkflowEnvironment,
) -> None:
    """policies/modes.yaml says ``account_sync: assist`` (read at decision time): a rep's edit of
    the MRR is not restored but proposed — one task on the account (field, current → proposed,
    source, the action to approve) — and approved through the Web UI's signal it is written,
    exactly the proposed value, audited with the approver; its echoes write nothing more."""
    modes = policy_dir / "modes.yaml"
    text = modes.read_text()
    assert "account_sync: auto" in text
    modes.write_text(text.replace("account_sync: auto", "account_sync: assist"))
    try:
        since = mark(pair)
        pair.crm.client.Account.update(ids["account"], {"MRR__c": 2.0})
        s = await eventually(
            lambda: status(handle),
            lambda s: s.proposal_open is not None and s.proposal_open.task_id is not None,
            "the proposal",
        )
        p = s.proposal_open
        assert p is not None and [(i.field, i.current, i.proposed) for i in p.items] == [
            ("mrr", 200, mrr)
        ]
        assert pair.crm_driver.account(ids["account"])["MRR__c"] == 2.0  # nothing written
        tasks = [
            t for t in pair.crm_driver.tasks(ids["account"]) if p.hash in (t["description"] or "")
        ]
        assert len(tasks) == 1 and tasks[0]["id"] == p.task_id
        assert f"crm: mrr: 200 → {mrr} (source: billing" in tasks[0]["description"]
        assert p.action_id in tasks[0]["description"]
        # the approver acts on what the Web UI shows waiting (the task may be there a moment
        # before the approval is asked, under load)
        await eventually(
            lambda: handle.query("pending_approvals"),
            lambda pending: p.action_id in [a["action_id"] for a in pending],
            "the proposal's approval asked",
        )
        await decide(
            temporal_env.client, handle.id, p.action_id, Decision.APPROVE, "bob@example.com"
        )
        await eventually(
            lambda: asyncio.to_thread(pair.crm_driver.account, ids["account"]),
            lambda a: a.get("MRR__c") == mrr / 100,
            "the approved proposal applied",
        )
        audit = await eventually(
            lambda: asyncio.to_thread(pair.crm.audit_log, handle.id),
            lambda audit: [a["action"] for a in audit].count("sync_to_crm") >= 2,
            "the approved write's audit entry",
        )
        assert [a["action"] for a in audit].count("sync_proposed") == 1
        assert "bob@example.com" in [a for a in audit if a["action"] == "sync_to_crm"][-1]["text"]
        crm_before = len(bulk_patches(pair, ids["account"])[1])
        quiet = await settled(pair, handle, since)
        assert quiet.proposals_applied == 1 and quiet.proposal_open is None
        assert len(bulk_patches(pair, ids["account"])[1]) == crm_before
    finally:
        modes.write_text(text)
