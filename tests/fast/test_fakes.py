"""The fake toolkit stays true to the worker: the names it treats as writes and audits are names
activities are really registered under, so a renamed activity fails here, not silently."""

from __future__ import annotations

import pytest

from tests.fast.fakes import AUDITS, REAL_NAMES, WRITES, Fakes


def test_writes_and_audits_are_registered_activity_names() -> None:
    assert set() == WRITES - REAL_NAMES
    assert set() == AUDITS - REAL_NAMES
    assert "get_invoice_context" in REAL_NAMES and "decide_policy" in REAL_NAMES


def test_a_reply_for_an_unregistered_name_is_refused() -> None:
    with pytest.raises(KeyError, match="no activity is registered as 'get_invoice'"):
        Fakes().on("get_invoice", {})
