"""One audit entry per action RevBridge takes, written to both systems and kept in history."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from domain.models import Frozen


def parameters_hash(parameters: dict[str, Any]) -> str:
    """Hash of an action's exact parameters (also the basis of approval action IDs)."""
    canonical = json.dumps(parameters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class AuditEntry(Frozen):
    key: str  # idempotency key of the audit write itself
    use_case: str
    action: str
    parameters_hash: str
    decision: str  # allow | needs_approval | deny | observed
    policy_ids: list[str] = []
    approver: str | None = None
    reasoner: str = "rules"
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    outcome: str
    summary: str
    workflow_id: str
    run_id: str
    account_id: str | None = None
    case_id: str | None = None
    at: datetime
    #: what this entry is about within the run: a governed action's ID (``act-…``), else the
    #: step (``send_email:day3:2``); empty in entries written before it existed
    action_id: str = ""

    @property
    def correlation_id(self) -> str:
        """The one ID both systems' copies of this entry carry: workflow, run and action."""
        return f"{self.workflow_id}/{self.run_id}/{self.action_id or self.action}"

    def as_text(self) -> str:
        """The human-readable form both systems carry (no PII: IDs and decisions only). The
        correlation ID comes second, so even a note cut to a platform's limit keeps it."""
        lines = [
            f"[RevBridge] {self.use_case}: {self.action} → {self.outcome}",
            f"correlation: {self.correlation_id}",
            self.summary,
            f"decision: {self.decision}"
            + (f" ({', '.join(self.policy_ids)})" if self.policy_ids else ""),
            f"reasoner: {self.reasoner}"
            + (f" / {self.model}" if self.model else "")
            + (
                f" ({self.input_tokens} in / {self.output_tokens} out tokens)"
                if self.input_tokens or self.output_tokens
                else ""
            ),
            f"workflow: {self.workflow_id} (run {self.run_id})",
        ]
        if self.approver:
            lines.append(f"approved by: {self.approver}")
        if self.case_id:
            lines.append(f"CRM case: {self.case_id}")
        return "\n".join(lines)
