"""``revbridge demo --desk zendesk`` as a user types it, on its own stack (own ports, own
folder): a ticket opened in the Zendesk sandbox gets one internal note with the billing context."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from sandbox.framework import free_port
from tests.e2e.test_cli import revbridge, stack_config


@pytest.mark.e2e
def test_demo_notes_a_zendesk_ticket_with_its_billing_context(tmp_path: Path) -> None:
    config = stack_config(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    cfg["sandbox"]["ports"]["zendesk"] = free_port()
    config.write_text(yaml.safe_dump(cfg))
    run = revbridge("demo", "--json", "--desk", "zendesk", "--config", str(config), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["pair"]["desk"] == "zendesk"
    ticket = summary["ticket"]
    assert ticket["outcome"] == "summarized"
    [note] = ticket["internal_notes"]
    assert note.startswith("Billing context (") and "Open dunning: invoice INV-northwind-" in note
    assert ticket["zendesk_writes"] == [f"PUT /api/v2/tickets/{ticket['id']}.json → 200"]
    assert ticket["workflow_id"] == f"case:zendesk:{ticket['id']}"
