"""What the ``revbridge setup crm`` tests share: the Salesforce sandbox's connected app, the
settings that point the CLI (or a connector) at a sandbox, the command run in-process, and the
CRM's lines of ``revbridge doctor``."""

from __future__ import annotations

import os

import pytest
from pydantic import SecretStr

from cli.doctor import connector_checks
from cli.main import main
from connectors.registry import build_crm
from connectors.salesforce import SalesforceCrm
from domain.preflight import Check
from domain.settings import SalesforceSettings, Settings

SF_ID, SF_SECRET = "setup-app", "setup-secret"
#: what the command reads: the CRM and its credentials
PREFIXES = ("REVBRIDGE_", "SALESFORCE_", "HUBSPOT_")


def sf_env(url: str) -> dict[str, str]:
    """The settings of a deployment whose CRM is the Salesforce sandbox at ``url``."""
    return {
        "REVBRIDGE_CRM": "salesforce",
        "REVBRIDGE_HTTP_TIMEOUT_S": "5",
        "SALESFORCE_TOKEN_URL": url + "/services/oauth2/token",
        "SALESFORCE_CLIENT_ID": SF_ID,
        "SALESFORCE_CLIENT_SECRET": SF_SECRET,
    }


def sf_crm(url: str) -> SalesforceCrm:
    """The connector on the Salesforce sandbox at ``url``."""
    settings = SalesforceSettings(
        token_url=url + "/services/oauth2/token",
        client_id=SF_ID,
        client_secret=SecretStr(SF_SECRET),
    )
    return SalesforceCrm(settings, timeout_s=5)


def setup_crm(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    *flags: str,
) -> tuple[int, list[str], str]:
    """`revbridge setup crm` in-process with exactly ``env``: (exit status, stdout lines, stderr)."""
    for key in list(os.environ):
        if key.startswith(PREFIXES):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    code = main(["setup", "crm", *flags])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def crm_checks(env: dict[str, str]) -> list[Check]:
    """The CRM's lines of `revbridge doctor` (the same function doctor runs for them)."""
    settings = Settings.from_env(env)
    return connector_checks(settings.crm, lambda: build_crm(settings))
