"""One step of ``revbridge setup crm``'s plan: a field, object, property (group) the CRM lacks,
which setup creates through the vendor's admin API, or something only a person can do (grant a
permission, change a field an admin owns), which setup names with its fix and never attempts.

Each CRM connector offers ``setup_plan(crm) -> list[SetupStep]`` (reads only) and
``setup_apply(crm, steps) -> list[str]`` (creates what the automatic steps name, idempotently:
something that exists by the time its create arrives counts as done)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SetupStep:
    system: str  # "salesforce" | "hubspot"
    action: str  # "create object", "create field", "create property", "grant", "fix"…
    target: str  # "Account.Billing_Platform__c", "companies.mrr", "Case"
    detail: str  # "Text(40), External ID", or for a step by hand: what to do
    #: what ``setup_apply`` sends, in the vendor's shape; None: a person must do this step
    request: Any = field(default=None, compare=False)

    @property
    def automatic(self) -> bool:
        return self.request is not None

    def line(self) -> str:
        """``+ salesforce: create field Account.MRR__c — Currency(18, 2)`` for what setup does,
        ``! salesforce: grant Case — …`` for what a person must do."""
        mark = "+" if self.automatic else "!"
        return f"{mark} {self.system}: {self.action} {self.target} — {self.detail}"
