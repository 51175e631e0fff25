"""The commands a user types: `revbridge demo` end to end on its own stack, and `revbridge dev`'s
one-line refusal when a port is taken. Each run gets its own ports and folder."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sandbox.framework import free_port
from tests.pairs import covering

ROOT = Path(__file__).resolve().parents[2]


def stack_config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((ROOT / "temporal-dev.yaml").read_text())
    cfg["temporal"]["port"] = free_port()
    cfg["temporal"]["ui_port"] = free_port()
    cfg["sandbox"]["ports"] = {name: free_port() for name in cfg["sandbox"]["ports"]}
    cfg["sandbox"]["smtp_port"] = free_port()
    cfg["webhooks"]["port"] = free_port()
    path = tmp_path / "temporal-dev.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def revbridge(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(ROOT), "HOME": str(cwd)},
    )


@pytest.mark.e2e
# once per vendor (every billing platform and every CRM), not per pair: each pair's use cases have
# their own full-stack smoke runs (tests/workflows, quote_to_cash, churn, support_context)
@pytest.mark.parametrize(("billing", "crm"), covering(), ids=["-".join(p) for p in covering()])
def test_demo_turns_failed_payments_into_cases_with_audit_on_both_sides(
    tmp_path: Path, billing: str, crm: str
) -> None:
    config = stack_config(tmp_path)
    # one of the two runs sends its email through the other channel a deployment can choose,
    # Marketing Cloud, instead of a whole demo stack of its own (the suite's time budget); the
    # other keeps the default SMTP relay (as does CI's `revbridge demo` from an empty folder)
    extra = ("--channel", "marketing-cloud") if billing == "chargebee" else ()
    if extra:
        cfg = yaml.safe_load(config.read_text())
        cfg["sandbox"]["ports"]["marketing_cloud"] = free_port()
        config.write_text(yaml.safe_dump(cfg))
    run = revbridge(
        "demo", "--json", "--billing", billing, "--crm", crm, *extra, "--config", str(config),
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["pair"] == {"billing": billing, "crm": crm}
    if extra:
        _sent_through_marketing_cloud(summary)
    assert summary["stack"] == "started for this run and stopped"
    rows = summary["customers"]
    assert len(rows) == 4
    for row in rows:
        assert row["case"]["id"] and row["case"]["number"]
        assert row["crm_audit"][0]["action"] == "create_case"
        assert row["billing_notes"] >= 1
        assert row["workflow_id"] == f"dunning:{billing}:{row['invoice']}"
    states = {row["company"]: row["state"] for row in rows}
    assert states["Initech"] == "recovered"
    assert states["Globex Corporation"] == "waiting for approval"
    globex = next(row for row in rows if row["company"] == "Globex Corporation")
    [pending] = globex["pending_approvals"]
    assert pending["approver_roles"] == ["finance"]
    assert pending["cli"].startswith(f"revbridge approve {globex['workflow_id']} --action act-")
    assert {row["failure_class"] for row in rows} == {
        "expired_card",
        "insufficient_funds",
        "technical",
    }
    by = {row["company"]: row for row in rows}
    # day 0 of each segment's playbook: SMB is emailed through the local relay; a strategic
    # account goes to its owner, never to automated email
    assert by["Northwind Analytics"]["segment"] == "SMB"
    assert len(by["Northwind Analytics"]["emails"]) == 1
    assert by["Northwind Analytics"]["state"] == "waiting for payment"
    assert by["Umbrella Holdings"]["segment"] == "Strategic"
    assert by["Umbrella Holdings"]["emails"] == []
    assert by["Initech"]["attribution"]
    # the stack's own processes are gone
    assert (tmp_path / ".revbridge" / "logs" / "worker.log").exists()


def _sent_through_marketing_cloud(summary: dict) -> None:
    """``--channel marketing-cloud``: the SMB reminder went out through the Marketing Cloud
    sandbox (the emails below are read from its inbox), shown from its ledger."""
    assert summary["email_channel"] == "marketing-cloud"
    by = {row["company"]: row for row in summary["customers"]}
    [subject] = by["Northwind Analytics"]["emails"]
    assert by["Northwind Analytics"]["invoice"] in subject
    ledger = summary["marketing_cloud_ledger"]
    assert ledger[0] == "POST /v2/token → 200"
    sends = [line for line in ledger if line.startswith("POST /messaging/v1/email/messages/")]
    assert sends and all(line.endswith("→ 202") for line in sends)
    assert any(line.startswith("GET /messaging/v1/email/messages/") for line in ledger)


def test_dev_refuses_a_port_in_use_with_one_line(tmp_path: Path) -> None:
    config = stack_config(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", cfg["webhooks"]["port"]))
        taken.listen()
        run = revbridge("dev", "--config", str(config), cwd=tmp_path, timeout=30)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert f"port {cfg['webhooks']['port']} (webhooks) is already in use" in lines[0]
    assert not (tmp_path / ".revbridge" / "logs").exists()  # nothing was started


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("temporal: [unclosed\n")
    run = revbridge("demo", "--config", str(bad), cwd=tmp_path, timeout=30)
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "not valid YAML" in run.stderr
    missing = revbridge("dev", "--config", str(tmp_path / "nope.yaml"), cwd=tmp_path, timeout=30)
    assert missing.returncode == 2 and "config file not found" in missing.stderr
