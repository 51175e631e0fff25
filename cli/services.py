"""``revbridge worker | webhooks | sandbox``: each piece alone, against configured endpoints.

With ``--config`` the local stack's endpoints are defaults (the environment still wins); without
it, everything comes from the environment, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

import uvicorn

from cli.config import StackConfig
from domain.settings import Settings
from domain.temporal import SEARCH_ATTRIBUTES
from infra import startup
from infra.startup import StartupError

#: the local mail relay's login (the sandbox's own, like its other local secrets) and where the
#: sandbox leaves the certificate its STARTTLS presents, for the mailer to verify it against
RELAY_USER, RELAY_PASSWORD = "revbridge", "relay-local-password"  # noqa: S105
RELAY_CA_FILE = Path(".revbridge") / "mail-relay-ca.pem"


def relay_env(cfg: StackConfig) -> dict[str, str]:
    """The local relay used as production relays are: STARTTLS with a verified certificate, then
    AUTH (what ``revbridge doctor`` checks)."""
    return {
        "SMTP_STARTTLS": "true",
        "SMTP_USERNAME": RELAY_USER,
        "SMTP_PASSWORD": RELAY_PASSWORD,
        "SMTP_CA_FILE": str((cfg.root / RELAY_CA_FILE).resolve()),
    }


def apply_stack_defaults(cfg: StackConfig | None) -> None:
    if cfg is not None:
        sb = cfg.sandbox
        # the relay's login and CA only for the stack's own relay, never another SMTP_HOST's
        local_relay = os.environ.get("SMTP_HOST", sb.host) == sb.host and os.environ.get(
            "SMTP_PORT", str(sb.smtp_port)
        ) == str(sb.smtp_port)
        for key, value in cfg.service_env().items():
            os.environ.setdefault(key, value)
        if local_relay:
            for key, value in relay_env(cfg).items():
                os.environ.setdefault(key, value)
        from cli.channels import channel_env

        for key, value in channel_env(cfg).items():
            os.environ.setdefault(key, value)
        from cli.revenue import erp_env  # NetSuite (REVBRIDGE_ERP=netsuite): revenue postings

        for key, value in erp_env(cfg).items():
            os.environ.setdefault(key, value)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def run_worker(cfg: StackConfig | None) -> None:
    apply_stack_defaults(cfg)
    try:  # a bad key or namespace is reported before the heavy imports below
        asyncio.run(startup.preflight(SEARCH_ATTRIBUTES))
    except StartupError as exc:
        _exit_now("worker", exc)

    from infra import telemetry
    from workers import main as worker_main

    telemetry.configure_logging()
    settings = Settings.from_env(os.environ)

    async def go() -> None:
        await worker_main.run(settings, stop=_stop_on_signals())
        # Let the SDK's clients and their background threads go while the loop still runs: a
        # SIGTERM'd worker in the container otherwise crashed (139) in about one exit of three
        # during interpreter shutdown (0 of 6 with this).
        gc.collect()
        await asyncio.sleep(0.1)

    try:
        asyncio.run(go())
    except StartupError as exc:  # a permanent Temporal error, or the configured wait ran out
        _exit_now("worker", exc)


def run_webhooks(cfg: StackConfig | None, host: str | None, port: int | None) -> None:
    from infra import telemetry
    from webhooks.app import TemporalConnection, create_app

    apply_stack_defaults(cfg)
    telemetry.configure_logging()
    from connectors import quiet_vendor_loggers  # its HubSpot/Recurly lookups: no customer data

    quiet_vendor_loggers()
    settings = Settings.from_env(os.environ)
    telemetry.setup_tracing(telemetry.SERVICE_WEBHOOKS, settings)
    connection = TemporalConnection()
    app = create_app(settings, client=connection)
    host = host or (cfg.webhooks.host if cfg else "127.0.0.1")
    port = port or (cfg.webhooks.port if cfg else 8700)
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    )

    async def go() -> None:
        """Serve at once (liveness up, readiness and webhooks 503 + Retry-After) while the start-up
        wait connects to Temporal; a permanent Temporal error stops the service (infra/startup.py)."""
        connection.waiting = True
        waiting = asyncio.create_task(
            startup.connect_temporal(
                wait_limit_s=startup.wait_limit_from_env(),
                search_attributes=SEARCH_ATTRIBUTES,
                interceptors=telemetry.temporal_interceptors(),
            )
        )
        serving = asyncio.create_task(server.serve())
        done, _ = await asyncio.wait({waiting, serving}, return_when=asyncio.FIRST_COMPLETED)
        if waiting in done:
            failed = waiting.exception()
            if failed is not None:
                server.should_exit = True
                await serving
                raise failed
            connection.attach(waiting.result())  # type: ignore[arg-type]
            await serving
        else:  # stopped (SIGTERM/SIGINT) while still waiting
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError, StartupError):
                await waiting

    try:
        asyncio.run(go())
    except StartupError as exc:
        _exit_now("webhooks", exc)


def _exit_now(command: str, exc: StartupError) -> NoReturn:
    """One line and exit status 2, as cli/main.py does for a CliError, but without interpreter
    finalization: the Temporal runtime's threads can still be unwinding a failed connect, and
    Python aborts ("PyGILState_Release … finalizing") about one time in three when they race it."""
    print(f"revbridge {command}: {exc}", file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(2)


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
        # a live Enterprise site's 3,500 requests a minute (billing-apis.md §2f), as in the tests
        # and the bench: the demo seeds, declines and reads through one site, and a test site's
        # 150/min throttled its own seeding (the 150/min profile has tests of its own)
        ChargebeeEmulator(
            api_key=sb.chargebee.api_key or "test_chargebee_key",
            rate_limit_per_minute=3_500,
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
        from sandbox.zuora.scenarios import catalog

        hook = wh.zuora
        zuora = ZuoraEmulator(
            client_id=sb.zuora.client_id or "revbridge-zuora-local",
            client_secret=sb.zuora.client_secret or "zuora-local-secret",
            webhook_targets=[
                WebhookTarget(
                    url=f"{wh.url}/webhooks/zuora",
                    basic_auth=(hook.username, hook.password) if hook else None,
                )
            ],
        )
        # the tenant's catalog (the discount and courtesy-credit rate plans RevBridge uses, the
        # products the demos quote), as a configured tenant has it; seeding again adds nothing
        zuora.seed({"products": catalog()})
        emulators[zuora] = sb.ports["zuora"]

    if "recurly" in sb.ports:
        from sandbox.recurly import RecurlyEmulator

        emulators[
            RecurlyEmulator(
                api_key=sb.recurly.api_key or "recurly_test_key",
                webhook_secrets=[sb.recurly.webhook_secret or "recurly_webhook_secret"],
                webhook_targets=[WebhookTarget(url=f"{wh.url}/webhooks/recurly")],
            )
        ] = sb.ports["recurly"]
    from cli.channels import channel_emulators  # Marketing Cloud, Zendesk: when configured

    emulators.update(channel_emulators(cfg, id_base))
    from cli.revenue import erp_emulators  # NetSuite, when the stack configures an ERP

    emulators.update(erp_emulators(cfg))
    mailbox = MailboxEmulator(username=RELAY_USER, password=RELAY_PASSWORD)  # STARTTLS + AUTH
    emulators[mailbox] = sb.ports.get("mailbox", 8705)  # type: ignore[index]
    mailbox.start_smtp(sb.host, sb.smtp_port)
    if mailbox.cert_file:  # this start's certificate, where the stack's mailer looks for it
        ca_file = Path(relay_env(cfg)["SMTP_CA_FILE"])
        ca_file.parent.mkdir(parents=True, exist_ok=True)
        ca_file.write_bytes(Path(mailbox.cert_file).read_bytes())

    async def go() -> None:
        try:
            await serve_forever(emulators, _stop_on_signals(), host=sb.host)
        finally:
            mailbox.stop_smtp()

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(go())
