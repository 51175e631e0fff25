"""``revbridge demo --channel marketing-cloud`` as a user types it, on its own stack (own ports,
own folder): the SMB reminder goes out through the Marketing Cloud sandbox, shown from its ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sandbox.framework import free_port
from tests.e2e.test_cli import revbridge, stack_config


@pytest.mark.e2e
def test_demo_sends_the_reminder_through_marketing_cloud(tmp_path: Path) -> None:
    config = stack_config(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    cfg["sandbox"]["ports"]["marketing_cloud"] = free_port()  # its own port, as the others
    config.write_text(yaml.safe_dump(cfg))
    run = revbridge(
        "demo", "--json", "--channel", "marketing-cloud", "--config", str(config), cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["email_channel"] == "marketing-cloud"
    by = {row["company"]: row for row in summary["customers"]}
    [subject] = by["Northwind Analytics"]["emails"]  # read from Marketing Cloud's inbox
    assert by["Northwind Analytics"]["invoice"] in subject
    assert by["Umbrella Holdings"]["emails"] == []  # strategic: its owner, never automated email
    ledger = summary["marketing_cloud_ledger"]
    assert ledger[0] == "POST /v2/token → 200"
    sends = [line for line in ledger if line.startswith("POST /messaging/v1/email/messages/")]
    assert sends and all(line.endswith("→ 202") for line in sends)
    assert any(line.startswith("GET /messaging/v1/email/messages/") for line in ledger)
