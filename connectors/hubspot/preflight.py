"""What a portal must have for RevBridge (``revbridge doctor``): the private app's scopes and every
property RevBridge reads or writes, of the right type and unique where idempotency depends on
it. ``revbridge setup crm`` creates what is missing (connectors/hubspot_setup.py)."""

from __future__ import annotations

from typing import Any

import requests

from connectors import limits
from connectors.base import ConnectorError
from connectors.hubspot.client import HubSpotClient
from connectors.hubspot.values import KEY_PROPERTY, VENDOR
from domain.preflight import Check, CheckStatus

#: OAuth scopes the private app needs, with what each is for (``revbridge doctor``)
REQUIRED_SCOPES: dict[str, str] = {
    "crm.objects.companies.read": "find accounts and their billing link",
    "crm.objects.companies.write": "write billing links and churn scores",
    "crm.objects.deals.read": "read won deals for quote-to-cash",
    "crm.objects.deals.write": "write subscription links on deals",
    "crm.objects.contacts.read": "read deal contacts",
    "crm.objects.line_items.read": "read deal line items",
    "crm.objects.products.read": "read product list prices",
    "crm.schemas.companies.read": "check company properties (doctor)",
    "crm.schemas.deals.read": "check deal properties (doctor)",
    "tickets": "open and read cases (tickets), notes and tasks",
}
#: (object type, property, type, unique) — what RevBridge reads and writes on a portal; the
#: sandbox's catalog (sandbox/hubspot/catalog.py) creates exactly these
REQUIRED_PROPERTIES: tuple[tuple[str, str, str, bool], ...] = (
    ("companies", "billing_customer_id", "string", True),
    ("companies", "billing_platform", "string", False),
    ("companies", "billing_subscription_id", "string", False),
    ("companies", "mrr", "number", False),
    ("companies", "customer_tier", "string", False),
    ("companies", "billing_status", "string", False),
    ("companies", "churn_risk", "string", False),
    ("companies", "churn_level", "enumeration", False),
    ("companies", "churn_reasons", "string", False),
    ("companies", "churn_narrative", "string", False),
    ("companies", "churn_scored_at", "datetime", False),
    ("deals", "term_months", "number", False),
    ("deals", "payment_terms", "enumeration", False),
    ("deals", "start_date", "date", False),
    ("deals", "billing_subscription_id", "string", False),
    ("deals", "billing_status", "string", False),
    ("deals", "mrr", "number", False),
    ("tickets", KEY_PROPERTY, "string", True),
)


class Preflight(HubSpotClient):
    """``revbridge doctor``: the token, its scopes and the properties RevBridge needs."""

    def preflight(self) -> list[Check]:
        """What this portal lacks for RevBridge, one :class:`Check` each: the token and its
        scopes (HubSpot's private-app token introspection), then every property RevBridge reads
        or writes — present, of the right type, and unique where idempotency depends on it."""
        checks = [*self._scope_checks()]
        by_type: dict[str, list[tuple[str, str, bool]]] = {}
        for otype, name, kind, unique in REQUIRED_PROPERTIES:
            by_type.setdefault(otype, []).append((name, kind, unique))
        for otype, wanted in by_type.items():
            try:
                page = self._call(self._properties.get_all, otype, what=f"{otype} properties")
            except ConnectorError as exc:
                checks.append(
                    Check(
                        system=VENDOR,
                        name=f"properties:{otype}",
                        status=CheckStatus.FAIL,
                        detail=f"could not list {otype} properties ({exc.status or exc.kind})",
                        fix=f"grant the private app crm.schemas.{otype}.read",
                    )
                )
                continue
            have = {p.name: p for p in page.results or [] if not getattr(p, "archived", False)}
            checks += [_property_check(otype, n, k, u, have.get(n)) for n, k, u in wanted]
        return checks

    def _scope_checks(self) -> list[Check]:
        token = self._settings.access_token.get_secret_value()
        base = (self._settings.api_url or "https://api.hubapi.com").rstrip("/")
        try:
            limits.pace(VENDOR)
            resp = requests.post(
                base + "/oauth/v2/private-apps/get/access-token-info",
                json={"tokenKey": token},
                timeout=self._timeout_s,
            )
        except requests.RequestException as exc:
            return [
                _token_check(
                    CheckStatus.FAIL,
                    f"HubSpot unreachable ({type(exc).__name__})",
                    "check HUBSPOT_API_URL and the network path to HubSpot",
                )
            ]
        if resp.status_code in (400, 401, 403, 404):
            return [
                _token_check(
                    CheckStatus.FAIL,
                    f"HubSpot does not recognise the access token ({resp.status_code})",
                    "set HUBSPOT_ACCESS_TOKEN to the private app's current access token",
                )
            ]
        if resp.status_code != 200:
            return [
                _token_check(
                    CheckStatus.SKIP, f"token introspection answered {resp.status_code}; try again"
                )
            ]
        info = resp.json()
        granted = set(info.get("scopes") or [])
        checks = [
            _token_check(
                CheckStatus.OK, f"private app {info.get('appId')} on portal {info.get('hubId')}"
            )
        ]
        for scope, why in REQUIRED_SCOPES.items():
            ok = scope in granted
            checks.append(
                Check(
                    system=VENDOR,
                    name=f"scope:{scope}",
                    status=CheckStatus.OK if ok else CheckStatus.FAIL,
                    detail=why if ok else f"missing: needed to {why}",
                    fix=""
                    if ok
                    else f"add the {scope} scope to the private app "
                    "(Settings > Integrations > Private apps > Scopes)",
                )
            )
        return checks


def _property_check(otype: str, name: str, kind: str, unique: bool, found: Any) -> Check:
    label = f"property:{otype}.{name}"
    spec = f"{name} ({kind}{', unique values' if unique else ''}) on {otype}"
    if found is None:
        return Check(
            system=VENDOR,
            name=label,
            status=CheckStatus.FAIL,
            detail="missing",
            fix=f"create property {spec}",
        )
    if found.type != kind:
        return Check(
            system=VENDOR,
            name=label,
            status=CheckStatus.FAIL,
            detail=f"is {found.type}, RevBridge writes {kind}",
            fix=f"archive {name} on {otype} and create property {spec}",
        )
    if unique and not found.has_unique_value:
        return Check(
            system=VENDOR,
            name=label,
            status=CheckStatus.FAIL,
            detail="does not require unique values (a retried write could duplicate a record)",
            fix=f"create property {spec} (uniqueness cannot be added to an existing property)",
        )
    return Check(system=VENDOR, name=label, status=CheckStatus.OK, detail=kind)


def _token_check(status: CheckStatus, detail: str, fix: str = "") -> Check:
    """The access token's finding (``revbridge doctor``'s ``hubspot token`` line)."""
    return Check(system=VENDOR, name="token", status=status, detail=detail, fix=fix)
