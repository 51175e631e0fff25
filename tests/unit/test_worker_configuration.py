"""The worker reports a misconfigured account at start (workers/configuration.py): one log line
per finding with its fix, never a traceback, never fatal."""

from __future__ import annotations

import logging
import time

import pytest

from domain.preflight import Check, CheckStatus
from workers.configuration import report


class Site:
    name = "chargebee"

    def preflight(self) -> list[Check]:
        return [
            Check(system="chargebee", name="credentials", status=CheckStatus.OK),
            Check(
                system="chargebee",
                name="contract-terms",
                status=CheckStatus.FAIL,
                detail="Contract Terms are off",
                fix="enable Contract Terms in Settings",
            ),
            Check(system="chargebee", name="net-terms", status=CheckStatus.WARN, detail="unknown"),
        ]


class Broken:
    name = "hubspot"

    def preflight(self) -> list[Check]:
        raise RuntimeError("token=secret-value leaked?")


class Slow:
    name = "salesforce"

    def preflight(self) -> list[Check]:
        time.sleep(2)
        return []


class NoPreflight:
    name = "stripe"


async def test_each_finding_is_one_line_with_its_fix(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="revbridge.worker"):
        failed = await report([Site(), Broken(), Slow(), NoPreflight()], timeout_s=0.5)
    lines = [r.getMessage() for r in caplog.records]
    assert failed == 1
    assert (
        "configuration: FAIL  chargebee: contract-terms — Contract Terms are off "
        "(fix: enable Contract Terms in Settings)" in lines
    )
    assert any(line.startswith("configuration: WARN  chargebee: net-terms") for line in lines)
    assert "configuration: hubspot: preflight could not run (RuntimeError)" in lines
    assert "configuration: salesforce: preflight did not answer in 0 s" in lines
    assert not any("secret-value" in line or "Traceback" in line for line in lines)
    assert not any("credentials" in line for line in lines)  # what is fine is not logged
