"""A two-sided world for the account sync's fast tests: a billing customer and a CRM account as
plain dicts of golden fields, served to the workflow through fake activities (tests/fast/fakes.py)
that read and write them the way the real connectors do — so a test can edit either side, send
the change signal and look at both sides and the calls made."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client

from domain import golden
from domain.approvals import Decision
from domain.golden import SyncSignal
from tests.approvals import send_approval
from tests.fast.fakes import Fakes, governance

RULES = golden.load_rules(
    __import__("pathlib").Path(__file__).resolve().parents[2] / "policies" / "sync.yaml"
)
BILLING = "fakebill"


class World:
    def __init__(self, flusher: bool = False) -> None:
        uid = uuid.uuid4().hex[:8]
        self.customer, self.account = f"cus-{uid}", f"001{uid}"
        self.wf_id = golden.account_workflow_id(BILLING, self.customer)
        self.flusher_id = golden.flush_workflow_id(BILLING, f"fakecrm{uid}") if flusher else None
        self.billing: dict[str, Any] = {
            "account_name": "Initech Billing",
            "billing_contact": "ap@initech.example",
            "plan": "pro-monthly",
            "mrr": 50_000,
            "subscription_status": "active",
            "next_renewal": "2027-01-01",
            "payment_health": "ok",
        }
        self.crm: dict[str, Any] = {
            "account_name": "Initech",
            "account_owner": "005A",
            "segment": "Mid-Market",
        }
        self.n = 0
        self.fakes = governance(Fakes())
        self.fakes.on("sync_rules", RULES.model_dump(mode="json"))
        self.fakes.on("sync_read", self._read)
        self.fakes.on("sync_write_crm", self._write_crm)
        self.fakes.on("sync_write_billing", self._write_billing)
        self.fakes.on("sync_hand_minor", lambda i: i["flusher_id"])
        self.fakes.on("upsert_crm_task", {"id": "task-1"})

    def _read(self, i: dict[str, Any]) -> dict[str, Any]:
        return {
            "billing": dict(self.billing) if i["read_billing"] else None,
            "crm": dict(self.crm) if i["read_crm"] else None,
            "crm_account_id": self.account if i["read_crm"] or i["crm_account_id"] else None,
        }

    def _write_crm(self, i: dict[str, Any]) -> dict[str, Any]:
        assert i["account_id"] == self.account
        self.crm.update(i["fields"])
        return {"written": 1}

    def _write_billing(self, i: dict[str, Any]) -> dict[str, Any]:
        assert i["customer_id"] == self.customer and i["idempotency_key"].startswith("rb-")
        self.billing.update(i["fields"])
        return {"written": 1}

    def signal(self, side: golden.Side, kind: str = "changed") -> SyncSignal:
        self.n += 1
        return SyncSignal(
            billing=BILLING,
            customer_id=self.customer,
            side=side,
            event_id=f"ev-{self.n}-{uuid.uuid4().hex[:6]}",
            occurred_at=datetime.now(UTC),
            kind=kind,
            crm_account_id=self.account if side is golden.Side.CRM else None,
        )

    def input(self, **kw: Any) -> golden.AccountSyncInput:
        return golden.AccountSyncInput(
            billing=BILLING, customer_id=self.customer, flusher_id=self.flusher_id, **kw
        )


async def decide(
    client: Client, workflow_id: str, action_id: str, decision: Decision, approver: str
) -> None:
    """The approval signal a signed-in approver sends from the Web UI (tests/approvals.py)."""
    await send_approval(client, workflow_id, action_id, approver, decision)
