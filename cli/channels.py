"""The local stack's optional channels (issue 22): Marketing Cloud as the email channel and
Zendesk as the support desk, each with its sandbox.

A channel is on when the stack file lists its sandbox port (``sandbox.ports.marketing_cloud`` /
``sandbox.ports.zendesk``) or the environment asks for it (``REVBRIDGE_EMAIL_CHANNEL=
marketing-cloud`` / ``REVBRIDGE_DESK=zendesk``, which ``revbridge demo --channel`` / ``--desk``
set). Every piece of the stack applies the same rule (the worker, the webhook service and the
sandbox inherit the environment and read the same stack file), so they agree on which sandboxes
run and where: :func:`with_channels` adds the ports to the config, :func:`channel_env` points the
services at the sandboxes (the environment still wins), :func:`channel_emulators` builds them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from cli.config import StackConfig

MARKETING_CLOUD = "marketing_cloud"
ZENDESK = "zendesk"
#: the ports when the stack file names none
DEFAULT_PORTS = {MARKETING_CLOUD: 8712, ZENDESK: 8713}
# credentials of the local emulators only (not secrets: nothing real is behind them)
MC_CLIENT_ID, MC_CLIENT_SECRET, MC_ACCOUNT = "revbridge-mc-local", "mc-local-secret", "100012345"
ZD_AGENT, ZD_TOKEN, ZD_SECRET = "agent@revbridge.test", "zd-local-token", "zd-local-webhook-secret"


def wanted(cfg: StackConfig, env: Mapping[str, str] | None = None) -> list[str]:
    """The optional sandboxes this stack runs."""
    env = os.environ if env is None else env
    ports = cfg.sandbox.ports
    out = []
    if MARKETING_CLOUD in ports or env.get("REVBRIDGE_EMAIL_CHANNEL") == "marketing-cloud":
        out.append(MARKETING_CLOUD)
    if ZENDESK in ports or env.get("REVBRIDGE_DESK") == "zendesk":
        out.append(ZENDESK)
    return out


def with_channels(cfg: StackConfig, env: Mapping[str, str] | None = None) -> StackConfig:
    """``cfg`` with the port of every optional sandbox it runs (so health checks, waits and
    URLs cover them)."""
    extra = {n: DEFAULT_PORTS[n] for n in wanted(cfg, env) if n not in cfg.sandbox.ports}
    if not extra:
        return cfg
    sandbox = cfg.sandbox.model_copy(update={"ports": {**cfg.sandbox.ports, **extra}})
    return cfg.model_copy(update={"sandbox": sandbox})


def channel_env(cfg: StackConfig, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the services read to use the optional sandboxes (settings as production reads
    them: domain/settings.py)."""
    cfg = with_channels(cfg, env)
    sb = cfg.sandbox
    out: dict[str, str] = {}
    if MARKETING_CLOUD in wanted(cfg, env):
        out.update(
            REVBRIDGE_EMAIL_CHANNEL="marketing-cloud",
            MARKETING_CLOUD_AUTH_URL=sb.url(MARKETING_CLOUD) + "/",
            MARKETING_CLOUD_CLIENT_ID=MC_CLIENT_ID,
            MARKETING_CLOUD_CLIENT_SECRET=MC_CLIENT_SECRET,
            MARKETING_CLOUD_ACCOUNT_ID=MC_ACCOUNT,
        )
    if ZENDESK in wanted(cfg, env):
        out.update(
            REVBRIDGE_DESK="zendesk",
            ZENDESK_SUBDOMAIN="acme",
            ZENDESK_EMAIL=ZD_AGENT,
            ZENDESK_API_TOKEN=ZD_TOKEN,
            ZENDESK_API_URL=sb.url(ZENDESK),
            ZENDESK_WEBHOOK_SECRETS=ZD_SECRET,
        )
    return out


def stack_env(cfg: StackConfig, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The stack's service environment with the optional channels (the demo builds its own
    connectors from it, as the services do)."""
    env = os.environ if env is None else env
    return {**cfg.service_env(), **channel_env(cfg, env), **_set(env)}


def _set(env: Mapping[str, str]) -> dict[str, str]:
    """Channel settings already in the environment win over the stack's defaults."""
    prefixes = ("MARKETING_CLOUD_", "ZENDESK_", "REVBRIDGE_EMAIL_CHANNEL", "REVBRIDGE_DESK")
    return {k: v for k, v in env.items() if k.startswith(prefixes)}


def channel_emulators(cfg: StackConfig, id_base: int) -> dict[Any, int]:
    """The optional sandboxes (``revbridge sandbox``), each on its port."""
    cfg = with_channels(cfg)
    out: dict[Any, int] = {}
    names = wanted(cfg)
    if MARKETING_CLOUD in names:
        from sandbox.marketing_cloud import MarketingCloudEmulator

        out[MarketingCloudEmulator(MC_CLIENT_ID, MC_CLIENT_SECRET, account_id=MC_ACCOUNT)] = (
            cfg.sandbox.ports[MARKETING_CLOUD]
        )
    if ZENDESK in names:
        from sandbox.framework import WebhookTarget
        from sandbox.zendesk import ZendeskEmulator

        zd = ZendeskEmulator(
            agents={ZD_AGENT: ZD_TOKEN},
            signing_secret=ZD_SECRET,
            webhook_targets=[WebhookTarget(url=f"{cfg.webhooks.url}/webhooks/zendesk")],
        )
        # ticket IDs name the runs (case:zendesk:<id>), which the dev server keeps across
        # restarts: start where no earlier stack's can be (and apart from the CRM emulators' IDs,
        # which start at id_base too)
        zd._ids["ticket"] = id_base * 10
        out[zd] = cfg.sandbox.ports[ZENDESK]
    return out


# --- what the demo shows -----------------------------------------------------------------------


def mc_messages(cfg: StackConfig) -> list[dict[str, Any]]:
    """What the Marketing Cloud sandbox accepted (its inbox, as the mailbox's), oldest first."""
    import httpx

    try:
        resp = httpx.get(cfg.sandbox.url(MARKETING_CLOUD) + "/_sandbox/marketing_cloud/messages")
        return list(resp.json()["messages"])
    except (httpx.HTTPError, KeyError, ValueError):
        return []


def mc_ledger(cfg: StackConfig) -> list[str]:
    """The Marketing Cloud sandbox's ledger as lines: each call the worker made there."""
    import httpx

    try:
        rows = httpx.get(cfg.sandbox.url(MARKETING_CLOUD) + "/_sandbox/requests").json()
    except (httpx.HTTPError, ValueError):
        return []
    return [f"{r['method']} {r['path']} → {r['status']}" for r in rows.get("requests", [])]
