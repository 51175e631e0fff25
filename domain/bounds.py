"""Size bounds on free text that crosses Temporal: summaries and IDs in history, not documents.

Every payload is stored (encrypted) in history and replayed; a customer's 50-page case text in an
activity input or a signal is cost and exposure for no decision. Text that is ours to shorten (a
case's subject and description as context, a note, a reason) is cut to its bound with a visible
marker; the tail is never needed to decide, and the full text stays in the system of record.

Use the annotated types on models (:data:`Subject`, :data:`Summary`, :data:`Note`), or
:func:`clip` directly.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

#: appended to text that was cut (counted within the bound)
MARKER = " …[truncated]"

SUBJECT_MAX = 255  # Salesforce Case.Subject; a HubSpot ticket name fits too
SUMMARY_MAX = 2_000  # a case's description as context for a decision
NOTE_MAX = 500  # what a person adds to an approval
REASON_MAX = 1_000  # why an action is proposed (rules or a validated LLM proposal)


def clip(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its start and :data:`MARKER`, at most
    ``limit`` characters long."""
    if len(text) <= limit:
        return text
    return text[: limit - len(MARKER)].rstrip() + MARKER


def _clipper(limit: int) -> BeforeValidator:
    def clip_value(value: object) -> object:
        return clip(value, limit) if isinstance(value, str) else value

    return BeforeValidator(clip_value)


Subject = Annotated[str, _clipper(SUBJECT_MAX)]
Summary = Annotated[str, _clipper(SUMMARY_MAX)]
Note = Annotated[str, _clipper(NOTE_MAX)]
Reason = Annotated[str, _clipper(REASON_MAX)]
