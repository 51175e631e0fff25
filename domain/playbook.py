"""The dunning playbook: what happens on which day after a payment fails, per customer segment.

Data, not code: ``policies/playbooks.yaml`` sets the cadence (e.g. day 0, 3, 7, 14), the channel
(automated email, or the account owner for accounts people talk to), the tone, and the end action
(write off, or cancel — which policy never lets happen automatically for enterprise accounts). The
dunning workflow reads it through an activity, so the playbook a run used is in its history.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import Field, model_validator

from domain.config_file import load_model
from domain.models import CustomerTier, Frozen


class Channel(StrEnum):
    EMAIL = "email"  # reminders go to the billing contact by email (policy permitting)
    OWNER = "owner"  # reminders go to the account owner as CRM tasks; no automated email


class StepAction(StrEnum):
    REMIND = "remind"  # a reminder through the segment's channel
    RETRY = "retry"  # a payment retry, when the decline allows one
    OWNER_TASK = "owner_task"  # a CRM task for the account owner / CSM to call the customer


class EndAction(StrEnum):
    WRITE_OFF = "write_off"  # leave the invoice past due; the case stays with finance
    CANCEL = "cancel"  # cancel the subscription (policy: never automatic for enterprise)


class Step(Frozen):
    day: int = Field(ge=0, le=90)
    actions: list[StepAction] = Field(min_length=1)


class SegmentPlaybook(Frozen):
    channel: Channel = Channel.EMAIL
    tone: str = "friendly"  # friendly | firm | formal
    steps: list[Step] = Field(min_length=1)
    #: the day the schedule ends with ``end_action`` if the invoice is still unpaid
    end_day: int = Field(ge=1, le=120)
    end_action: EndAction = EndAction.WRITE_OFF
    #: an open support case pauses reminders for at most this many days
    max_pause_days: int = Field(default=14, ge=0, le=60)

    @model_validator(mode="after")
    def _ordered(self) -> SegmentPlaybook:
        days = [s.day for s in self.steps]
        if days != sorted(set(days)):
            raise ValueError("steps must be in strictly increasing day order")
        if self.end_day <= days[-1]:
            raise ValueError("end_day must come after the last step")
        return self

    @property
    def reminders(self) -> int:
        return sum(StepAction.REMIND in s.actions for s in self.steps)

    def at(self, index: int) -> timedelta:
        return timedelta(days=self.steps[index].day)


class Playbooks(Frozen):
    segments: dict[CustomerTier, SegmentPlaybook]

    @model_validator(mode="after")
    def _every_tier(self) -> Playbooks:
        missing = [t.value for t in CustomerTier if t not in self.segments]
        if missing:
            raise ValueError(f"no playbook for segment(s): {', '.join(missing)}")
        return self

    def for_tier(self, tier: CustomerTier) -> SegmentPlaybook:
        return self.segments[tier]


class PlaybookError(Exception):
    pass


def load_playbooks(path: Path) -> Playbooks:
    return load_model(path, Playbooks, PlaybookError)
