"""What the use cases built on the CRM connectors add to a portal beyond the connector's own
:data:`~connectors.hubspot.REQUIRED_PROPERTIES`, for ``revbridge setup crm`` to create and
``revbridge doctor`` to check (cli may import every use case's connector; the CRM connector may
not import them back).

Salesforce keeps one table (``NEEDS`` in connectors/salesforce_fields.py, with the reconciliation's
``Billing_Exception__c``, expansion's ``Expansion_Signal__c`` and Quote keys, the account sync's
fields), so nothing is added here for it. HubSpot's account sync writes company properties
beyond the connector's own (``billing_plan``, ``next_renewal``, ``payment_health``,
``billing_contact_email``): setup creates them, doctor fails while one is missing. HubSpot's
reconciliation keeps each exception's details
in ``rx_*`` ticket properties that its first write creates when the portal lacks them — which
needs the private app's ``crm.schemas.tickets.write`` at run time; setup creates them up front,
and doctor warns while they are missing.
"""

from __future__ import annotations

from typing import Any

from domain.preflight import Check, CheckStatus
from domain.settings import Settings

#: (object type, name, type, unique), as REQUIRED_PROPERTIES has them
Property = tuple[str, str, str, bool]


#: the account sync's company properties beyond REQUIRED_PROPERTIES (connectors/sync/hubspot.py
#: writes them: a portal without one refuses the write)
SYNC_TYPES = {"next_renewal": "date"}


def sync_properties() -> tuple[Property, ...]:
    from connectors.hubspot import REQUIRED_PROPERTIES
    from connectors.sync.hubspot import FIELDS, HEALTH, HEALTH_TYPES

    known = {name for otype, name, *_ in REQUIRED_PROPERTIES if otype == "companies"}
    standard = {"name", "hubspot_owner_id"}  # HubSpot's own company properties
    types = {**SYNC_TYPES, **HEALTH_TYPES}
    return tuple(
        ("companies", name, types.get(name, "string"), False)
        for name in [*FIELDS.values(), *HEALTH.values()]
        if name not in known | standard
    )


def reconcile_properties() -> tuple[Property, ...]:
    from connectors.reconcile.hubspot import _DATES, TICKET_PROPERTIES

    return tuple(
        ("tickets", name, "date" if name in _DATES else "string", False)
        for name in TICKET_PROPERTIES
    )


def expansion_properties() -> tuple[Property, ...]:
    """Usage-based expansion's deal property group, and the quote's and line item's keys."""
    from connectors.expansion.hubspot import SETUP_PROPERTIES

    return SETUP_PROPERTIES


def hubspot_properties() -> tuple[Property, ...]:
    """Everything setup creates beyond the connector's own: the sync's, the reconciliation's,
    the expansion's."""
    return sync_properties() + reconcile_properties() + expansion_properties()


def use_case_checks(settings: Settings) -> list[Check]:
    """Two lines for the use cases' HubSpot properties: the account sync's company properties
    (FAIL naming the missing ones: its writes would be refused) and the reconciliation's ticket
    properties (WARN: its first write creates them if the app may)."""
    if settings.crm != "hubspot":
        return []
    from connectors.registry import build_crm

    crm = build_crm(settings)
    try:
        return [
            _check(
                crm,
                "companies.account-sync",
                sync_properties(),
                CheckStatus.FAIL,
                "the account sync's golden fields",
                "run `revbridge setup crm` (it creates them in the revbridge group)",
            ),
            _check(
                crm,
                "tickets.reconciliation",
                reconcile_properties(),
                CheckStatus.WARN,
                "the reconciliation's exception details",
                "run `revbridge setup crm` (else the first reconciliation creates them, which "
                "needs the private app's crm.schemas.tickets.write)",
            ),
        ]
    finally:
        close = getattr(crm, "close", None)
        if callable(close):
            close()


def _check(
    crm: Any,
    what: str,
    wanted: tuple[Property, ...],
    missing_status: CheckStatus,
    purpose: str,
    fix: str,
) -> Check:
    from connectors.base import ConnectorError

    otype = what.partition(".")[0]
    name = f"properties:{what}"
    try:
        page = crm._call(crm._properties.get_all, otype, what=f"{otype} properties")
    except ConnectorError as exc:
        return Check(
            system="hubspot",
            name=name,
            status=missing_status,
            detail=f"could not list {otype} properties ({exc.status or exc.kind})",
            fix=f"grant the private app crm.schemas.{otype}.read",
        )
    have = {p.name for p in page.results or [] if not getattr(p, "archived", False)}
    missing = [n for _, n, _, _ in wanted if n not in have]
    if not missing:
        return Check(
            system="hubspot", name=name, status=CheckStatus.OK, detail=f"{len(wanted)} properties"
        )
    return Check(
        system="hubspot",
        name=name,
        status=missing_status,
        detail=f"missing {', '.join(missing)} ({purpose})",
        fix=fix,
    )
