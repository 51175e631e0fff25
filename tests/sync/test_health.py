"""The health profile on the CRM account (issue 19): the rules of domain/health.py, the account
sync writing it over fake activities (first sync at once, then with the minor changes, and only
when a figure changed), and end to end on Chargebee × Salesforce and Chargebee × HubSpot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from domain import golden, health
from domain.drafts import health_rules_line
from domain.golden import Side
from sandbox.scenarios import DunningCustomer
from tests.pairs import Pair, eventually
from tests.sync.deployment import sync_deployment
from tests.sync.test_workflow import keep_history, settled, start
from tests.sync.world import World

# --- the rules ---------------------------------------------------------------------------------


def test_tenure_counts_whole_months() -> None:
    today = date(2026, 12, 7)
    assert health.tenure_months("2026-11-08", today) == 0
    assert health.tenure_months("2026-11-07", today) == 1
    assert health.tenure_months("2024-12-31", today) == 23
    assert health.tenure_months(None, today) is None
    assert health.tenure_months("garbled", today) is None


def test_success_rate_is_unknown_without_attempts() -> None:
    assert health.success_rate(0, 0) is None
    assert health.success_rate(9, 1) == 90.0
    assert health.success_rate(2, 1) == 66.7


def test_usage_trend_is_the_seat_direction_over_thirty_days() -> None:
    s = health.HealthState()
    s = health.observe(s, 5, date(2026, 10, 1))
    assert health.usage_trend(s, date(2026, 10, 1)) == "flat"
    s = health.observe(s, 7, date(2026, 10, 20))
    assert health.usage_trend(s, date(2026, 10, 20)) == "rising"
    s = health.observe(s, 6, date(2026, 10, 20))  # every change is an observation
    assert s.seats[-1] == ("2026-10-20", 6) and len(s.seats) == 3
    assert health.observe(s, 6, date(2026, 10, 21)) == s  # no change, nothing new
    # 40 days later, against the last count older than 30 days
    s = health.observe(s, 4, date(2026, 11, 29))
    assert health.usage_trend(s, date(2026, 11, 29)) == "falling"
    assert health.usage_trend(health.HealthState(), date(2026, 1, 1)) is None


def test_the_profile_is_written_only_when_a_figure_changes() -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    inputs = health.HealthInputs(
        customer_since="2025-12-01", payments_ok=11, payments_failed=1, open_dunning=1, seats=5
    )
    golden_now = {"plan": "pro", "mrr": 49_00, "churn_level": "medium", "account_name": "Initech"}
    f, state = health.facts("cus_1", golden_now, inputs, health.HealthState(), now)
    assert (f.tenure_months, f.payment_success_rate, f.usage_trend) == (12, 91.7, "flat")
    assert health.changed(state, f)
    state = state.model_copy(update={"written": f})
    again, state = health.facts("cus_1", golden_now, inputs, state, now)
    assert not health.changed(state, again)
    # payments read once a day: a re-read that skipped them keeps the day's counts
    assert not state.payments_due(now.date()) and state.payments_due(date(2026, 12, 8))
    skipped = inputs.model_copy(
        update={"payments_ok": 0, "payments_failed": 0, "payments_read": False}
    )
    same, state = health.facts("cus_1", golden_now, skipped, state, now)
    assert same == again
    fields = health.crm_fields(f, health_rules_line(f))
    assert set(fields) == set(health.PROFILE_FIELDS)
    assert (
        "91.7%" in fields["subscription_health"] and "Initech" not in fields["subscription_health"]
    )
    assert fields["health_summary"] == (
        "pro · 49.00 USD MRR · customer for 12 months · 92% of payments succeeded · "
        "1 invoice in dunning · usage flat · churn risk medium"
    )


# --- the workflow over fakes -----------------------------------------------------------------


class HealthWorld(World):
    """A world whose billing read carries the health inputs, and a drafting activity that
    answers the rules line (no model)."""

    def __init__(self, flusher: bool = False) -> None:
        super().__init__(flusher=flusher)
        self.inputs: dict[str, Any] = {
            "customer_since": "2025-06-01",
            "payments_ok": 9,
            "payments_failed": 1,
            "open_dunning": 0,
            "seats": 5,
        }
        self.fakes.on("sync_read", self._read_health)
        self.fakes.on("draft_health_line", self._draft)

    def _read_health(self, i: dict[str, Any]) -> dict[str, Any]:
        out = self._read(i)
        out["health"] = None
        if i["read_billing"] and i.get("health"):
            out["health"] = dict(self.inputs)
            if not i["health_payments"]:  # as the connectors do: no transactions read
                out["health"].update(payments_ok=0, payments_failed=0, payments_read=False)
        return out

    @staticmethod
    def _draft(i: dict[str, Any]) -> dict[str, Any]:
        return {"line": i["rules_line"], "variant": "template"}


def handed(w: World) -> list[dict[str, Any]]:
    return [i["change"]["fields"] for i in w.fakes.inputs("sync_hand_minor")]


async def test_the_sync_writes_the_profile_first_at_once_then_with_the_minor_changes(
    client: Client, time_env: WorkflowEnvironment
) -> None:
    w = HealthWorld(flusher=True)
    async with start(w, client) as handle:
        await settled(handle, 1)
        # the first sync: the profile goes with the golden fields, at once
        assert w.crm["health_summary"].startswith("pro-monthly · 500.00 USD MRR · customer for")
        assert w.crm["payment_success_rate"] == 90.0 and w.crm["usage_trend"] == "flat"
        assert "open_dunning: 0" in w.crm["subscription_health"]
        assert w.fakes.names().count("draft_health_line") == 1

        # a billing change that moves no figure of the profile: it is not written again
        w.billing["next_renewal"] = "2027-02-01"
        await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.BILLING))
        await settled(handle, 2)
        assert w.fakes.names().count("draft_health_line") == 1
        assert all("health_summary" not in f for f in handed(w))

        # the payment attempts are read once a day: not with these re-reads
        reads = [i for i in w.fakes.inputs("sync_read") if i["read_billing"]]
        assert [i["health_payments"] for i in reads] == [True, False]

        # more seats and an invoice in dunning: the profile changes, handed to the bulk flusher
        w.inputs.update(seats=8, payments_failed=2, open_dunning=1)
        await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.BILLING))
        await settled(handle, 3)
        (minor,) = [f for f in handed(w) if "health_summary" in f]
        assert minor["usage_trend"] == "rising" and minor["open_dunning"] == 1
        assert minor["payment_success_rate"] == 90.0  # today's count stands
        assert "1 invoice in dunning" in minor["health_summary"]

        # the next day's re-read reads the payment attempts again: the failed one counts
        await time_env.sleep(timedelta(days=1))
        await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.BILLING))
        await settled(handle, 4)
        latest = [f for f in handed(w) if "health_summary" in f][-1]
        assert latest["payment_success_rate"] == 81.8
        await keep_history(handle, golden.WORKFLOW_TYPE, "health_profile")


async def test_a_models_line_is_used_a_refused_one_audited_and_an_unwritten_profile_retried(
    client: Client,
) -> None:
    w = HealthWorld()
    linked = {"now": False}
    read = w._read_health

    def read_maybe_linked(i: dict[str, Any]) -> dict[str, Any]:
        out = read(i)
        if not linked["now"]:  # no CRM account carries this customer's link yet
            out.update(crm=None, crm_account_id=None)
        return out

    drafts = iter(
        [
            {"line": "x", "variant": "template", "refusals": ["a figure that is not a fact: 17"]},
            {"line": "Steady pro customer, paying reliably.", "variant": "llm", "model": "m"},
        ]
    )
    w.fakes.on("sync_read", read_maybe_linked)
    w.fakes.on("draft_health_line", lambda i: {**next(drafts), "line": next_line(i)})
    lines: list[str] = []

    def next_line(i: dict[str, Any]) -> str:
        lines.append(i["rules_line"])
        return i["rules_line"] if len(lines) == 1 else "Steady pro customer, paying reliably."

    async with start(w, client) as handle:
        await settled(handle, 1)
        # not linked: nothing written to the CRM, the refusal audited on both sides
        assert "health_summary" not in w.crm
        assert ("draft_refused", "rules line used") in w.fakes.audited()
        assert any(e["action"] == "draft_refused" for e in w.fakes.billing_entries())
        # linked now: the profile was never written, so it is drafted and written this time
        linked["now"] = True  # the CRM's change (the link written) reaches the run
        await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.CRM))
        await settled(handle, 2)
        assert "health_summary" not in w.crm  # a CRM-side re-read does not read billing
        await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.BILLING))
        await settled(handle, 3)
        assert w.fakes.names().count("draft_health_line") == 2
        assert w.crm["health_summary"] == "Steady pro customer, paying reliably."


# --- end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["salesforce", "hubspot"])
async def deployment(
    request: pytest.FixtureRequest,
    temporal_env: WorkflowEnvironment,
    sandbox_urls: dict[str, str],
) -> AsyncIterator[Pair]:
    crm, queue = request.param, f"revbridge-sync-health-{request.param}"
    async with sync_deployment(temporal_env, sandbox_urls, "chargebee", crm, queue) as pair:
        yield pair


def _profile(pair: Pair, account: str) -> dict[str, Any]:
    if pair.settings.crm == "salesforce":
        row = pair.crm.client.Account.get(account)
        return {
            "summary": row.get("Health_Summary__c"),
            "profile": row.get("Subscription_Health__c"),
            "rate": row.get("Payment_Success_Rate__c"),
            "tenure": row.get("Tenure_Months__c"),
        }
    from connectors.sync.hubspot import HEALTH

    company = pair.crm._call(
        pair.crm._companies.get_by_id, account, properties=list(HEALTH.values()), what="company"
    )
    props = company.properties or {}
    return {
        "summary": props.get("health_summary"),
        "profile": props.get("subscription_health"),
        "rate": float(props["payment_success_rate"]) if props.get("payment_success_rate") else None,
        "tenure": float(props["tenure_months"]) if props.get("tenure_months") else None,
    }


async def test_the_account_gets_the_health_profile(deployment: Pair, uid: str) -> None:
    pair = deployment
    pair.route_billing_webhooks_here()
    customer = DunningCustomer("health", "Vital Signs", "Mid-Market", "team-monthly", 4_900, 5, 40, None)  # fmt: skip
    ids = pair.seed(customer, uid)
    account = pair.account_id(ids["customer"])
    assert account
    cb = pair.billing.client
    sub = cb.Subscription.retrieve(ids["subscription"]).subscription
    item = next(i for i in sub.subscription_items if i.item_type == "plan")
    cb.Subscription.update_for_items(
        ids["subscription"],
        {"subscription_items": [{"item_price_id": item.item_price_id, "quantity": 7}]},
    )
    got = await eventually(
        lambda: asyncio.to_thread(_profile, pair, account),
        lambda p: bool(p["summary"]),
        f"the health profile on the {pair.settings.crm} account",
        within_s=60,
    )
    # the scenario's customer has an invoice in dunning; its tenure is whole months
    months = int(got["tenure"])
    phrase = "customer for 1 month" if months == 1 else f"customer for {months} months"
    assert phrase in got["summary"] and "1 invoice in dunning" in got["summary"]
    assert got["summary"].startswith(item.item_price_id + " · ")
    assert "plan: " + item.item_price_id in got["profile"]
    assert "open_dunning: 1" in got["profile"]
    if got["rate"] is not None:  # the scenario's declined attempt, when billing reports one
        assert 0 <= got["rate"] <= 100
    # nothing the rules line does not know, and no personal data
    assert "@" not in got["summary"] and "@" not in got["profile"]
