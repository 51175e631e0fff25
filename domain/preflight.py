"""What ``revbridge doctor`` reports: one line per check of a configured account.

Each connector that can check its own account offers ``preflight() -> list[Check]`` (credentials
and scopes, the custom fields/objects/properties RevBridge needs with the right type and
searchability, account settings such as Chargebee net terms). ``cli/doctor.py`` runs every
configured connector's checks plus the Temporal and LLM ones and prints them; a failed check
carries a one-line ``fix`` a person can act on. No vendor or Temporal imports here.
"""

from __future__ import annotations

from enum import StrEnum

from domain.models import Frozen


class CheckStatus(StrEnum):
    OK = "ok"
    WARN = "warn"  # works today, will hurt later (e.g. API allowance nearly spent)
    FAIL = "fail"  # RevBridge would fail or misbehave on this account
    SKIP = "skip"  # could not be checked (e.g. no credentials); says why in ``detail``


class Check(Frozen):
    """One preflight finding. ``system`` is the vendor or component (``chargebee``, ``hubspot``,
    ``temporal``, ``llm``); ``name`` a short stable slug (``custom-field:cf_crm_account_id``)."""

    system: str
    name: str
    status: CheckStatus
    detail: str = ""
    fix: str = ""  # one line: what to do about a WARN/FAIL

    @property
    def failed(self) -> bool:
        return self.status is CheckStatus.FAIL

    def line(self) -> str:
        text = f"{self.status.value.upper():4}  {self.system}: {self.name}"
        if self.detail:
            text += f" — {self.detail}"
        if self.fix and self.status in (CheckStatus.FAIL, CheckStatus.WARN):
            text += f" (fix: {self.fix})"
        return text
