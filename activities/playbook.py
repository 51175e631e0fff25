"""The dunning playbook as an activity: read from ``policies/playbooks.yaml`` when a run starts,
so the cadence a run follows is in its history (and a change applies to new runs only)."""

from __future__ import annotations

from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.models import PlaybookInput
from domain.models import CustomerTier
from domain.playbook import PlaybookError, Playbooks, SegmentPlaybook, load_playbooks


class PlaybookActivities:
    def __init__(self, policy_dir: Path) -> None:
        self.path = policy_dir / "playbooks.yaml"
        #: the file's (mtime, size) and its playbooks, parsed again only when the file changed:
        #: every failed payment reads it, and the YAML parse and validation showed in the
        #: worker's profile (issue 15, bench/profile-worker.txt)
        self._read: tuple[tuple[int, int], Playbooks] | None = None

    def _playbooks(self) -> Playbooks:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        read = self._read
        if stamp is not None and read is not None and read[0] == stamp:
            return read[1]
        playbooks = load_playbooks(self.path)  # a missing or broken file raises PlaybookError
        if stamp is not None:
            self._read = (stamp, playbooks)
        return playbooks

    @activity.defn(name="dunning_playbook")
    def dunning_playbook(self, input: PlaybookInput) -> SegmentPlaybook:
        try:
            return self._playbooks().for_tier(CustomerTier(input.tier))
        except PlaybookError as exc:
            # a broken file does not heal by retrying: fail loudly, a person fixes the file, and
            # the activity is retried from the Web UI (reset) or by a new run
            raise ApplicationError(str(exc), type="playbook.invalid", non_retryable=True) from None
