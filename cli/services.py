"""``revbridge worker | webhooks | sandbox``: each piece alone, against configured endpoints.

With ``--config`` the local stack's endpoints are defaults (the environment still wins); without
it, everything comes from the environment, as in production.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import uvicorn

from cli.config import StackConfig
from domain.settings import Settings


def apply_stack_defaults(cfg: StackConfig | None) -> None:
    if cfg is not None:
        for key, value in cfg.service_env().items():
            os.environ.setdefault(key, value)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def run_worker(cfg: StackConfig | None) -> None:
    from infra import telemetry
    from workers import main as worker_main

    apply_stack_defaults(cfg)
    telemetry.configure_logging()
    settings = Settings.from_env(os.environ)

    async def go() -> None:
        await worker_main.run(settings, stop=_stop_on_signals())

    asyncio.run(go())


def run_webhooks(cfg: StackConfig | None, host: str | None, port: int | None) -> None:
    from infra import telemetry
    from webhooks.app import create_app

    apply_stack_defaults(cfg)
    telemetry.configure_logging()
    settings = Settings.from_env(os.environ)
    telemetry.setup_tracing(telemetry.SERVICE_WEBHOOKS, settings)
    app = create_app(settings)
    host = host or (cfg.webhooks.host if cfg else "127.0.0.1")
    port = port or (cfg.webhooks.port if cfg else 8700)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def run_sandbox(cfg: StackConfig) -> None:
    from sandbox.chargebee import ChargebeeEmulator
    from sandbox.framework import WebhookTarget, serve_forever
    from sandbox.hubspot import HubSpotEmulator
    from sandbox.mailbox import MailboxEmulator
    from sandbox.salesforce import SalesforceEmulator
    from sandbox.stripe import StripeEmulator

    sb, wh = cfg.sandbox, cfg.webhooks
    # The dev server keeps one-shot workflow IDs (case:…, q2c:…) across stack restarts, while the
    # CRM emulators start empty: start their record IDs where no earlier run's can be.
    id_base = int(time.time()) * 10
    emulators = {
        ChargebeeEmulator(
            api_key=sb.chargebee.api_key or "test_chargebee_key",
            webhook_targets=[
                WebhookTarget(
                    url=f"{wh.url}/webhooks/chargebee",
                    basic_auth=(wh.chargebee.username, wh.chargebee.password),
                )
            ],
        ): sb.ports["chargebee"],
        SalesforceEmulator(
            client_id=sb.salesforce.client_id or "revbridge-local",
            client_secret=sb.salesforce.client_secret or "local-secret",
            id_base=id_base,
            webhook_targets=[
                WebhookTarget(
                    url=f"{wh.url}/webhooks/salesforce",
                    headers={"X-RevBridge-Webhook-Secret": sb.salesforce.webhook_secret or ""},
                )
            ],
        ): sb.ports["salesforce"],
        StripeEmulator(
            api_key=sb.stripe.api_key or "sk_test_revbridge_local",
            webhook_secret=sb.stripe.webhook_secret or "whsec_revbridge_local",
            webhook_targets=[WebhookTarget(url=f"{wh.url}/webhooks/stripe")],
        ): sb.ports["stripe"],
        HubSpotEmulator(
            access_token=sb.hubspot.access_token or "pat-local-revbridge",
            client_secret=sb.hubspot.client_secret or "hubspot-local-secret",
            id_base=id_base,
            webhook_targets=[WebhookTarget(url=f"{wh.url}/webhooks/hubspot")],
        ): sb.ports["hubspot"],
    }

    if "zuora" in sb.ports:
        from sandbox.zuora import ZuoraEmulator

        hook = wh.zuora
        emulators[
            ZuoraEmulator(
                client_id=sb.zuora.client_id or "revbridge-zuora-local",
                client_secret=sb.zuora.client_secret or "zuora-local-secret",
                webhook_targets=[
                    WebhookTarget(
                        url=f"{wh.url}/webhooks/zuora",
                        basic_auth=(hook.username, hook.password) if hook else None,
                    )
                ],
            )
        ] = sb.ports["zuora"]

    if "recurly" in sb.ports:
        from sandbox.recurly import RecurlyEmulator

        emulators[
            RecurlyEmulator(
                api_key=sb.recurly.api_key or "recurly_test_key",
                webhook_secrets=[sb.recurly.webhook_secret or "recurly_webhook_secret"],
                webhook_targets=[WebhookTarget(url=f"{wh.url}/webhooks/recurly")],
            )
        ] = sb.ports["recurly"]
    mailbox = MailboxEmulator()
    emulators[mailbox] = sb.ports.get("mailbox", 8705)  # type: ignore[index]
    mailbox.start_smtp(sb.host, sb.smtp_port)

    async def go() -> None:
        try:
            await serve_forever(emulators, _stop_on_signals(), host=sb.host)
        finally:
            mailbox.stop_smtp()

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(go())
