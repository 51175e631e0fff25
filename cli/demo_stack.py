"""What every demo scenario shares: progress output, and running a scenario (written against any
deployment, as the tests run it on a pair) on the local stack."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client

from cli.config import StackConfig
from connectors.registry import build_billing, build_crm
from domain.settings import Settings
from infra.codec import data_converter


class Out:
    """Progress for people; with --json progress goes to stderr and stdout carries only JSON."""

    def __init__(self, as_json: bool) -> None:
        self.stream = sys.stderr if as_json else sys.stdout

    def __call__(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


async def run_on_stack(
    cfg: StackConfig, say: Out, run_scenario: Callable[..., Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Run a scenario written against any deployment (``run_scenario(settings, billing, crm,
    client, say, ui_url=, suffix=)``, which the tests call with a pair's) on the local stack."""
    from cli.channels import stack_env
    from cli.revenue import erp_env  # NetSuite, when the stack configures an ERP

    settings = Settings.from_env({**stack_env(cfg), **erp_env(cfg)})
    client = await Client.connect(
        cfg.temporal.address,
        namespace=cfg.temporal.namespace,
        data_converter=data_converter(),
    )
    return await run_scenario(
        settings,
        build_billing(settings),
        build_crm(settings),
        client,
        say,
        ui_url=cfg.ui_url(),
        suffix=datetime.now(UTC).strftime("%m%d%H%M%S"),
    )
