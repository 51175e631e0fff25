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

    def as_text(self) -> str:
        """The human-readable form billing notes carry (no PII: IDs and decisions only)."""
        lines = [
            f"[RevBridge] {self.use_case}: {self.action} → {self.outcome}",
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
