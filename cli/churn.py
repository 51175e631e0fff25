"""``revbridge churn score <customer_id>``: a customer's churn risk now, with its reasons.

Scores from live billing and CRM data with the same code the workflow's activity runs (and the
weights in ``policies/churn.yaml``), so what the CLI shows is what the next rescore would write.
Read-only: nothing is written anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from activities.churn import DEFAULT_CHURN_CONFIG, ChurnActivities, CustomerScore
from cli.config import CliError, StackConfig
from connectors.base import ConnectorError, NotFound
from connectors.registry import build_billing, build_crm
from domain import churn
from domain.settings import Settings


def score_of(settings: Settings, customer_id: str, config: Path | None = None) -> CustomerScore:
    billing, crm = build_billing(settings), build_crm(settings)
    # the worker's own policies when it points elsewhere (REVBRIDGE_POLICY_DIR, `revbridge init`)
    own = Path(settings.policy_dir) / "churn.yaml" if settings.policy_dir else None
    activities = ChurnActivities(billing, crm, config or own or DEFAULT_CHURN_CONFIG)
    try:
        return activities.score_now(customer_id, datetime.now(UTC))
    except NotFound as exc:
        raise CliError(f"{settings.billing} has no customer {customer_id!r}") from exc
    except ConnectorError as exc:
        raise CliError(str(exc)) from exc


def render(customer_id: str, billing: str, scored: CustomerScore) -> str:
    r, s = scored.result, scored.signals
    lines = [
        f"{customer_id} ({billing}): churn risk {r.score}/100 — {r.level.value}",
        *(f"  {i}. {reason}" for i, reason in enumerate(r.reasons, 1)),
    ]
    if not r.reasons:
        lines.append("  no risk factor present")
    config = scored.config
    if r.score >= config.offer_threshold:
        lines.append("  → at or above the offer threshold: CSM task and a retention offer")
    elif r.score >= config.task_threshold:
        lines.append("  → at or above the task threshold: CSM task, followed for outcome")
    lines.append(
        f"  MRR {s.mrr / 100:,.2f} {scored.currency}; "
        f"CRM account: {scored.account.id if scored.account else 'none linked'}"
    )
    lines.append("  " + churn.narrative(r, s))
    return "\n".join(lines)


def show_score(settings: Settings, customer_id: str, as_json: bool = False) -> str:
    """The text ``revbridge churn score`` prints (or its JSON)."""
    scored = score_of(settings, customer_id)
    if as_json:
        return json.dumps(
            {
                "customer_id": customer_id,
                "billing": settings.billing,
                "score": scored.result.score,
                "level": scored.result.level.value,
                "reasons": scored.result.reasons,
                "contributions": {f.value: p for f, p in scored.result.contributions.items()},
                "account_id": scored.account.id if scored.account else None,
            },
            indent=2,
        )
    return render(customer_id, settings.billing, scored)


def cmd_churn(args: argparse.Namespace) -> None:
    from cli.services import apply_stack_defaults

    apply_stack_defaults(StackConfig.load(args.config) if args.config else None)
    settings = Settings.from_env(os.environ)
    print(show_score(settings, args.customer_id, as_json=args.json))


def add_churn_command(add: Callable[..., argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Wire ``churn score`` into ``cli.main.parser()``: call with its local ``add`` helper."""
    sp = add("churn", cmd_churn, "churn risk: show a customer's score and reasons", False)
    sub = sp.add_subparsers(dest="churn_command", required=True)
    score = sub.add_parser("score", help="a customer's churn risk now, with its top reasons")
    score.add_argument("customer_id", help="the billing customer ID")
    score.add_argument("--json", action="store_true", help="print JSON")
    return sp
