"""QuoteToCashWorkflow and QuoteToCashCatchUpWorkflow, every branch, on the time-skipping test
server over fake activities: mapping fixes, customer picks, approvals and the saga that undoes a
failed run, without a vendor or an emulator."""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from domain.approvals import QUERY, Decision
from domain.ids import idempotency_key, q2c_workflow_id
from domain.models import BillingCustomer, CrmAccount
from domain.policy import Mode, Outcome
from domain.quote import (
    CATCH_UP_MAX_LIMIT,
    CATCH_UP_WORKFLOW_TYPE,
    SIGNAL_CUSTOMER_PICKED,
    SIGNAL_MAPPING_FIXED,
    WORKFLOW_TYPE,
    CatchUpInput,
    CatchUpResult,
    CustomerPick,
    MappingFixed,
    QuoteToCashInput,
    QuoteToCashResult,
    QuoteToCashStatus,
)
from domain.records import Contact, Opportunity, OpportunityLine, Price
from tests.fast.fakes import (
    APPROVER,
    Fakes,
    answer,
    counter,
    fake_worker,
    governance,
    policy,
    sequence,
    started,
)
from tests.pairs import eventually

CRM, BILLING = "fakecrm", "fakebill"
MAPPING = {"products": {"PRO": {BILLING: "price-pro"}}}
PRICES = {"prices": {"price-pro": Price(id="price-pro", unit_amount=10_000, currency="USD")}}
NO_MATCH: dict[str, Any] = {"linked": None, "by_email": [], "by_company": []}


class Deal:
    def __init__(self, **opp: Any) -> None:
        uid = uuid.uuid4().hex[:8]
        self.id, self.account_id = f"006{uid}", f"001{uid}"
        self.wf_id = q2c_workflow_id(CRM, self.id)
        account = opp.pop("account", None) or CrmAccount(id=self.account_id, name="Acme Rockets")
        self.opp = Opportunity(
            id=self.id,
            name="Acme — 5 seats",
            stage="Closed Won",
            won=True,
            account=account,
            contacts=[Contact(id="003c", name="Ann Lee", email="ann@acme.test")],
            lines=[OpportunityLine(id="00k1", product_code="PRO", quantity=5)],
            **opp,
        )

    def key(self, step: str) -> str:
        return idempotency_key(self.wf_id, step)


def q2c_fakes(deal: Deal, **outcomes: Outcome) -> Fakes:
    return (
        governance(Fakes(), **outcomes)
        .on("q2c_get_opportunity", {"opportunity": deal.opp.model_dump(mode="json")})
        .on("q2c_read_product_mapping", MAPPING)
        .on("q2c_get_prices", PRICES)
        .on("q2c_find_billing_customer", NO_MATCH)
        .on("q2c_active_subscriptions", {"subscriptions": []})
        .on("q2c_create_billing_customer", {"id": "cus-new", "company": "Acme Rockets"})
        .on("q2c_set_crm_link", None)
        .on(
            "q2c_create_subscription",
            lambda i: {
                "id": "sub-new",
                "customer_id": i["draft"]["customer_id"],
                "status": "active",
                "mrr": 50_000,
            },
        )
        .on("q2c_write_billing_link", None)
        .on("upsert_crm_task", counter("task"))
        .on("q2c_undo_subscription", {"did": "cancelled subscription sub-new"})
        .on("q2c_undo_customer", {"did": "deleted customer cus-new"})
    )


def q2c(
    client: Client, deal: Deal, fakes: Fakes
) -> AbstractAsyncContextManager[WorkflowHandle[Any, QuoteToCashResult]]:
    return started(
        client,
        fakes,
        WORKFLOW_TYPE,
        QuoteToCashInput(crm=CRM, billing=BILLING, opportunity_id=deal.id),
        id=deal.wf_id,
        result_type=QuoteToCashResult,
    )


async def status(handle: WorkflowHandle) -> QuoteToCashStatus:
    return await handle.query("status", result_type=QuoteToCashStatus)


async def test_a_won_deal_becomes_a_new_customer_and_a_linked_subscription(client: Client) -> None:
    deal = Deal()
    fakes = q2c_fakes(deal)
    async with q2c(client, deal, fakes) as handle:
        result = await handle.result()
        final = await status(handle)
    assert fakes.writes() == [
        "q2c_create_billing_customer",
        "q2c_create_subscription",
        "q2c_write_billing_link",
        "upsert_crm_task",
    ]
    (customer,) = fakes.inputs("q2c_create_billing_customer")
    assert customer["draft"]["key"] == deal.key("create-customer")
    assert (customer["draft"]["email"], customer["draft"]["first_name"]) == ("ann@acme.test", "Ann")
    assert customer["draft"]["crm_account_id"] == deal.account_id
    (sub,) = fakes.inputs("q2c_create_subscription")
    assert sub["draft"]["key"] == deal.key("create-subscription")
    assert sub["draft"]["customer_id"] == "cus-new"
    assert [(ln["price_id"], ln["quantity"]) for ln in sub["draft"]["lines"]] == [("price-pro", 5)]
    (link,) = fakes.inputs("q2c_write_billing_link")
    assert (link["link"]["customer_id"], link["link"]["subscription_id"]) == ("cus-new", "sub-new")
    assert link["link"]["account_id"] == deal.account_id and link["link"]["mrr"] == 50_000
    assert fakes.inputs("upsert_crm_task")[0]["draft"]["key"] == deal.key("provisioning-task")
    assert [a for a, _ in fakes.audited()] == [
        "create_customer",
        "create_subscription",
        "quote_to_cash_live",
    ]
    assert (result.outcome, result.customer_id, result.subscription_id) == (
        "live",
        "cus-new",
        "sub-new",
    )
    assert final.customer_how == "created"


@pytest.mark.parametrize(
    ("found", "outcome"),
    [
        (None, "not_found"),
        ({"won": False, "stage": "Negotiation"}, "not_won"),
        ({"billing_subscription_id": "sub-old"}, "already_live"),
    ],
    ids=["not-found", "not-won", "already-live"],
)
async def test_a_deal_that_is_gone_not_won_or_already_live_closes_without_writing(
    client: Client, found: dict[str, Any] | None, outcome: str
) -> None:
    deal = Deal()
    opp = None if found is None else deal.opp.model_copy(update=found).model_dump(mode="json")
    fakes = q2c_fakes(deal).on("q2c_get_opportunity", {"opportunity": opp})
    async with q2c(client, deal, fakes) as handle:
        result = await handle.result()
    assert result.outcome == outcome
    assert fakes.names() == ["q2c_get_opportunity"]


async def test_a_missing_product_mapping_waits_for_mapping_fixed(client: Client) -> None:
    deal = Deal()
    fakes = q2c_fakes(deal).on("q2c_read_product_mapping", sequence({"products": {}}, MAPPING))
    async with q2c(client, deal, fakes) as handle:
        waiting = await eventually(lambda: status(handle), lambda s: bool(s.unmapped), "unmapped")
        assert list(waiting.unmapped) == ["PRO"]
        assert fakes.writes() == []
        # a fix from someone outside the roles that may answer it changes nothing (issue 13)
        await handle.signal(SIGNAL_MAPPING_FIXED, MappingFixed(by="intern@example.com"))
        refused = await eventually(lambda: status(handle), lambda s: bool(s.refused), "refusal")
        assert refused.refused == [
            "mapping fix ignored: intern@example.com is not among who may answer"
        ]
        assert len(fakes.inputs("q2c_read_product_mapping")) == 1
        await handle.signal(SIGNAL_MAPPING_FIXED, MappingFixed(by=APPROVER))
        result = await handle.result()
    assert len(fakes.inputs("q2c_read_product_mapping")) == 2
    assert fakes.inputs("eligible_approvers")[0]["action"] == "create_subscription"
    assert ("answer_refused", "refused") in fakes.audited()
    assert result.outcome == "live"


async def test_a_mapping_never_fixed_rolls_back_when_the_wait_expires(client: Client) -> None:
    deal = Deal()
    fakes = q2c_fakes(deal).on("q2c_read_product_mapping", {"products": {}})
    async with q2c(client, deal, fakes) as handle:
        result = await handle.result()
    assert result.outcome == "rolled_back"
    assert result.reason == "no product mapping for PRO in time"
    # nothing was created; the opportunity carries the reason (the CRM link "compensation")
    assert fakes.writes() == ["q2c_write_billing_link"]
    (link,) = fakes.inputs("q2c_write_billing_link")
    assert link["link"]["subscription_id"] is None
    assert link["link"]["status"] == "rolled back: no product mapping for PRO in time"


async def test_similar_customers_wait_for_a_person_to_pick_one(client: Client) -> None:
    deal = Deal()
    similar = [
        BillingCustomer(id="cus-a", company="Acme Rockets Inc", email="billing@acme.test"),
        BillingCustomer(id="cus-b", company="Acme Rocket Co"),
    ]
    fakes = q2c_fakes(deal).on(
        "q2c_find_billing_customer", {"linked": None, "by_email": [], "by_company": similar}
    )
    async with q2c(client, deal, fakes) as handle:
        waiting = await eventually(
            lambda: status(handle), lambda s: bool(s.candidates), "candidates"
        )
        assert {c.customer_id for c in waiting.candidates} == {"cus-a", "cus-b"}
        # a customer that was not offered is refused; the offered one is taken
        # a customer that was not offered is refused, and so is a pick from someone outside
        # the roles that may answer it (issue 13: RevOps by default); the offered one is taken
        await handle.signal(
            SIGNAL_CUSTOMER_PICKED, CustomerPick(customer_id="cus-zzz", by=APPROVER)
        )
        await handle.signal(SIGNAL_CUSTOMER_PICKED, CustomerPick(customer_id="cus-a", by="mallory"))
        await handle.signal(SIGNAL_CUSTOMER_PICKED, CustomerPick(customer_id="cus-a", by=APPROVER))
        result = await handle.result()
        final = await status(handle)
    assert final.refused == [
        "pick 'cus-zzz' ignored: not one of the offered candidates",
        "pick 'cus-a' ignored: mallory is not among who may answer",
    ]
    assert fakes.inputs("eligible_approvers")[0]["action"] == "create_customer"
    assert ("answer_refused", "refused") in fakes.audited()  # the role refusal, audited
    (link,) = fakes.inputs("q2c_set_crm_link")
    assert (link["customer_id"], link["account_id"]) == ("cus-a", deal.account_id)
    assert link["idempotency_key"] == deal.key("link-customer")
    assert fakes.inputs("q2c_create_billing_customer") == []
    assert fakes.inputs("q2c_create_subscription")[0]["draft"]["customer_id"] == "cus-a"
    assert (result.outcome, result.customer_id, final.customer_how) == (
        "live",
        "cus-a",
        f"picked by {APPROVER}",
    )


async def test_picking_new_creates_a_customer(client: Client) -> None:
    deal = Deal()
    fakes = q2c_fakes(deal).on(
        "q2c_find_billing_customer",
        {
            "linked": None,
            "by_email": [],
            "by_company": [BillingCustomer(id="cus-a", company="Acme")],
        },
    )
    async with q2c(client, deal, fakes) as handle:
        await eventually(lambda: status(handle), lambda s: bool(s.candidates), "candidates")
        await handle.signal(SIGNAL_CUSTOMER_PICKED, CustomerPick(customer_id="new", by=APPROVER))
        result = await handle.result()
    assert fakes.inputs("q2c_set_crm_link") == []
    assert len(fakes.inputs("q2c_create_billing_customer")) == 1
    assert result.customer_id == "cus-new"


@pytest.mark.parametrize(
    ("how", "search", "linked_in_crm"),
    [
        ("linked (CRM)", NO_MATCH, True),
        ("linked (billing)", {**NO_MATCH, "linked": {"id": "cus-old"}}, False),
        ("matched by email", {**NO_MATCH, "by_email": [{"id": "cus-old"}]}, False),
    ],
    ids=["linked-in-crm", "linked-in-billing", "one-email-match"],
)
async def test_an_existing_customer_is_reused_never_duplicated(
    client: Client, how: str, search: dict[str, Any], linked_in_crm: bool
) -> None:
    account = CrmAccount(
        id="001acct",
        name="Acme Rockets",
        billing_customer_id="cus-old" if linked_in_crm else None,
        billing_platform=BILLING if linked_in_crm else None,
    )
    deal = Deal(account=account)
    fakes = q2c_fakes(deal).on("q2c_find_billing_customer", search)
    async with q2c(client, deal, fakes) as handle:
        result = await handle.result()
        final = await status(handle)
    assert (result.customer_id, final.customer_how) == ("cus-old", how)
    assert fakes.inputs("q2c_create_billing_customer") == []
    assert len(fakes.inputs("q2c_find_billing_customer")) == (0 if linked_in_crm else 1)
    assert len(fakes.inputs("q2c_set_crm_link")) == (1 if how == "matched by email" else 0)


async def test_non_standard_terms_wait_for_revops_and_go_live_once_approved(client: Client) -> None:
    deal = Deal(payment_terms="Net 60")
    fakes = q2c_fakes(deal, create_subscription=Outcome.NEEDS_APPROVAL)
    async with q2c(client, deal, fakes) as handle:
        (pending,) = await eventually(
            lambda: handle.query(QUERY, result_type=list), bool, "the approval"
        )
        assert pending["action"]["custom_terms"] is True
        assert pending["action"]["terms"] == "payment terms Net 60"
        assert fakes.inputs("q2c_create_subscription") == []
        await answer(handle, pending["action_id"])
        result = await handle.result()
    (sub,) = fakes.inputs("q2c_create_subscription")
    assert sub["draft"]["net_term_days"] == 60
    assert ("create_subscription", "executed (sub-new)") in fakes.audited()
    assert result.outcome == "live"


async def test_a_rejected_subscription_undoes_the_customer_it_created(client: Client) -> None:
    deal = Deal(payment_terms="Net 60")
    fakes = q2c_fakes(deal, create_subscription=Outcome.NEEDS_APPROVAL)
    async with q2c(client, deal, fakes) as handle:
        (pending,) = await eventually(
            lambda: handle.query(QUERY, result_type=list), bool, "the approval"
        )
        await answer(handle, pending["action_id"], Decision.REJECT)
        result = await handle.result()
        final = await status(handle)
    assert fakes.inputs("q2c_create_subscription") == []
    # newest first: delete the customer, then the CRM link back as it was, with the reason
    assert fakes.writes() == [
        "q2c_create_billing_customer",
        "q2c_undo_customer",
        "q2c_write_billing_link",
    ]
    (undo,) = fakes.inputs("q2c_undo_customer")
    assert (undo["customer_id"], undo["idempotency_key"]) == (
        "cus-new",
        deal.key("delete-customer"),
    )
    assert result.outcome == "rolled_back"
    assert result.reason == f"create_subscription rejected by {APPROVER}"
    assert final.compensations == [
        "deleted customer cus-new",
        "restored the CRM link and recorded the reason",
    ]
    assert fakes.audited()[-1] == ("quote_to_cash_rolled_back", "rolled back")


async def test_a_step_that_fails_for_good_undoes_everything_newest_first(client: Client) -> None:
    deal = Deal()

    def write_link(i: dict[str, Any]) -> Any:
        if i["link"]["subscription_id"]:  # the write-back fails; the compensation works
            return ApplicationError("CRM says no", type="fakecrm.invalid", non_retryable=True)
        return None

    fakes = q2c_fakes(deal).on("q2c_write_billing_link", write_link)
    async with q2c(client, deal, fakes) as handle:
        result = await handle.result()
    assert fakes.writes() == [
        "q2c_create_billing_customer",
        "q2c_create_subscription",
        "q2c_write_billing_link",  # failed
        "q2c_undo_subscription",
        "q2c_undo_customer",
        "q2c_write_billing_link",  # the CRM link back, with the reason
    ]
    (cancel,) = fakes.inputs("q2c_undo_subscription")
    assert cancel["subscription_id"] == "sub-new"
    assert cancel["idempotency_key"] == deal.key("cancel-subscription")
    assert result.outcome == "rolled_back" and result.subscription_id is None
    assert result.reason == "write_billing_link failed: fakecrm.invalid: CRM says no"


async def test_a_billing_account_missing_a_setting_ends_as_needs_configuration(
    client: Client,
) -> None:
    """Issue 16: a fresh Chargebee site without Contract Terms refuses the subscription; the run
    undoes the customer it made and ends as ``needs_configuration`` with the fix as its reason
    (before: ``rolled_back`` with "create_subscription failed", a failure to investigate)."""
    deal = Deal()
    refused = ApplicationError(
        "needs configuration (contract-terms): Contract Terms are off; fix: enable them",
        type="chargebee.needs_configuration",
        non_retryable=True,
    )
    fakes = q2c_fakes(deal).on("q2c_create_subscription", lambda i: refused)
    async with q2c(client, deal, fakes) as handle:
        result = await handle.result()
        final = await status(handle)
    assert result.outcome == "needs_configuration" and final.outcome == "needs_configuration"
    assert result.reason == (
        "create_subscription: the billing account needs configuration (contract-terms): "
        "Contract Terms are off; fix: enable them"
    )
    assert "q2c_undo_customer" in fakes.writes()  # nothing half-made is left behind
    assert fakes.audited()[-1] == ("quote_to_cash_rolled_back", "rolled back")


async def test_a_compensation_that_fails_is_audited_and_fails_the_run(client: Client) -> None:
    deal = Deal()
    fakes = (
        q2c_fakes(deal)
        .on(
            "upsert_crm_task",
            ApplicationError("task refused", type="fakecrm.invalid", non_retryable=True),
        )
        .on(
            "q2c_undo_subscription",
            ApplicationError("cannot cancel", type="fakebill.invalid", non_retryable=True),
        )
    )
    async with q2c(client, deal, fakes) as handle:
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert isinstance(failed.value.cause, ApplicationError)
    assert failed.value.cause.type == "QuoteToCashCompensationFailed"
    audited = fakes.audited()
    assert ("compensation_failed", "failed") in audited
    assert audited[-1] == ("quote_to_cash_rolled_back", "rolled back (incomplete)")
    # the other compensations still ran
    assert "q2c_undo_customer" in fakes.writes()


# --- the catch-up --------------------------------------------------------------------------------


async def test_the_catch_up_starts_runs_for_won_deals_since_the_watermark(client: Client) -> None:
    since = datetime(2026, 1, 5, 12, tzinfo=UTC)
    fakes = Fakes().on(
        "q2c_won_opportunities",
        lambda i: {"crm": CRM, "billing": BILLING, "opportunity_ids": ["006a", "006b"]},
    )
    fakes.on(
        "q2c_start_runs", {"running": ["q2c:fakecrm:006a"], "already_done": ["q2c:fakecrm:006b"]}
    )
    async with fake_worker(client, fakes) as task_queue:
        result = await client.execute_workflow(
            CATCH_UP_WORKFLOW_TYPE,
            CatchUpInput(since=since),
            id=f"q2c-catch-up-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
            result_type=CatchUpResult,
        )
    (asked,) = fakes.inputs("q2c_won_opportunities")
    assert datetime.fromisoformat(asked["since"]) == since and asked["limit"] == 200
    (started,) = fakes.inputs("q2c_start_runs")
    assert (started["opportunity_ids"], started["trigger"]) == (["006a", "006b"], "catch_up")
    assert (result.found, result.running, result.already_done) == (
        ["006a", "006b"],
        ["q2c:fakecrm:006a"],
        ["q2c:fakecrm:006b"],
    )
    assert result.since == since and result.watermark > since and not result.truncated


async def test_the_catch_up_asks_again_for_more_on_a_full_page_and_says_when_truncated(
    client: Client,
) -> None:
    fakes = Fakes().on(
        "q2c_won_opportunities",
        lambda i: {
            "crm": CRM,
            "billing": BILLING,
            "opportunity_ids": [f"006{n}" for n in range(i["limit"])],
        },
    )
    fakes.on("q2c_start_runs", lambda i: {"running": i["opportunity_ids"], "already_done": []})
    async with fake_worker(client, fakes) as task_queue:
        result = await client.execute_workflow(
            CATCH_UP_WORKFLOW_TYPE,
            CatchUpInput(lookback=timedelta(hours=1), limit=100),
            id=f"q2c-catch-up-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
            result_type=CatchUpResult,
        )
    assert [i["limit"] for i in fakes.inputs("q2c_won_opportunities")] == [
        100,
        400,
        1600,
        CATCH_UP_MAX_LIMIT,
    ]
    assert result.truncated and len(result.found) == CATCH_UP_MAX_LIMIT
    assert result.watermark - result.since == timedelta(hours=1)


async def test_the_catch_up_with_nothing_won_starts_nothing(client: Client) -> None:
    fakes = Fakes().on(
        "q2c_won_opportunities", {"crm": CRM, "billing": BILLING, "opportunity_ids": []}
    )
    async with fake_worker(client, fakes) as task_queue:
        result = await client.execute_workflow(
            CATCH_UP_WORKFLOW_TYPE,
            CatchUpInput(),
            id=f"q2c-catch-up-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
            result_type=CatchUpResult,
        )
    assert fakes.names() == ["q2c_won_opportunities"]
    assert result.found == [] and result.watermark - result.since == timedelta(hours=24)


async def test_observe_mode_reads_the_deal_but_writes_nothing_not_even_the_rollback(
    client: Client,
) -> None:
    deal = Deal()
    fakes = q2c_fakes(deal)
    fakes.on("decide_policy", policy(default=Outcome.DENY, mode=Mode.OBSERVE))
    async with q2c(client, deal, fakes) as handle:
        result = await handle.result()
    assert fakes.writes() == []
    assert fakes.inputs("write_crm_audit") == [] and fakes.inputs("add_billing_note") == []
    assert fakes.inputs("q2c_get_opportunity") and fakes.inputs("q2c_find_billing_customer")
    assert result.outcome == "rolled_back" and result.subscription_id is None
