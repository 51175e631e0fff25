"""Zuora's settings from the environment, and the deployment's billing built from them."""

from __future__ import annotations

import pytest

from connectors.registry import build_billing
from connectors.zuora import ZuoraBilling
from domain.settings import Settings, SettingsError

ENV = {
    "REVBRIDGE_BILLING": "zuora",
    "ZUORA_CLIENT_ID": "client-1",
    "ZUORA_CLIENT_SECRET": "s3cret-value",
    "ZUORA_API_URL": "https://rest.eu.zuora.com",
    "ZUORA_COLLECT_API_URL": "https://collections.example",
    "ZUORA_COLLECT_USERNAME": "ops@example.com",
    "ZUORA_COLLECT_TOKEN": "cpr-token-value",
    "ZUORA_WEBHOOK_USERNAME": "callouts",
    "ZUORA_WEBHOOK_PASSWORD": "callout-pass",
    "ZUORA_WEBHOOK_HMAC_KEYS": "new-key, old-key",
}


def test_zuora_settings_come_from_the_environment_and_never_print_secrets() -> None:
    s = Settings.from_env(ENV)
    assert s.billing == "zuora" and s.zuora is not None
    assert (s.zuora.client_id, s.zuora.api_url) == ("client-1", "https://rest.eu.zuora.com")
    assert s.zuora.client_secret.get_secret_value() == "s3cret-value"
    assert s.zuora.collect_token and s.zuora.collect_token.get_secret_value() == "cpr-token-value"
    assert s.webhooks.zuora_username == "callouts"
    assert [k.get_secret_value() for k in s.webhooks.zuora_hmac_keys] == ["new-key", "old-key"]
    assert s.webhooks.zuora_hmac_header == "X-Zuora-Signature"
    shown = repr(s)
    for secret in ("s3cret-value", "cpr-token-value", "callout-pass", "new-key", "old-key"):
        assert secret not in shown
    billing = build_billing(s)
    assert isinstance(billing, ZuoraBilling) and billing.name == "zuora"
    billing.close()


def test_zuora_without_its_client_is_a_one_line_settings_error() -> None:
    with pytest.raises(SettingsError) as err:
        build_billing(Settings.from_env({"REVBRIDGE_BILLING": "zuora"}))
    assert "ZUORA_CLIENT_ID" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SettingsError) as missing:
        Settings.from_env({"ZUORA_CLIENT_ID": "only-the-id"})
    assert "zuora.client_secret" in str(missing.value) and "only-the-id" not in str(missing.value)
