"""``revbridge setup temporal [--dry-run]`` (infra/temporal_setup.py does the work), and the same
setup for the local stack that ``revbridge dev`` and ``revbridge demo`` start."""

from __future__ import annotations

import argparse

from cli.config import CliError, StackConfig
from infra.temporal_setup import SetupError, Target, report, setup


async def run(args: argparse.Namespace) -> None:
    target = Target.from_env()
    try:
        p, applied = await setup(target, dry_run=args.dry_run)
    except SetupError as exc:
        raise CliError(str(exc)) from None
    for line in report(p, applied, args.dry_run):
        print(line)


async def ensure_stack_temporal(cfg: StackConfig) -> list[str]:
    """The local dev server, set up like any cluster: RevBridge's search attributes and a
    retention that outlives the vendors' redelivery windows. Returns the changes made."""
    t = cfg.temporal
    # the stack's own server, whatever TEMPORAL_* the shell has
    target = Target(
        t.address,
        t.namespace,
        "local dev server",
        {"target_host": t.address, "namespace": t.namespace},
    )
    try:
        _, applied = await setup(target)
    except SetupError as exc:
        raise CliError(str(exc)) from None
    return applied
