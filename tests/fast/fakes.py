"""Fake activities by registered name, for workflow tests without vendors or emulators.

The anchors' style (temporalio/samples-python ``tests/hello/hello_activity_test.py``; sdk-python
``tests/helpers`` ``new_worker``): a real :class:`~temporalio.worker.Worker` on a fresh task
queue, the real workflow classes (the worker's own list), and for every activity RevBridge
registers a fake under the same name (``@activity.defn(name=...)``) that records its input and
returns a canned reply. A workflow that calls an activity no test prepared fails at once
(``fake.unexpected``), so a new call is never silently answered.

Inputs are recorded as JSON (dicts), replies may be models or dicts: the tests depend on the
registered names and the payloads' shape, not on which module defines a model.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

import activities as activities_package
from activities.writes import WRITE_ACTIVITIES
from domain.approvals import SIGNAL, ApprovalSignal, Decision
from domain.policy import Mode, Outcome

AUDITS = frozenset({"write_crm_audit", "add_billing_note"})
APPROVER = "alice@example.com"


def registered_activity_names() -> set[str]:
    """Every name an activity is registered under in ``activities/`` (what the worker serves)."""
    names: set[str] = set()
    for mod_info in pkgutil.iter_modules(activities_package.__path__):
        module = importlib.import_module(f"{activities_package.__name__}.{mod_info.name}")
        for _, obj in inspect.getmembers(module):
            members = vars(obj).values() if inspect.isclass(obj) else [obj]
            for member in members:
                defn = getattr(member, "__temporal_activity_definition", None)
                if defn is not None and defn.name:
                    names.add(defn.name)
    return names


REAL_NAMES = frozenset(registered_activity_names())
#: activities that change something in a vendor system (or send mail), as activities/writes.py
#: declares them, less the audit trail: what observe mode must never call
WRITES = frozenset(WRITE_ACTIVITIES) - AUDITS


@dataclass(frozen=True)
class Call:
    name: str
    input: Any
    #: when the server scheduled this attempt (the time-skipping server's clock)
    at: datetime
    attempt: int


#: a reply: a value (a model or JSON), an exception to raise, or a function of the input (a dict)
#: returning either
Reply = Any


def not_found(what: str = "record") -> ApplicationError:
    """What activities raise for a vendor's 404 (activities/errors.py: ``{vendor}.not_found``)."""
    return ApplicationError(f"no such {what}", type="fakevendor.not_found", non_retryable=True)


@dataclass
class Fakes:
    """Canned replies by activity name, and the calls made (in order)."""

    replies: dict[str, Reply] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def on(self, name: str, reply: Reply) -> Fakes:
        if name not in REAL_NAMES:
            raise KeyError(f"no activity is registered as {name!r}")
        self.replies[name] = reply
        return self

    def activities(self) -> list[Callable[..., Any]]:
        return [self._fake(name) for name in sorted(REAL_NAMES)]

    def _fake(self, name: str) -> Callable[..., Any]:
        @activity.defn(name=name)
        async def fake(input: Any) -> Any:
            info = activity.info()
            self.calls.append(Call(name, input, info.current_attempt_scheduled_time, info.attempt))
            if name not in self.replies:
                raise ApplicationError(
                    f"unexpected activity {name}", type="fake.unexpected", non_retryable=True
                )
            reply = self.replies[name]
            if callable(reply) and not isinstance(reply, BaseException):
                reply = reply(input)
            if isinstance(reply, BaseException):
                raise reply
            return reply

        return fake

    # --- reading what happened -----------------------------------------------------------------

    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    def inputs(self, name: str) -> list[Any]:
        return [c.input for c in self.calls if c.name == name]

    def of(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]

    def writes(self) -> list[str]:
        """The business writes made, in order (no audit entries)."""
        return [c.name for c in self.calls if c.name in WRITES]

    def crm_entries(self) -> list[dict[str, Any]]:
        """Every audit entry written to the CRM, in order: alone (``write_crm_audit``) or with
        the case it is about (``upsert_crm_case``'s ``audit``)."""
        found = []
        for call in self.calls:
            if call.name == "write_crm_audit":
                found.append(call.input["entry"])
            elif call.name == "upsert_crm_case" and call.input.get("audit"):
                found.append(call.input["audit"])
        return found

    def billing_entries(self) -> list[dict[str, Any]]:
        """Every audit note written to billing, in order (a note may carry earlier ones)."""
        return [
            e for i in self.inputs("add_billing_note") for e in [*i.get("more", []), i["entry"]]
        ]

    def audited(self) -> list[tuple[str, str]]:
        """(action, outcome) of every audit entry written to the CRM, in order."""
        return [(e["action"], e["outcome"]) for e in self.crm_entries()]

    def unexpected(self) -> list[str]:
        return [c.name for c in self.calls if c.name not in self.replies]


# --- replies shared by every workflow -------------------------------------------------------------


def policy(
    outcomes: dict[str, Outcome] | None = None,
    *,
    default: Outcome = Outcome.ALLOW,
    roles: Iterable[str] = ("finance",),
    after_approval: Outcome = Outcome.ALLOW,
    mode: Mode = Mode.AUTO,
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``decide_policy`` by action kind: ``outcomes`` per kind, else ``default``; a request that
    carries an approval gets ``after_approval``. Every decision names the rollout ``mode``."""
    outcomes = outcomes or {}

    def decide(req: dict[str, Any]) -> dict[str, Any]:
        kind = req["action"]
        out = after_approval if req.get("approved_by") else outcomes.get(kind, default)
        return {
            "outcome": out.value,
            "policy_ids": [f"fake_{kind}_{out.value}"],
            "approver_roles": list(roles) if out is Outcome.NEEDS_APPROVAL else [],
            "mode": mode.value,
            "approved_by": req.get("approved_by"),
            "reasons": [f"fake policy: {out.value}"],
        }

    return decide


def sequence(*replies: Reply) -> Callable[[Any], Reply]:
    """One reply per call, in order; the last one repeats."""
    left = list(replies)

    def next_reply(input: Any) -> Reply:
        reply = left.pop(0) if len(left) > 1 else left[0]
        return reply(input) if callable(reply) and not isinstance(reply, BaseException) else reply

    return next_reply


def counter(prefix: str) -> Callable[[Any], dict[str, str]]:
    """A write that returns a fresh ID each call: ``{"id": "prefix-1"}``, ..."""
    n = iter(range(1, 1_000_000))
    return lambda _input: {"id": f"{prefix}-{next(n)}"}


def governance(fakes: Fakes, **outcomes: Outcome) -> Fakes:
    """Policy (everything allowed unless ``outcomes`` say otherwise), the approvers, and an audit
    trail on both sides that answers with fresh IDs."""
    return (
        fakes.on("decide_policy", policy(outcomes))
        .on("eligible_approvers", {"emails": [APPROVER]})
        .on("write_crm_audit", counter("crm-log"))
        .on("add_billing_note", counter("billing-note"))
    )


@asynccontextmanager
async def fake_worker(client: Client, fakes: Fakes) -> AsyncIterator[str]:
    """A worker on a fresh task queue running every real workflow over ``fakes``; yields the
    task queue."""
    from workers.main import WORKFLOWS

    task_queue = f"fast-{uuid.uuid4().hex[:10]}"
    async with Worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=fakes.activities()
    ):
        yield task_queue


@asynccontextmanager
async def started(
    client: Client, fakes: Fakes, workflow: str, arg: Any, *, id: str, **start: Any
) -> AsyncIterator[WorkflowHandle[Any, Any]]:
    """Start ``workflow`` on a worker over ``fakes`` (``start``: signal-with-start, result type,
    ...); terminates the run if the test leaves it running, so no timer outlives its test on the
    shared time-skipping server."""
    async with fake_worker(client, fakes) as task_queue:
        handle = await client.start_workflow(workflow, arg, id=id, task_queue=task_queue, **start)
        try:
            yield handle
        finally:
            if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")


async def answer(
    handle: WorkflowHandle[Any, Any],
    action_id: str,
    decision: Decision = Decision.APPROVE,
    approver: str = APPROVER,
    note: str = "",
) -> None:
    """A person's answer to a pending action, as the Web UI sends it (signal ``approval``)."""
    await handle.signal(
        SIGNAL,
        ApprovalSignal(action_id=action_id, decision=decision, approver=approver, note=note),
    )
