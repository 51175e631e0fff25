"""A small compensation stack for workflows (a saga).

Register a step's compensation *before* running the step: if the step's outcome is unknown (it
timed out after the vendor committed), the compensation is already there and, being idempotent,
copes with both "it happened" and "it did not". On a failure for good, :meth:`Saga.unwind` runs the
compensations newest first. Each compensation is an idempotent activity; one that fails is
reported to ``on_failure`` (which audits it) and the unwinding goes on with the rest — a failed
compensation is never swallowed: :meth:`unwind` returns it, and the caller fails the run.

Workflow code only (deterministic: a list, awaited in order).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from temporalio.exceptions import ActivityError

#: a compensation: runs activities, returns what it undid in words ("" when nothing needed undoing)
Compensate = Callable[[], Awaitable[str]]
#: told about a compensation that failed for good: (step name, the error)
OnFailure = Callable[[str, ActivityError], Awaitable[None]]


@dataclass
class Unwound:
    """What :meth:`Saga.unwind` did, in the order it did it."""

    undone: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@dataclass
class Saga:
    on_failure: OnFailure
    _steps: list[tuple[str, Compensate]] = field(default_factory=list)

    def register(self, step: str, compensate: Compensate) -> None:
        """Call right before the step runs."""
        self._steps.append((step, compensate))

    @property
    def steps(self) -> list[str]:
        return [name for name, _ in self._steps]

    async def unwind(self) -> Unwound:
        """Run every registered compensation, newest first, each exactly once."""
        result = Unwound()
        while self._steps:
            step, compensate = self._steps.pop()
            try:
                did = await compensate()
            except ActivityError as err:
                result.failed.append(f"{step}: {err.cause or err}"[:300])
                await self.on_failure(step, err)
                continue
            if did:
                result.undone.append(did)
        return result
