"""Writes only through the gate, by construction: every activity that writes to a vendor is
declared (``activities/writes.py``), and no workflow module may reach one except as the activity
argument of ``self.write(permit, …)`` (the gate checks the permit at run time) or inside the audit
writer. This test reads every module under ``workflows/`` and fails on any other reference — and
proves it would, on a deliberately bad module (``tests/fixtures/ungated_workflow.py``)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
from temporalio import workflow

import activities
from activities.crm import CrmActivities
from activities.models import UpsertTaskInput
from activities.policy import PolicyActivities
from activities.writes import WRITE_ACTIVITIES, activity_name, is_write
from domain.models import TaskDraft
from domain.policy import AccountFacts, ActionKind, Mode, Outcome, PolicyDecision, PolicyRequest
from workflows.governed.base import GovernedWorkflow
from workflows.governed.gate import Permit

ROOT = Path(__file__).resolve().parents[2]
#: (module, function) pairs allowed to schedule a write activity themselves
WRITERS = {
    ("workflows/governed/gate.py", "write"),
    ("workflows/governed/audit.py", "write_audit"),
}


def write_methods() -> set[tuple[str, str]]:
    """``(Class, method)`` of every declared write in ``activities/``."""
    found: set[tuple[str, str]] = set()
    for mod in pkgutil.iter_modules(activities.__path__):
        module = importlib.import_module(f"activities.{mod.name}")
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for name, member in vars(cls).items():
                if callable(member) and is_write(member):
                    found.add((cls_name, name))
    return found


class _Visitor(ast.NodeVisitor):
    def __init__(self, path: str, writes: set[tuple[str, str]]) -> None:
        self.path, self.writes = path, writes
        self.function: list[str] = []
        self.allowed_refs: set[int] = set()
        self.problems: list[str] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.function.append(node.name)
        self.generic_visit(node)
        self.function.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def _in_writer(self) -> bool:
        return any((self.path, f) in WRITERS for f in self.function)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if (
            isinstance(f, ast.Attribute)
            and f.attr == "write"
            and isinstance(f.value, ast.Name)
            and f.value.id == "self"
            and len(node.args) >= 2
        ):
            self.allowed_refs.add(id(node.args[1]))  # self.write(permit, <the activity>, …)
        if isinstance(f, ast.Attribute) and "activity" in f.attr and node.args:
            first = node.args[0]
            if (
                isinstance(first, ast.Constant)
                and first.value in WRITE_ACTIVITIES
                and not self._in_writer()
            ):
                self.problems.append(
                    f"{self.path}:{node.lineno}: write activity {first.value!r} called by name"
                )
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if (
            isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in self.writes
            and id(node) not in self.allowed_refs
            and not self._in_writer()
        ):
            self.problems.append(
                f"{self.path}:{node.lineno}: {node.value.id}.{node.attr} outside the write gate"
            )
        self.generic_visit(node)


def ungated_writes(path: Path, writes: set[tuple[str, str]]) -> list[str]:
    rel = path.relative_to(ROOT).as_posix()
    visitor = _Visitor(rel, writes)
    visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=rel))
    return visitor.problems


def test_every_vendor_write_activity_is_declared() -> None:
    """The declared writes are the ones that change vendors (a list to keep honest: a new write
    activity must be declared, or the gate cannot see it)."""
    assert ("CrmActivities", "upsert_crm_case") in write_methods()  # imports every module
    assert {
        "upsert_crm_case",
        "upsert_crm_task",
        "write_crm_audit",
        "add_billing_note",
        "apply_credit",
        "retry_payment",
        "cancel_subscription",
        "send_email",
        "churn_write_score",
        "churn_write_scores",
        "churn_apply_discount",
        "q2c_create_billing_customer",
        "q2c_set_crm_link",
        "q2c_create_subscription",
        "q2c_write_billing_link",
        "q2c_undo_customer",
        "q2c_undo_subscription",
        "support_annotate_case",
    } <= WRITE_ACTIVITIES


def test_no_workflow_module_writes_around_the_gate() -> None:
    writes = write_methods()
    modules = sorted((ROOT / "workflows").rglob("*.py"))
    assert len(modules) >= 10
    problems = [p for m in modules for p in ungated_writes(m, writes)]
    # the one grandfathered reference: sweeps started before the gate wrote in the page activity,
    # which is not a declared write (it returns the scores now) — nothing to allow here
    assert problems == []


def test_the_checker_catches_a_module_that_writes_around_the_gate() -> None:
    bad = ROOT / "tests" / "fixtures" / "ungated_workflow.py"
    problems = ungated_writes(bad, write_methods())
    assert len(problems) == 3, problems
    assert "upsert_crm_case outside the write gate" in problems[0]
    assert "'upsert_crm_task' called by name" in problems[1]
    assert "write_crm_audit outside the write gate" in problems[2]


# --- at run time -----------------------------------------------------------------------------------


@workflow.defn(name="GateForgery", sandboxed=False)
class GateForgery(GovernedWorkflow):
    """Tries to write with a forged permit, or with a real one that does not allow."""

    use_case = "dunning"

    @workflow.init
    def __init__(self, how: str) -> None:
        self._init_governed()

    @workflow.run
    async def run(self, how: str) -> str:
        task = UpsertTaskInput(
            draft=TaskDraft(key="k", account_id=None, subject="s", description="d")
        )
        if how == "forged":
            permit = Permit(
                kind=ActionKind.CREATE_TASK,
                decision=PolicyDecision(outcome=Outcome.ALLOW),
                allowed=True,
            )
        else:  # a real permit for a denied write
            permit = await self.ask(ActionKind.CREATE_TASK, AccountFacts(id="acc"))
        await self.write(permit, CrmActivities.upsert_crm_task, task, summary="sneak")
        return "written"


@pytest.mark.parametrize("how", ["forged", "denied"])
async def test_the_gate_refuses_a_forged_or_denying_permit(time_env, how: str) -> None:  # noqa: ANN001
    import uuid

    from temporalio import activity
    from temporalio.client import WorkflowFailureError
    from temporalio.worker import Worker

    written: list[object] = []

    @activity.defn(name="decide_policy")
    async def decide_policy(req: PolicyRequest) -> PolicyDecision:
        return PolicyDecision(outcome=Outcome.DENY, policy_ids=["mode_observe"], mode=Mode.OBSERVE)

    @activity.defn(name="upsert_crm_task")
    async def upsert_crm_task(task: object) -> dict:
        written.append(task)
        return {"id": "t1"}

    queue = f"gate-{uuid.uuid4().hex[:8]}"
    async with Worker(
        time_env.client,
        task_queue=queue,
        workflows=[GateForgery],
        activities=[decide_policy, upsert_crm_task],
    ):
        with pytest.raises(WorkflowFailureError) as failed:
            await time_env.client.execute_workflow(
                "GateForgery", how, id=f"gate-{how}-{queue}", task_queue=queue
            )
    cause = failed.value.cause
    assert getattr(cause, "type", None) == "GateViolation", cause
    assert written == []


def test_every_declared_activity_is_registered_on_the_worker() -> None:
    """A write (or any activity) a workflow can schedule is one the worker runs."""
    from connectors.reasoner import RulesReasoner
    from workers.main import activities_for

    class Nothing:
        name = "chargebee"

    registered = {
        activity_name(fn)
        for fn in activities_for(Nothing(), Nothing(), RulesReasoner(), PolicyActivities())
    }
    assert write_methods() and registered >= WRITE_ACTIVITIES
