"""Which activities write to a vendor.

An activity that changes anything in billing, the CRM or a mailbox is declared with
:func:`writes` (on top of its ``@activity.defn``). Workflows reach such an activity only through
the governed gate (``workflows/governed/gate.py``: policy → approval if needed → execute → audit),
which checks at run time that it holds an allowing policy decision; ``tests/unit/test_write_gate.py``
walks every workflow module and fails on any other call of a declared write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from temporalio.activity import _Definition

F = TypeVar("F", bound=Callable[..., Any])

#: registered activity names of every declared write
WRITE_ACTIVITIES: set[str] = set()


def writes(fn: F) -> F:
    """Declare an activity (already decorated with ``@activity.defn``) as a vendor write."""
    defn = _Definition.from_callable(fn)
    if defn is None:
        raise TypeError(f"{fn.__qualname__}: put @writes above @activity.defn")
    WRITE_ACTIVITIES.add(defn.name)
    fn.__revbridge_writes__ = True  # type: ignore[attr-defined]
    return fn


def is_write(fn: Callable[..., Any]) -> bool:
    """True for a declared write (a bound or unbound activity method, or a function)."""
    return bool(getattr(getattr(fn, "__func__", fn), "__revbridge_writes__", False))


def activity_name(fn: Callable[..., Any]) -> str | None:
    defn = _Definition.from_callable(getattr(fn, "__func__", fn))
    return defn.name if defn else None
