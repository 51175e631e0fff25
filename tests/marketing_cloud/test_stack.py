"""The local stack's optional channels (cli/channels.py): asked for by the environment or by the
stack file, every piece agrees on the sandboxes and the services are pointed at them."""

from __future__ import annotations

import revbridge_data
from cli.channels import channel_emulators, channel_env, stack_env, wanted, with_channels
from cli.config import StackConfig
from connectors.marketing_cloud import MarketingCloudMailer
from connectors.registry import build_desk, build_mailer
from domain.settings import Settings
from sandbox.marketing_cloud import MarketingCloudEmulator
from sandbox.zendesk import ZendeskEmulator


def _cfg() -> StackConfig:
    return StackConfig.load(revbridge_data.default_config())


def test_nothing_optional_by_default() -> None:
    cfg = _cfg()
    assert wanted(cfg, {}) == [] and with_channels(cfg, {}) is cfg
    assert channel_env(cfg, {}) == {}
    assert Settings.from_env(stack_env(cfg, {})).email_channel == "smtp"


def test_the_environment_turns_the_channels_on_for_every_piece() -> None:
    env = {"REVBRIDGE_EMAIL_CHANNEL": "marketing-cloud", "REVBRIDGE_DESK": "zendesk"}
    cfg = with_channels(_cfg(), env)
    assert cfg.sandbox.ports["marketing_cloud"] == 8712 and cfg.sandbox.ports["zendesk"] == 8713
    settings = Settings.from_env(stack_env(cfg, env))
    assert settings.email_channel == "marketing-cloud" and settings.desk == "zendesk"
    assert settings.marketing_cloud is not None
    assert settings.marketing_cloud.auth_url == "http://127.0.0.1:8712/"
    mailer = build_mailer(settings)
    assert isinstance(mailer, MarketingCloudMailer)
    mailer.close()
    assert build_desk(settings) is not None
    assert settings.webhooks.zendesk_secrets  # the sandbox signs its webhooks with it


def test_a_port_in_the_stack_file_turns_a_channel_on_and_the_environment_still_wins() -> None:
    base = _cfg()
    sb = base.sandbox.model_copy(update={"ports": {**base.sandbox.ports, "marketing_cloud": 9912}})
    cfg = base.model_copy(update={"sandbox": sb})
    assert wanted(cfg, {}) == ["marketing_cloud"]
    env = {"MARKETING_CLOUD_DEFINITION_KEY": "ours"}
    settings = Settings.from_env(stack_env(cfg, env))
    assert settings.marketing_cloud is not None
    assert settings.marketing_cloud.auth_url == "http://127.0.0.1:9912/"
    assert settings.marketing_cloud.definition_key == "ours"


def test_the_sandbox_process_builds_the_emulators_on_their_ports(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("REVBRIDGE_EMAIL_CHANNEL", "marketing-cloud")
    monkeypatch.setenv("REVBRIDGE_DESK", "zendesk")
    built = channel_emulators(_cfg(), id_base=10**10)
    kinds = {type(em): port for em, port in built.items()}
    assert kinds == {MarketingCloudEmulator: 8712, ZendeskEmulator: 8713}
    zd = next(em for em in built if isinstance(em, ZendeskEmulator))
    assert [t.url for t in zd.webhook_targets] == ["http://127.0.0.1:8700/webhooks/zendesk"]
    mc = next(em for em in built if isinstance(em, MarketingCloudEmulator))
    assert "revbridge-dunning" in mc.definitions  # the definition the connector sends through
