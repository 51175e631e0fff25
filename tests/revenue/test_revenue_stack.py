"""The local stack's NetSuite: off by default, on with REVBRIDGE_ERP=netsuite (or a port in the
stack file); the services then read NETSUITE_* settings pointing at the sandbox, build_erp builds
the connector from them, and its preflight passes against the sandbox the stack would run
(TBA credentials, subsidiary, every account of policies/revenue.yaml)."""

from __future__ import annotations

from pathlib import Path

from cli.config import StackConfig
from cli.revenue import NETSUITE, erp_emulators, erp_env, erp_wanted, with_erp
from connectors.registry import build_erp
from domain.preflight import CheckStatus
from domain.revenue import load_accounts
from domain.settings import Settings
from sandbox.framework import ServerThread, free_port

ROOT = Path(__file__).resolve().parents[2]


def stack() -> StackConfig:
    return StackConfig.load(ROOT / "temporal-dev.yaml")


def test_no_erp_unless_asked() -> None:
    cfg = stack()
    assert not erp_wanted(cfg, {}) and erp_env(cfg, {}) == {} and with_erp(cfg, {}) is cfg
    assert NETSUITE in with_erp(cfg, {"REVBRIDGE_ERP": "netsuite"}).sandbox.ports


def test_the_stacks_netsuite_passes_preflight(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("REVBRIDGE_ERP", "netsuite")
    base = stack()
    cfg = base.model_copy(
        update={
            "sandbox": base.sandbox.model_copy(
                update={"ports": {**base.sandbox.ports, NETSUITE: free_port()}}
            )
        }  # fmt: skip
    )
    env = {**cfg.service_env(), **erp_env(cfg)}
    assert env["NETSUITE_API_URL"] == cfg.sandbox.url(NETSUITE)
    (em, port) = next(iter(erp_emulators(cfg).items()))
    with ServerThread({em: port}):
        erp = build_erp(Settings.from_env(env), load_accounts(ROOT / "policies" / "revenue.yaml"))
        assert erp is not None
        checks = erp.preflight()
        erp.close()
    assert [c.status for c in checks] == [CheckStatus.OK] * len(checks) and len(checks) == 5
