"""``revbridge setup crm [--dry-run]``: make the configured CRM ready for RevBridge.

It reads what the CRM has (Salesforce: one ``/composite`` of describes; HubSpot: the property
groups and properties of each object type), prints the plan — one line per field, object,
property group or property to create (``+``), and per thing only a person can do (``!``: grant
the integration user a permission, change a field an admin made) — then, unless ``--dry-run``,
creates what it can (Salesforce's Tooling API, HubSpot's properties API), idempotently: a
second run plans nothing. On Salesforce it also grants the integration user access to what
RevBridge uses (the API grants no field-level security by itself): the RevBridge_Integration
permission set, its object and field permissions and its assignment, listed in the plan too.
The use cases' own objects and properties are part of it (connectors/salesforce_fields.NEEDS,
cli/crm_use_cases.py). Last it runs the connector's ``preflight()`` (what ``revbridge
doctor`` prints for the CRM) and prints every line that is not OK.

Exit 0 when the CRM ends ready (``--dry-run``: when the plan was read); otherwise one line on
stderr (exit 2), e.g. the permission to grant. Same settings as the worker (``REVBRIDGE_CRM``
and the CRM's credentials, from the environment; ``--config`` adds the local stack's sandbox).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from cli.config import CliError
from connectors.base import ConnectorError
from connectors.setup_steps import SetupStep
from domain.preflight import CheckStatus
from domain.settings import Settings


def _functions(crm: str) -> tuple[Callable[[Any], list[SetupStep]], Callable[..., list[str]]]:
    if crm == "salesforce":
        from connectors.salesforce_setup import setup_apply, setup_plan
    elif crm == "hubspot":
        from connectors.hubspot_setup import setup_apply, setup_plan
    else:  # pragma: no cover - Settings refuses any other CRM
        raise CliError(f"setup crm does not know {crm!r}")
    return setup_plan, setup_apply


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> None:
    from connectors.registry import build_crm

    settings = Settings.from_env(os.environ)
    name = settings.crm
    plan_fn, apply_fn = _functions(name)
    crm = build_crm(settings)
    try:
        try:
            if name == "hubspot":  # the use cases' own properties too (cli/crm_use_cases.py)
                from cli.crm_use_cases import hubspot_properties

                steps = plan_fn(crm, hubspot_properties())
            else:
                steps = plan_fn(crm)
        except ConnectorError as exc:
            raise CliError(f"could not read {name}'s schema: {_text(exc)}") from None
        auto = [s for s in steps if s.automatic]
        manual = [s for s in steps if not s.automatic]
        for step in steps:
            out(step.line())
        summary = f"{len(auto)} to create, {len(manual)} by hand"
        if args.dry_run:
            out(f"{name}: plan: {summary if steps else 'nothing to do'} (dry run: nothing changed)")
            return
        if not steps:
            out(f"{name}: nothing to create")
        try:
            done = apply_fn(crm, steps)
        except ConnectorError as exc:
            raise CliError(f"{name} refused a change: {_text(exc)}") from None
        # created, fixed, granted or assigned: everything but what was there already
        created = sum(1 for line in done if not line.startswith("exists"))
        if auto:
            out(f"{name}: {created} created, {len(done) - created} there already")
        from cli.crm_use_cases import use_case_checks

        checks = crm.preflight() + use_case_checks(settings)
        problems = [c for c in checks if c.status is not CheckStatus.OK]
        for check in problems:
            out(check.line())
        failed = [c for c in problems if c.failed]
        if failed:
            first = failed[0]
            more = f" (and {len(failed) - 1} more above)" if len(failed) > 1 else ""
            raise CliError(
                f"{name} is not ready: {first.name}: {first.detail}"
                + (f"; fix: {first.fix}" if first.fix else "")
                + more
            )
        warned = f", {len(problems)} warn" if problems else ""
        out(f"{name}: ready ({len(checks) - len(problems)} checks OK{warned})")
    finally:
        close = getattr(crm, "close", None)
        if callable(close):
            close()


def _text(exc: ConnectorError) -> str:
    return str(exc).splitlines()[0][:300]
