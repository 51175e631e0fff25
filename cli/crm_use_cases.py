"""What the use cases built on the CRM connectors add to a portal beyond the connector's own
:data:`~connectors.hubspot.REQUIRED_PROPERTIES`, for ``revbridge setup crm`` to create and
``revbridge doctor`` to check (cli may import every use case's connector; the CRM connector may
not import them back).

Salesforce keeps one table (``NEEDS`` in connectors/salesforce.py, with the reconciliation's
``Billing_Exception__c``, expansion's ``Expansion_Signal__c`` and Quote keys, the account sync's
fields), so nothing is added here for it. HubSpot's reconciliation keeps each exception's details
in ``rx_*`` ticket properties that its first write creates when the portal lacks them — which
needs the private app's ``crm.schemas.tickets.write`` at run time; setup creates them up front,
and doctor warns while they are missing.
"""

from __future__ import annotations

from domain.preflight import Check, CheckStatus
from domain.settings import Settings

#: (object type, name, type, unique), as REQUIRED_PROPERTIES has them
Property = tuple[str, str, str, bool]


def hubspot_properties() -> tuple[Property, ...]:
    from connectors.reconcile.hubspot import _DATES, TICKET_PROPERTIES

    return tuple(
        ("tickets", name, "date" if name in _DATES else "string", False)
        for name in TICKET_PROPERTIES
    )


def use_case_checks(settings: Settings) -> list[Check]:
    """One line for the use cases' HubSpot properties: OK, or WARN naming the missing ones."""
    if settings.crm != "hubspot":
        return []
    from connectors.base import ConnectorError
    from connectors.registry import build_crm

    crm = build_crm(settings)
    wanted = hubspot_properties()
    name = "properties:tickets.reconciliation"
    try:
        page = crm._call(crm._properties.get_all, "tickets", what="tickets properties")
    except ConnectorError as exc:
        return [
            Check(
                system="hubspot",
                name=name,
                status=CheckStatus.WARN,
                detail=f"could not list ticket properties ({exc.status or exc.kind})",
                fix="grant the private app crm.schemas.tickets.read",
            )
        ]
    finally:
        close = getattr(crm, "close", None)
        if callable(close):
            close()
    have = {p.name for p in page.results or [] if not getattr(p, "archived", False)}
    missing = [n for _, n, _, _ in wanted if n not in have]
    if not missing:
        return [
            Check(
                system="hubspot",
                name=name,
                status=CheckStatus.OK,
                detail=f"{len(wanted)} exception properties",
            )
        ]
    return [
        Check(
            system="hubspot",
            name=name,
            status=CheckStatus.WARN,
            detail=f"missing {', '.join(missing)} (the reconciliation's exception details)",
            fix="run `revbridge setup crm` (else the first reconciliation creates them, which "
            "needs the private app's crm.schemas.tickets.write)",
        )
    ]
