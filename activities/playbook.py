"""The dunning playbook as an activity: read from ``policies/playbooks.yaml`` when a run starts,
so the cadence a run follows is in its history (and a change applies to new runs only)."""

from __future__ import annotations

from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.models import PlaybookInput
from domain.models import CustomerTier
from domain.playbook import PlaybookError, SegmentPlaybook, load_playbooks


class PlaybookActivities:
    def __init__(self, policy_dir: Path) -> None:
        self.path = policy_dir / "playbooks.yaml"

    @activity.defn(name="dunning_playbook")
    def dunning_playbook(self, input: PlaybookInput) -> SegmentPlaybook:
        try:
            return load_playbooks(self.path).for_tier(CustomerTier(input.tier))
        except PlaybookError as exc:
            # a broken file does not heal by retrying: fail loudly, a person fixes the file, and
            # the activity is retried from the Web UI (reset) or by a new run
            raise ApplicationError(str(exc), type="playbook.invalid", non_retryable=True) from None
