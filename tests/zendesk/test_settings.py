"""REVBRIDGE_DESK / ZENDESK_* settings and the registry's desk: parsed, never printed, one-line
errors for a half-configured desk."""

from __future__ import annotations

import pytest

from activities.support import DeskRoutedCrm, with_desk
from connectors.registry import build_desk
from connectors.zendesk import ZendeskDesk
from domain.settings import Settings, SettingsError

ENV = {
    "REVBRIDGE_DESK": "zendesk",
    "ZENDESK_SUBDOMAIN": "acme",
    "ZENDESK_EMAIL": "agent@acme.test",
    "ZENDESK_API_TOKEN": "zd-token-secret",
    "ZENDESK_WEBHOOK_SECRETS": "zd-old-secret, zd-new-secret",
    "ZENDESK_INTEGRATION_USER_ID": "360001",
}


def test_desk_settings_are_read_and_never_printed() -> None:
    s = Settings.from_env(ENV)
    assert s.desk == "zendesk" and s.zendesk is not None and s.zendesk.subdomain == "acme"
    assert [x.get_secret_value() for x in s.webhooks.zendesk_secrets] == [
        "zd-old-secret",
        "zd-new-secret",
    ]
    assert s.webhooks.zendesk_integration_user_id == "360001"
    shown = repr(s) + str(s)
    assert not any(x in shown for x in ("zd-token-secret", "zd-old-secret", "zd-new-secret"))


def test_build_desk() -> None:
    assert build_desk(Settings()) is None  # no desk: the CRM's cases only
    assert isinstance(build_desk(Settings.from_env(ENV)), ZendeskDesk)
    with pytest.raises(SettingsError, match="ZENDESK_SUBDOMAIN"):
        build_desk(Settings.from_env({"REVBRIDGE_DESK": "zendesk"}))
    no_token = {k: v for k, v in ENV.items() if k != "ZENDESK_API_TOKEN"}
    with pytest.raises(SettingsError, match="ZENDESK_API_TOKEN"):
        build_desk(Settings.from_env(no_token))
    # a typo is refused as the settings are read (webhook service and worker alike)
    with pytest.raises(SettingsError, match="REVBRIDGE_DESK must be one of zendesk"):
        Settings.from_env({"REVBRIDGE_DESK": "freshdesk"})
    with pytest.raises(SettingsError, match="unsupported support desk"):
        build_desk(Settings(desk="freshdesk"))


def test_without_a_desk_the_worker_keeps_its_crm() -> None:
    crm = object()
    assert with_desk(crm, None) is crm  # type: ignore[arg-type]
    desk = build_desk(Settings.from_env(ENV))
    assert isinstance(with_desk(crm, desk), DeskRoutedCrm)  # type: ignore[arg-type]
