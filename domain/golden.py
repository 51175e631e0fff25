"""The golden customer record: one unified customer, each field with its value, owner, source and
last-changed time, and the rules that keep billing and the CRM in step (issue 19).

Pure and deterministic (no I/O, no clock): the account-sync workflow feeds it every change from
either side, in order, and acts on what :func:`apply` returns — write the other side, restore the
side that edited a field it does not own, send a conflict to review, or do nothing. What each
field's owner is comes from ``policies/sync.yaml`` (:func:`load_rules`).

Why each rule:
- **Late or repeated events change nothing**: an event ID seen before is a duplicate; a change
  older than the field's last change is stale (vendors redeliver out of order).
- **Our own writes come back** as events on both sides. A change whose value equals the golden
  value is an echo and is dropped — value equality catches every echo, whatever the vendor says
  about who made it, so two-way sync cannot ping-pong.
- **Ownership**: an edit on the side that does not own a field is restored from the golden
  value (and audited by the caller); a shared field flows in its configured direction.
- **Conflicts**: a two-way field changed on one side while the other side's change had not yet
  been written there (both changed since the last sync) is not guessed at: it goes to the review
  queue with both values, their sources and times.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field

from domain.audit import parameters_hash
from domain.config_file import load_model
from domain.health import HealthState
from domain.models import Frozen


class Side(StrEnum):
    BILLING = "billing"
    CRM = "crm"

    @property
    def other(self) -> Side:
        return Side.CRM if self is Side.BILLING else Side.BILLING


class Owner(StrEnum):
    BILLING = "billing"
    CRM = "crm"
    SHARED = "shared"


class Direction(StrEnum):
    BILLING_TO_CRM = "billing_to_crm"
    CRM_TO_BILLING = "crm_to_billing"
    TWO_WAY = "two_way"


class FieldRule(Frozen):
    owner: Owner
    direction: Direction | None = None  # shared fields only
    copies: list[Side] = []

    def may_change(self, side: Side) -> bool:
        """Whether an edit on ``side`` is a change to the truth (else: restore it)."""
        if self.owner is Owner.SHARED:
            return self.direction is Direction.TWO_WAY or self.direction == (
                Direction.BILLING_TO_CRM if side is Side.BILLING else Direction.CRM_TO_BILLING
            )
        return self.owner.value == side.value

    def holders(self) -> set[Side]:
        """Every system that holds the field: its owner (unless shared) and its copies."""
        own = {Side(self.owner.value)} if self.owner is not Owner.SHARED else set()
        return own | set(self.copies)


class ImmediateRule(Frozen):
    field: str
    relative_change_at_least: float | None = None
    decrease_to_zero: bool = False
    downgrade: bool = False
    to: list[str] = []


class Significance(Frozen):
    batch_every_s: int = Field(default=300, gt=0)
    immediate: list[ImmediateRule] = []


class SyncRules(Frozen):
    fields: dict[str, FieldRule]
    significance: Significance = Significance()

    def rule(self, name: str) -> FieldRule | None:
        return self.fields.get(name)


class RulesError(Exception):
    """``policies/sync.yaml`` cannot be used; the message is one line naming the place."""


def load_rules(path: Path) -> SyncRules:
    rules = load_model(path, SyncRules, RulesError)
    for name, rule in rules.fields.items():
        if (rule.owner is Owner.SHARED) != (rule.direction is not None):
            raise RulesError(f"{path.name}: fields.{name}: a direction is for shared fields only")
    return rules


# --- the record ----------------------------------------------------------------------------------


class GoldenField(Frozen):
    value: Any = None
    source: Side
    changed_at: datetime
    #: the other holders have been written this value (or held it already)
    synced: bool = True


class GoldenRecord(Frozen):
    """The unified customer: ``billing``/``customer_id`` identify it, ``crm_account_id`` links it."""

    billing: str
    customer_id: str
    crm_account_id: str | None = None
    fields: dict[str, GoldenField] = {}
    #: event IDs applied recently (bounded: the oldest fall off), for redelivered events
    seen: list[str] = []

    def value(self, name: str) -> Any:
        f = self.fields.get(name)
        return f.value if f else None


#: how many event IDs a record remembers (redeliveries arrive within hours, not thousands later)
SEEN_LIMIT = 200


class FieldChange(Frozen):
    """One field as a system reported it: from a webhook, a callout or a re-read."""

    field: str
    value: Any = None
    side: Side
    changed_at: datetime
    event_id: str | None = None
    #: the value before, where the event says (significance of MRR moves, downgrades)
    previous: Any = None
    #: the vendor's own word for the change, e.g. "downgrade" (significance)
    hint: str | None = None


class Verdict(StrEnum):
    ACCEPT = "accept"  # the truth changed: write it to the other holders
    RESTORE = "restore"  # an edit to a field that side does not own: write the golden value back
    CONFLICT = "conflict"  # both sides changed a two-way field since the last sync: review
    ECHO = "echo"  # the golden value already (our own write coming back): nothing
    STALE = "stale"  # older than the field's last change: nothing
    DUPLICATE = "duplicate"  # an event seen before: nothing
    UNKNOWN = "unknown"  # a field the rules do not name: nothing (reported)


class Outcome(Frozen):
    verdict: Verdict
    record: GoldenRecord
    #: where to write ``value`` (ACCEPT: the other holders; RESTORE: the editing side)
    write_to: list[Side] = []
    value: Any = None
    #: CONFLICT: the golden value and its source, against the change
    golden: GoldenField | None = None
    reason: str = ""


def _remember(record: GoldenRecord, event_id: str | None) -> list[str]:
    if event_id is None:
        return record.seen
    return [*record.seen, event_id][-SEEN_LIMIT:]


def apply(record: GoldenRecord, change: FieldChange, rules: SyncRules) -> Outcome:
    """What one change means for the golden record (see the module docstring for why)."""
    rule = rules.rule(change.field)
    if change.event_id is not None and change.event_id in record.seen:
        return Outcome(verdict=Verdict.DUPLICATE, record=record, reason="event seen before")
    seen = _remember(record, change.event_id)
    if rule is None:
        return Outcome(
            verdict=Verdict.UNKNOWN,
            record=record.model_copy(update={"seen": seen}),
            reason=f"no rule for field {change.field!r} in sync.yaml",
        )
    current = record.fields.get(change.field)
    unsynced_other = (
        current is not None and not current.synced and current.source is not change.side
    )
    if (
        rule.direction is Direction.TWO_WAY
        and current is not None
        and unsynced_other
        and change.value != current.value
        and rule.may_change(change.side)
    ):
        # the other side's change has not reached this side yet, and this side changed too —
        # earlier or later, both changed since the last sync: a person decides
        return Outcome(
            verdict=Verdict.CONFLICT,
            record=record.model_copy(update={"seen": seen}),
            golden=current,
            value=change.value,
            reason=f"{change.field} changed on both sides since the last sync",
        )
    if current is not None and change.changed_at < current.changed_at:
        return Outcome(
            verdict=Verdict.STALE,
            record=record.model_copy(update={"seen": seen}),
            reason=f"older than the {current.source.value} change at {current.changed_at:%c}",
        )
    if current is not None and change.value == current.value:
        # our own write coming back, or the other side catching up: that side holds it now
        return Outcome(
            verdict=Verdict.ECHO,
            record=record.model_copy(update={"seen": seen}),
            reason="equals the golden value",
        )
    if not rule.may_change(change.side):
        if current is None:  # nothing to restore yet: the owner has not spoken
            return Outcome(
                verdict=Verdict.STALE,
                record=record.model_copy(update={"seen": seen}),
                reason=f"{change.side.value} does not own {change.field}; no golden value yet",
            )
        return Outcome(
            verdict=Verdict.RESTORE,
            record=record.model_copy(update={"seen": seen}),
            write_to=[change.side],
            value=current.value,
            reason=f"{change.field} is owned by {rule.owner.value}: restored",
        )
    targets = sorted(rule.holders() - {change.side})
    updated = GoldenField(
        value=change.value, source=change.side, changed_at=change.changed_at, synced=not targets
    )
    return Outcome(
        verdict=Verdict.ACCEPT,
        record=record.model_copy(
            update={"fields": {**record.fields, change.field: updated}, "seen": seen}
        ),
        write_to=targets,
        value=change.value,
    )


def mark_synced(record: GoldenRecord, field: str, value: Any) -> GoldenRecord:
    """After the write to the other holders: the field is in step (if nothing moved since)."""
    current = record.fields.get(field)
    if current is None or current.value != value or current.synced:
        return record
    fields = {**record.fields, field: current.model_copy(update={"synced": True})}
    return record.model_copy(update={"fields": fields})


def resolve(
    record: GoldenRecord, field: str, value: Any, side: Side, at: datetime
) -> tuple[GoldenRecord, list[Side]]:
    """A person picked ``value`` (from ``side``) for a conflicted field: it becomes the truth,
    to be written to every holder that does not have it."""
    updated = GoldenField(value=value, source=side, changed_at=at, synced=False)
    record = record.model_copy(update={"fields": {**record.fields, field: updated}})
    return record, [Side.BILLING, Side.CRM]


# --- significance: now or in the next batch -----------------------------------------------------


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except (TypeError, ValueError):
        return None


def is_immediate(change: FieldChange, rules: SyncRules) -> bool:
    """Whether the change goes to the CRM at once (policy ``significance.immediate``); all else
    is coalesced per customer and flushed in bulk."""
    for rule in rules.significance.immediate:
        if rule.field != change.field:
            continue
        if rule.to and str(change.value) in rule.to:
            return True
        if rule.downgrade and (change.hint or "").lower() == "downgrade":
            return True
        new, old = _as_number(change.value), _as_number(change.previous)
        if rule.decrease_to_zero and new == 0 and old is not None and old > 0:
            return True
        if rule.relative_change_at_least is not None and new is not None and old is not None:
            if old == 0:
                if new != 0:
                    return True
            elif abs(new - old) / abs(old) >= rule.relative_change_at_least:
                return True
    return False


def coalesce(changes: list[FieldChange]) -> dict[str, FieldChange]:
    """A batch keeps the latest change per field (by time, then arrival): 1,000 minor changes
    to one customer's usage are one write."""
    latest: dict[str, FieldChange] = {}
    for change in changes:
        held = latest.get(change.field)
        if held is None or change.changed_at >= held.changed_at:
            latest[change.field] = change
    return latest


# --- discrepancies: the golden record against what each system holds --------------------------


class Discrepancy(Frozen):
    field: str
    side: Side
    golden: Any = None
    found: Any = None
    #: what the rules do about it: "write" the golden value to ``side``, or "review"
    action: str


def discrepancies(
    record: GoldenRecord, billing: dict[str, Any], crm: dict[str, Any], rules: SyncRules
) -> list[Discrepancy]:
    """Every field where a holder's value differs from the golden record, and what the rules
    do about it (a report and the CLI list these; the sync resolves them)."""
    found: list[Discrepancy] = []
    views = {Side.BILLING: billing, Side.CRM: crm}
    for name in sorted(rules.fields):
        rule, golden = rules.fields[name], record.fields.get(name)
        if golden is None:
            continue
        for side in sorted(rule.holders()):
            view = views[side]
            if name not in view or view[name] == golden.value:
                continue
            conflicted = rule.direction is Direction.TWO_WAY and not golden.synced
            found.append(
                Discrepancy(
                    field=name,
                    side=side,
                    golden=golden.value,
                    found=view[name],
                    action="review" if conflicted and golden.source is not side else "write",
                )
            )
    return found


# --- the account-sync workflow's messages (webhooks → workflows; cross Temporal) ---------------

#: the entity workflow per billing customer, and its signal
WORKFLOW_TYPE = "AccountSyncWorkflow"
SIGNAL_CHANGE = "sync_change"
#: the flusher that writes minor changes in bulk (one per deployment), and its signal
FLUSH_WORKFLOW_TYPE = "AccountSyncFlushWorkflow"
SIGNAL_MINOR = "sync_minor"
#: the resumable backfill (linking an existing book)
BACKFILL_WORKFLOW_TYPE = "AccountSyncBackfillWorkflow"


def account_workflow_id(billing: str, customer_id: str) -> str:
    """``account:{billing}:{customer}``: one ordered sync per billing customer (no PII)."""
    from domain.ids import PROVIDER_ID

    for value in (billing, customer_id):
        if not isinstance(value, str) or not PROVIDER_ID.fullmatch(value):
            raise ValueError("not a provider ID (1-128 of A-Z a-z 0-9 _ . -)")
    return f"account:{billing}:{customer_id}"


def flush_workflow_id(billing: str, crm: str) -> str:
    return f"account-sync-flush:{billing}:{crm}"


class SyncSignal(Frozen):
    """Something changed for one customer on one side. A trigger, not the truth: the run
    re-reads that side (and, before writing a shared field, the other one)."""

    billing: str
    customer_id: str
    side: Side
    event_id: str
    occurred_at: datetime
    #: what the event was (customer_changed, subscription_changed, account_changed, ...)
    kind: str = ""
    #: the CRM record the event names (CRM side)
    crm_account_id: str | None = None
    #: the vendor's word for the change where it has one ("downgrade": significance)
    hint: str | None = None


class Conflict(Frozen):
    """A shared field changed on both sides since the last sync, waiting for a person."""

    field: str
    billing_value: Any = None
    billing_at: datetime
    crm_value: Any = None
    crm_at: datetime
    #: the approval's action ID (approve = take the CRM value, reject = keep billing's)
    action_id: str = ""


class ProposalItem(Frozen):
    """One change assist mode would make: ``field`` on ``target``, from ``current`` to
    ``proposed`` (the value ``source`` holds), and why."""

    target: Side
    field: str
    current: Any = None
    proposed: Any = None
    source: Side
    why: str = ""


class SyncProposal(Frozen):
    """Assist mode: what one sync pass would write, as one CRM task for a person. The approval's
    action ID is bound to :func:`proposal_hash` (the exact values): approve applies exactly
    these; a newer proposal for the account supersedes this one."""

    items: list[ProposalItem]
    hash: str
    action_id: str = ""
    task_id: str | None = None
    opened_at: datetime
    #: who may approve it (policy's answer in assist mode; policies/approvers.yaml roles)
    approver_roles: list[str] = []


def proposal_hash(items: list[ProposalItem]) -> str:
    """The proposal's identity: every item's target, field and exact proposed value."""
    return parameters_hash(
        {"items": [[i.target.value, i.field, i.proposed] for i in sorted_items(items)]}
    )[:16]


def sorted_items(items: list[ProposalItem]) -> list[ProposalItem]:
    return sorted(items, key=lambda i: (i.target.value, i.field))


def merge_proposal(
    older: list[ProposalItem], newer: list[ProposalItem], holds: dict[Side, dict[str, Any]]
) -> list[ProposalItem]:
    """A newer pass's items over an undecided older proposal's (same target and field: the
    newer wins), without items a side holds already (nothing to change)."""
    merged = {(i.target, i.field): i for i in older}
    merged.update({(i.target, i.field): i for i in newer})
    return sorted_items(
        [i for i in merged.values() if holds.get(i.target, {}).get(i.field) != i.proposed]
    )


class SyncStatus(Frozen):
    customer_id: str
    crm_account_id: str | None = None
    stage: str = "waiting for a change"
    signals: int = 0
    reads: int = 0
    immediate_writes: int = 0
    minor_handed: int = 0
    restored: int = 0
    echoes: int = 0
    conflicts_open: list[Conflict] = []
    conflicts_resolved: int = 0
    #: assist mode: the open proposal (one CRM task), and how earlier ones ended
    proposal_open: SyncProposal | None = None
    proposals_applied: int = 0
    proposals_rejected: int = 0
    last: list[str] = []  # the latest verdicts, newest last (bounded)


class SyncState(Frozen):
    """Everything one run knows; a continuation receives it whole."""

    record: GoldenRecord
    #: the values each side held when last read or written (a side's change is a difference
    #: from what it held, not from the golden value: a side that has not caught up yet is not
    #: changing anything)
    held: dict[str, dict[str, Any]] = {}
    queue: list[SyncSignal] = []
    conflicts: list[Conflict] = []
    status: SyncStatus
    started: bool = False
    #: the health profile's seat observations and what was last written (domain/health.py)
    health: HealthState = HealthState()
    #: assist mode: the proposal waiting for a person (asked again after a continuation)
    proposal: SyncProposal | None = None


class AccountSyncInput(Frozen):
    billing: str
    customer_id: str
    carry: SyncState | None = None
    #: where minor changes go (``flush_workflow_id``); None: written at once
    flusher_id: str | None = None
    #: the flusher's batch window (s); None: ``policies/sync.yaml`` significance.batch_every_s
    batch_every_s: int | None = None
    history_limit: int = 2_000


class MinorChange(Frozen):
    """Minor changes of one customer for the next bulk write (coalesced per customer)."""

    customer_id: str
    crm_account_id: str
    fields: dict[str, Any]
    event_id: str
    at: datetime


class FlushInput(Frozen):
    billing: str
    crm: str
    batch_every_s: int = 300
    #: write at once when this many records wait (one bulk call's worth)
    batch_max: int = 200
    carry: dict[str, MinorChange] = {}
    flushes: int = 0
    history_limit: int = 2_000


class FlushStatus(Frozen):
    pending: int = 0
    flushes: int = 0
    records_written: int = 0
    bulk_calls: int = 0
    failed: dict[str, str] = {}


def changes_of(held: dict[str, Any], view: dict[str, Any]) -> dict[str, Any]:
    """What a side changed since it was last read or written: every field whose value differs
    from what it held (a field it never reported before counts as a change)."""
    return {k: v for k, v in view.items() if k not in held or held[k] != v}


class BackfillInput(Frozen):
    billing: str
    crm: str
    #: report only: read both books, plan the links, write nothing
    dry_run: bool = False
    #: links per bulk write (one call each)
    chunk: int = Field(default=200, gt=0, le=200)
    #: a continuation's remaining links (account → customer) and what is done already
    remaining: dict[str, str] | None = None
    report: BackfillReport | None = None
    history_limit: int = 2_000


class BackfillReport(Frozen):
    """What the backfill found and did (the CLI prints it; no PII: IDs and counts)."""

    dry_run: bool = False
    counts: dict[str, int] = {}
    linked_already: int = 0
    to_write: int = 0
    written: int = 0
    failed: dict[str, str] = {}
    #: ambiguous or uncertain pairs for a person: customer → candidate accounts (score)
    review: dict[str, list[str]] = {}
    billing_reads: int = 0
    crm_reads: int = 0
    bulk_calls: int = 0
    stage: str = "planning"


BackfillInput.model_rebuild()


def backfill_workflow_id(billing: str, crm: str) -> str:
    return f"account-sync-backfill:{billing}:{crm}"
