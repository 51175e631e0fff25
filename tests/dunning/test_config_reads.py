"""Issue 15 (worker CPU): the playbooks and the churn scorecard are parsed once per change of
their file, not on every failed payment — and an edit still counts from the next read on."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities import churn, playbook
from activities.models import PlaybookInput
from activities.playbook import PlaybookActivities

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def _touch_later(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_playbooks_are_read_once_per_change_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(POLICIES / "playbooks.yaml", tmp_path / "playbooks.yaml")
    acts = PlaybookActivities(tmp_path)
    parsed: list[Path] = []
    real = playbook.load_playbooks

    def counting(path: Path):  # noqa: ANN202
        parsed.append(path)
        return real(path)

    monkeypatch.setattr(playbook, "load_playbooks", counting)
    first = acts.dunning_playbook(PlaybookInput(tier="SMB"))
    assert acts.dunning_playbook(PlaybookInput(tier="SMB")) == first
    assert len(parsed) == 1
    path = tmp_path / "playbooks.yaml"
    path.write_text(path.read_text() + "\n# edited\n")
    _touch_later(path)
    assert acts.dunning_playbook(PlaybookInput(tier="SMB")) == first
    assert len(parsed) == 2  # the edit was read
    path.write_text("segments: [")  # broken: the activity fails loudly, as before
    _touch_later(path)
    with pytest.raises(ApplicationError):
        acts.dunning_playbook(PlaybookInput(tier="SMB"))


def test_the_churn_scorecard_is_parsed_once_per_change_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "churn.yaml"
    shutil.copy(POLICIES / "churn.yaml", path)
    first = churn.load_config(path)
    assert churn.load_config(path) is first  # not parsed again
    path.write_text(path.read_text() + "\n# edited\n")
    _touch_later(path)
    again = churn.load_config(path)
    assert again is not first and again == first
    path.write_text("weights: [")
    _touch_later(path)
    with pytest.raises(ApplicationError):
        churn.load_config(path)
