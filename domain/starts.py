"""How each workflow type may be started again under the same workflow ID: one table, used by every
path that starts these workflows (webhook routes, the quote-to-cash catch-up, the churn sweep, the
CLI), so a redelivered webhook and a catch-up can never disagree about what a second start means.

- ``id_reuse_policy`` answers "a run with this ID is CLOSED — may a new one start?".
  ``ALLOW_DUPLICATE_FAILED_ONLY``: only after a run that failed, was terminated, cancelled or
  timed out (recovery after an outage needs no person); a run that COMPLETED is never doubled.
- ``id_conflict_policy`` answers "a run with this ID is RUNNING — what now?". ``USE_EXISTING``:
  join it (signal-with-start signals the running run); ``FAIL``: the caller gets
  ``WorkflowAlreadyStartedError`` and reports a duplicate.

A late redelivery only meets the closed run while the namespace still keeps it: the namespace
retention must exceed the longest vendor redelivery window (``domain.redelivery``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from domain import churn, dunning, golden, quote, support


@dataclass(frozen=True)
class StartPolicy:
    reuse: WorkflowIDReusePolicy
    conflict: WorkflowIDConflictPolicy
    why: str

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``Client.start_workflow``."""
        return {"id_reuse_policy": self.reuse, "id_conflict_policy": self.conflict}


START_POLICIES: dict[str, StartPolicy] = {
    dunning.WORKFLOW_TYPE: StartPolicy(
        WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        WorkflowIDConflictPolicy.USE_EXISTING,
        "one dunning run per invoice: a running one receives the failure (signal-with-start); "
        "a failed one may be redone; a finished one is never doubled",
    ),
    quote.WORKFLOW_TYPE: StartPolicy(
        WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        WorkflowIDConflictPolicy.FAIL,
        "one quote-to-cash run per deal: a running or finished one is reported as a duplicate; "
        "a failed (rolled-back) one may be redone",
    ),
    support.WORKFLOW_TYPE: StartPolicy(
        WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        WorkflowIDConflictPolicy.FAIL,
        "one support-context run per case: a running or finished one is reported as a duplicate; "
        "a failed one may be redone",
    ),
    churn.WORKFLOW_TYPE: StartPolicy(
        # A customer may need a new intervention months after the last one ended, so a closed
        # run does not block the ID; a late redelivery of an old failed payment must not start
        # one, which the webhook route ensures (it only signals churn for a failure whose
        # dunning run it could start or join) and the run dedups by event ID.
        WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        WorkflowIDConflictPolicy.USE_EXISTING,
        "one running intervention per customer: a running one is rescored (signal-with-start); "
        "a new one may follow a closed one, but only for a new risk signal",
    ),
    golden.WORKFLOW_TYPE: StartPolicy(
        WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        WorkflowIDConflictPolicy.USE_EXISTING,
        "one account sync per billing customer, as long as the customer lives: a running one "
        "receives the change (signal-with-start); a closed one (failed, ended by hand) may be "
        "followed by a new one, which re-reads both sides",
    ),
    golden.FLUSH_WORKFLOW_TYPE: StartPolicy(
        WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        WorkflowIDConflictPolicy.USE_EXISTING,
        "one bulk flusher per deployment: a running one takes the minor changes",
    ),
    golden.BACKFILL_WORKFLOW_TYPE: StartPolicy(
        WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        WorkflowIDConflictPolicy.USE_EXISTING,
        "one backfill per deployment at a time: running it again joins a running one, or after "
        "one ended (or was stopped) starts over and skips what is linked already",
    ),
}


def start_options(workflow_type: str) -> dict[str, Any]:
    """``id_reuse_policy`` and ``id_conflict_policy`` for starting ``workflow_type``."""
    return START_POLICIES[workflow_type].options()
