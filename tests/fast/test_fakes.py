"""The fake toolkit stays true to the worker: the names it treats as writes and audits are names
activities are really registered under, so a renamed activity fails here, not silently."""

from __future__ import annotations

import pytest

from activities.writes import WRITE_ACTIVITIES
from tests.fast.fakes import AUDITS, REAL_NAMES, WRITES, Fakes


def test_writes_and_audits_are_registered_activity_names() -> None:
    assert set() == WRITES - REAL_NAMES
    assert set() == AUDITS - REAL_NAMES
    # the writes are activities/writes.py's declared writes, less the audit trail
    assert AUDITS <= WRITE_ACTIVITIES and WRITES == WRITE_ACTIVITIES - AUDITS
    assert {"upsert_crm_case", "apply_credit", "churn_write_scores"} <= WRITES
    assert "get_invoice_context" in REAL_NAMES and "decide_policy" in REAL_NAMES


def test_a_reply_for_an_unregistered_name_is_refused() -> None:
    with pytest.raises(KeyError, match="no activity is registered as 'get_invoice'"):
        Fakes().on("get_invoice", {})
