"""``revbridge link [--since DATE] [--dry-run]``: link won deals that predate RevBridge to the
subscriptions their customers already pay for — creating nothing.

Issue 13, harm 2: a deal won before go-live is billed already. Quote-to-cash never provisions it
(``REVBRIDGE_GO_LIVE``), so its CRM record would stay without a billing link; this backfill writes
that link (the same fields quote-to-cash writes: customer and subscription IDs, MRR, status) where
exactly one live subscription of the customer matches the deal's products
(``policies/products.yaml``). Anything less certain — no customer, no match, several matches — is
reported and left for a person. ``--dry-run`` reads and reports only.

The customer is the one the CRM account or billing links to the account, else the single billing
customer with the deal's contact email. The writes are field sets: running it twice links once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from activities.policy import DEFAULT_POLICY_DIR
from activities.quote import ENDED, PRODUCTS_FILE
from cli.config import CliError, StackConfig
from connectors.base import BillingPlatform, ConnectorError, CrmSystem, NotFound
from connectors.registry import build_billing, build_crm
from domain.quote import ProductMapping
from domain.records import BillingLink, Opportunity
from domain.settings import Settings

#: how far back ``link`` looks by default (deals closed-won and modified since)
DEFAULT_SINCE_DAYS = 3650


@dataclass(frozen=True)
class LinkPlan:
    opportunity_id: str
    #: link | linked already | no customer | no match | ambiguous | after go-live
    verdict: str
    detail: str = ""
    account_id: str | None = None
    customer_id: str | None = None
    subscription_id: str | None = None
    mrr: int = 0
    currency: str = "USD"
    status: str = ""

    def link(self, billing: str) -> BillingLink:
        assert self.account_id is not None and self.verdict == "link"
        return BillingLink(
            account_id=self.account_id,
            opportunity_id=self.opportunity_id,
            billing=billing,
            customer_id=self.customer_id,
            subscription_id=self.subscription_id,
            mrr=self.mrr,
            currency=self.currency,
            status=f"{self.status} (linked by revbridge link)"[:250],
        )


def plan_links(
    billing: BillingPlatform,
    crm: CrmSystem,
    mapping: ProductMapping,
    since: datetime,
    go_live: date | None = None,
    limit: int = 2000,
) -> list[LinkPlan]:
    """What ``link`` would do for each won deal modified since ``since``. Reads only."""
    return [
        _plan(billing, crm, mapping, crm.get_opportunity(opp_id), go_live)
        for opp_id in crm.won_opportunities(since, limit)
    ]


def _plan(
    billing: BillingPlatform,
    crm: CrmSystem,
    mapping: ProductMapping,
    opp: Opportunity,
    go_live: date | None,
) -> LinkPlan:
    if opp.billing_subscription_id:
        return LinkPlan(opp.id, "linked already", opp.billing_subscription_id)
    if go_live and opp.close_date and opp.close_date >= go_live:
        return LinkPlan(opp.id, "after go-live", "quote-to-cash provisions it")
    account = opp.account
    if account is None:
        return LinkPlan(opp.id, "no customer", "the deal has no account")
    customer = _customer(billing, crm, opp)
    if customer is None:
        return LinkPlan(opp.id, "no customer", "no billing customer is linked or has the email")
    prices = set()
    for line in opp.lines:
        ref = mapping.price_for(line.product_code, billing.name)
        if ref:
            prices.add(ref)
            with contextlib.suppress(NotFound):  # a lookup key names a price ID
                prices.add(billing.get_price(ref).id)
    live = [
        s
        for s in billing.customer_snapshot(customer, invoices=1).subscriptions
        if s.plan in prices and s.status.lower() not in ENDED
    ]
    base = {"account_id": account.id, "customer_id": customer}
    if not live:
        return LinkPlan(opp.id, "no match", "no live subscription for the deal's products", **base)
    if len(live) > 1:
        ids = ", ".join(s.id for s in live)
        return LinkPlan(opp.id, "ambiguous", f"several live subscriptions: {ids}", **base)
    sub = live[0]
    return LinkPlan(
        opp.id,
        "link",
        f"{sub.quantity} × {sub.plan}",
        subscription_id=sub.id,
        mrr=sub.mrr,
        currency=sub.currency,
        status=sub.status,
        **base,
    )


def _customer(billing: BillingPlatform, crm: CrmSystem, opp: Opportunity) -> str | None:
    account = opp.account
    assert account is not None
    if account.billing_customer_id and account.billing_platform in (None, billing.name):
        return account.billing_customer_id
    linked = billing.find_customer_by_crm(crm.name, account.id)
    if linked is not None:
        return linked.id
    email = next((c.email for c in opp.contacts if c.email), None)
    if email:
        exact = [c for c in billing.find_customers(email, None) if c.email == email]
        if len(exact) == 1:
            return exact[0].id
    return None


def run_link(
    billing: BillingPlatform,
    crm: CrmSystem,
    mapping: ProductMapping,
    since: datetime,
    *,
    dry_run: bool,
    go_live: date | None = None,
) -> list[LinkPlan]:
    """Plan, then (unless ``dry_run``) write each ``link`` verdict's fields to the CRM."""
    plans = plan_links(billing, crm, mapping, since, go_live)
    if not dry_run:
        for p in plans:
            if p.verdict == "link":
                crm.write_billing_link(p.link(billing.name))
    return plans


def render(plans: list[LinkPlan], dry_run: bool) -> str:
    done = "would link" if dry_run else "linked"
    lines = [
        f"{p.opportunity_id}: "
        + (
            f"{done} customer {p.customer_id} subscription {p.subscription_id} ({p.detail})"
            if p.verdict == "link"
            else f"{p.verdict} — {p.detail}"
        )
        for p in plans
    ]
    count = sum(p.verdict == "link" for p in plans)
    lines.append(f"{len(plans)} won deal(s); {count} {done}; nothing created.")
    return "\n".join(lines)


def cmd_link(args: argparse.Namespace) -> None:
    from cli.services import apply_stack_defaults

    apply_stack_defaults(StackConfig.load(args.config) if args.config else None)
    settings = Settings.from_env(os.environ)
    policies = Path(settings.policy_dir) if settings.policy_dir else DEFAULT_POLICY_DIR
    try:
        mapping = ProductMapping.parse((policies / PRODUCTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CliError(f"{policies / PRODUCTS_FILE}: {exc}") from exc
    since = (
        datetime.combine(args.since, datetime.min.time(), UTC)
        if args.since
        else datetime.now(UTC) - timedelta(days=DEFAULT_SINCE_DAYS)
    )
    try:
        plans = run_link(
            build_billing(settings),
            build_crm(settings),
            mapping,
            since,
            dry_run=args.dry_run,
            go_live=settings.go_live,
        )
    except ConnectorError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps([asdict(p) for p in plans], indent=2))
    else:
        print(render(plans, args.dry_run))


def add_link_command(add: Callable[..., argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Wire ``link`` into ``cli.main.parser()``: call with its local ``add`` helper."""
    sp = add(
        "link",
        cmd_link,
        "link won deals that predate RevBridge to their existing subscriptions (creates nothing)",
        False,
    )
    sp.add_argument(
        "--since",
        type=date.fromisoformat,
        default=None,
        help=f"won deals modified since YYYY-MM-DD (default: {DEFAULT_SINCE_DAYS} days back)",
    )
    sp.add_argument("--dry-run", action="store_true", help="report what would be linked only")
    sp.add_argument("--json", action="store_true", help="print JSON")
    return sp
