"""Human approvals: what a workflow asks a person, and what the person answers.

An action ID is a hash of the proposed action's exact parameters, so an approval given for one
set of parameters can never authorize another. The operator sends the signal ``approval`` (Web UI
"Send a Signal", or ``revbridge approve``) with :class:`ApprovalSignal` as JSON.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from domain.audit import parameters_hash
from domain.bounds import Note, Reason
from domain.models import Frozen
from domain.policy import ActionKind

SIGNAL = "approval"
UPDATE = "decide"
QUERY = "pending_approvals"

# Payload metadata of the approver proof (infra/codec.py, infra/codec_server.py; the workflow
# reads the last two): the codec server claims and signs the signed-in person; the worker's codec
# verifies the signature when it decodes and says so.
CLAIMED_APPROVER = "revbridge-approver"
APPROVER_SIGNATURE = "revbridge-approver-sig"
#: set by the decoding codec only: the approver whose stamp verified
VERIFIED_APPROVER = "revbridge-verified-approver"
#: set by the decoding codec when identity keys are configured: ``verified`` or ``none``
IDENTITY_CHECK = "revbridge-identity-check"


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class ProposedAction(Frozen):
    """A side effect a workflow wants to take, with everything that makes it this action."""

    kind: ActionKind
    customer_id: str
    invoice_id: str | None = None
    amount: int = 0  # minor units
    currency: str = "USD"
    discount_percent: float = 0
    #: bounded (not part of the action ID): a summary, never a document
    reason: Reason = ""
    origin: str = "rules"
    #: the record acted on when it is not the customer or invoice (an opportunity, a subscription)
    subject_id: str | None = None
    #: how long an offer lasts (billing months), 0 when it does not apply
    months: int = 0
    #: terms beyond price and discount (custom payment terms, a price override), in words
    terms: str = ""
    #: non-standard terms that policy sends to a person
    custom_terms: bool = False
    #: active subscriptions the customer already has for the same products (shown to the
    #: approver next to the new one; policy sends a duplicate to RevOps)
    duplicate_of: list[str] = []

    @property
    def action_id(self) -> str:
        # Fields added later are hashed only when set, so the IDs of actions proposed before they
        # existed (in running workflows and committed histories) do not change.
        params = self.model_dump(mode="json", exclude={"reason"})
        for later in ("subject_id", "months", "terms", "custom_terms", "duplicate_of"):
            if params.get(later) == type(self).model_fields[later].default:
                params.pop(later)
        return "act-" + parameters_hash(params)[:20]

    def describe(self) -> str:
        money = f" of {self.amount / 100:,.2f} {self.currency}" if self.amount else ""
        target = f" on invoice {self.invoice_id}" if self.invoice_id else ""
        subject = f" ({self.subject_id})" if self.subject_id else ""
        discount = f", {self.discount_percent:g}% off" if self.discount_percent else ""
        months = f" for {self.months} months" if self.months else ""
        terms = f"; terms: {self.terms}" if self.terms else ""
        dup = (
            f"; the customer already has active subscription(s) {', '.join(self.duplicate_of)} "
            "for the same products"
            if self.duplicate_of
            else ""
        )
        return (
            f"{self.kind.value}{money} for customer {self.customer_id}{target}{subject}"
            f"{discount}{months}{terms}{dup}"
        )


class ApprovalTiming(Frozen):
    """How long a person has: a reminder at ``remind_after``, expiry at ``expire_after``."""

    remind_after: timedelta = timedelta(hours=24)
    expire_after: timedelta = timedelta(hours=72)


class ApprovalSignal(Frozen):
    action_id: str
    decision: Decision
    approver: str
    note: Note = ""


APPROVAL_FIELDS = ("action_id", "decision", "approver", "note")
_REQUIRED = ("action_id", "decision", "approver")


def read_approval(data: object) -> ApprovalSignal | str:
    """An approval payload (the Web UI's "Send a Signal" JSON, the CLI's) as an
    :class:`ApprovalSignal`, or the one-line reason it is refused: not an object, a field missing
    or unexpected (a typo must not pass silently), a value of the wrong kind."""
    if not isinstance(data, dict):
        return (
            "bad approval payload: expected a JSON object "
            f"{{{', '.join(APPROVAL_FIELDS)}}}, got {type(data).__name__}"
        )
    problems = []
    missing = [f for f in _REQUIRED if data.get(f) in (None, "")]
    extra = sorted(str(k)[:40] for k in data if k not in APPROVAL_FIELDS)
    if missing:
        problems.append("missing " + ", ".join(missing))
    if extra:
        problems.append("unexpected " + ", ".join(extra[:5]) + (", …" if len(extra) > 5 else ""))
    if problems:
        return "bad approval payload: " + "; ".join(problems)
    wrong = [f for f in APPROVAL_FIELDS if f in data and not isinstance(data[f], str)]
    if wrong:
        return "bad approval payload: not text: " + ", ".join(wrong)
    if len(data["action_id"]) > 80 or len(data["approver"]) > 254:
        return "bad approval payload: action_id or approver too long (an action ID, an email)"
    if data["decision"] not in {d.value for d in Decision}:
        return f"bad approval payload: decision must be approve or reject, not {data['decision'][:40]!r}"
    return ApprovalSignal.model_validate(data)


class PendingApproval(Frozen):
    action_id: str
    action: ProposedAction
    why: str
    policy_ids: list[str]
    approver_roles: list[str]
    eligible_approvers: list[str]
    requested_at: datetime
    remind_at: datetime
    expires_at: datetime
    #: the eligible approvers' CRM users: the reminder task is assigned to them
    approver_crm_ids: list[str] = []

    def signal_json(self, approver: str = "you@example.com") -> str:
        example: dict[str, Any] = {
            "action_id": self.action_id,
            "decision": "approve",
            "approver": approver,
            "note": "",
        }
        return json.dumps(example)

    def details(self) -> str:
        """The Web UI's current details: enough for a person to decide and act."""
        return (
            f"**Approval needed:** {self.action.describe()}\n\n"
            f"Why: {self.why}\n\n"
            f"Asked by policy: {', '.join(self.policy_ids) or '-'}; "
            f"approver role: {' or '.join(self.approver_roles) or '-'}\n\n"
            f"Expires {self.expires_at:%Y-%m-%d %H:%M} UTC.\n\n"
            f"To decide, send the signal `{SIGNAL}` with:\n\n"
            f"`{self.signal_json()}`\n\n"
            f"(`decision` is `approve` or `reject`; `approver` is your email.)"
        )


class ApprovalOutcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"  # the situation resolved itself (e.g. the invoice was paid)


class ApprovalResult(Frozen):
    action_id: str
    outcome: ApprovalOutcome
    approver: str | None = None
    note: str = ""


class RefusedApproval(Frozen):
    """A signal the gate did not accept, kept for the audit trail. ``signal`` is None when the
    payload itself was bad; ``payload`` then keeps what it said (bounded)."""

    signal: ApprovalSignal | None = None
    reason: str
    payload: dict[str, str] = {}

    @classmethod
    def bad_payload(cls, data: object, reason: str) -> RefusedApproval:
        items = list(data.items())[:10] if isinstance(data, dict) else [("payload", data)]
        return cls(reason=reason, payload={str(k)[:40]: str(v)[:200] for k, v in items})

    def audit_fields(self) -> dict[str, Any]:
        """The audit entry's fields for a refused approval, the same in every workflow."""
        params = self.signal.model_dump(mode="json") if self.signal else dict(self.payload)
        return {
            "decision": "deny",
            "outcome": "refused",
            "summary": self.summary(),
            "key_suffix": parameters_hash(params),
            "parameters": params,
        }

    def summary(self) -> str:
        """One line: what was refused and why."""
        s = self.signal
        action = s.action_id if s else self.payload.get("action_id", "(no action ID)")
        approver = s.approver if s else self.payload.get("approver", "")
        return (
            f"An approval signal for {action[:80]} from {approver[:80]!r} changed nothing: "
            f"{self.reason}."
        )
