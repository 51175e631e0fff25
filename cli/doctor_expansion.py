"""``revbridge doctor``'s usage-based expansion lines (issue 21): what the expansion needs on the
billing platform and in the CRM before it can recommend an upgrade and write it down.

- **Billing, the upgrade target** (the next tier a metered plan upgrades to):
  Zuora — the product rate plan custom field ``RevBridgeUpgradeTo__c`` (Describe API);
  Recurly — the plan custom field ``upgrade_to`` (custom field definitions);
  Chargebee / Stripe — price metadata ``upgrade_to`` on the plan prices (no schema to ask, so one
  page of active plan prices is read: at least one must name its next tier, and a metered plan
  — ``included_units`` — that names none is reported).
- **CRM, the expansion records**: Salesforce ``Expansion_Signal__c`` with its fields
  (``connectors/salesforce_fields.py``: one describe); HubSpot the ``expansion_*`` deal
  properties and the quote / line item keys (``connectors/expansion/hubspot.py``, one properties
  read per object type).

**Switched on** means the expansion runs and writes: its mode in ``policies/modes.yaml`` is
``assist`` or ``auto`` (``observe`` reads and reports only) and its daily intake Schedule
(``revbridge-expansion-intake``, created at worker start) exists unpaused in the namespace. Something
missing is a FAIL while the expansion is on, and a WARN while it is off — before the first worker
start, in observe mode, or with the intake paused: nothing breaks yet, and it will be needed
(``domain.preflight``: WARN "works today, will hurt later"). A namespace that cannot be asked
counts as on (the mode decides).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from domain.policy import Mode, ModesConfig
from domain.preflight import Check, CheckStatus
from domain.settings import Settings

SYSTEM = "expansion"
USE_CASE = "expansion"
ZUORA_FIELD = ("ProductRatePlan", "RevBridgeUpgradeTo__c")
RECURLY_FIELD = ("plan", "upgrade_to")


def expansion_mode(settings: Settings) -> Mode:
    """The expansion's mode in policies/modes.yaml (the deployment's policy folder)."""
    import revbridge_data

    folder = (
        Path(settings.policy_dir) if settings.policy_dir else revbridge_data.default_policy_dir()
    )
    data = yaml.safe_load((folder / "modes.yaml").read_text()) or {}
    modes = ModesConfig.model_validate(data)
    return modes.use_cases.get(USE_CASE, modes.default)


async def intake_scheduled(timeout_s: float = 10.0) -> bool | None:
    """Does the intake Schedule exist, unpaused, in the worker's namespace (None: could not
    ask)?"""
    import asyncio

    from temporalio.service import RPCError, RPCStatusCode

    from domain.expansion import INTAKE_SCHEDULE_ID
    from infra.temporal_setup import Target

    try:
        client = await asyncio.wait_for(Target.from_env().connect(), timeout_s)
        desc = await asyncio.wait_for(
            client.get_schedule_handle(INTAKE_SCHEDULE_ID).describe(), timeout_s
        )
    except RPCError as exc:
        return False if exc.status is RPCStatusCode.NOT_FOUND else None
    except Exception:
        return None
    return not desc.schedule.state.paused


async def expansion_group(
    settings: Settings, in_thread: Callable[[Callable[[], list[Check]]], Any]
) -> list[Check]:
    """``revbridge doctor``'s expansion group: the Schedule asked, the vendors checked in a
    thread (``in_thread``: the doctor's own, with its timeout)."""
    scheduled = await intake_scheduled()
    return list(await in_thread(lambda: expansion_checks(settings, scheduled)))


def expansion_checks(settings: Settings, scheduled: bool | None = None) -> list[Check]:
    """The switch line, then the billing platform's upgrade target and the CRM's records."""
    from connectors.registry import build_billing, build_crm

    try:
        mode = expansion_mode(settings)
    except Exception as exc:  # an unreadable modes.yaml: the policy check reports it in full
        return [Check(system=SYSTEM, name="mode", status=CheckStatus.FAIL,
                      detail=f"policies/modes.yaml unreadable ({type(exc).__name__})",
                      fix="correct policies/modes.yaml")]  # fmt: skip
    on = mode is not Mode.OBSERVE and scheduled is not False
    missing = CheckStatus.FAIL if on else CheckStatus.WARN
    if mode is Mode.OBSERVE:
        why = "off: mode observe in policies/modes.yaml (reads and reports only)"
    elif scheduled is False:
        why = f"off: mode {mode.value}, but the daily intake Schedule is not running yet"
    else:
        why = f"on: mode {mode.value}" + (", daily intake scheduled" if scheduled else "")
    checks = [
        Check(
            system=SYSTEM,
            name="switch",
            status=CheckStatus.OK if on else CheckStatus.WARN,
            detail=why,
            fix=""
            if on
            else "once the lines below are OK: mode assist or auto in "
            "policies/modes.yaml, and start a worker (it creates the intake Schedule)",
        )
    ]
    checks += _with(lambda: build_billing(settings), lambda b: billing_checks(b, missing))
    checks += _with(lambda: build_crm(settings), lambda c: crm_checks(c, missing))
    return checks


def _with(build: Callable[[], Any], run: Callable[[Any], list[Check]]) -> list[Check]:
    try:
        connector = build()
    except Exception as exc:
        return [Check(system=SYSTEM, name="connector", status=CheckStatus.SKIP,
                      detail=f"not built ({type(exc).__name__}): see its own lines")]  # fmt: skip
    try:
        return run(connector)
    except Exception as exc:
        return [Check(system=SYSTEM, name="setup", status=CheckStatus.SKIP,
                      detail=f"could not be checked ({type(exc).__name__}: {str(exc)[:160]})")]  # fmt: skip
    finally:
        close = getattr(connector, "close", None)
        if callable(close):
            close()


# --- billing: the upgrade target ------------------------------------------------------------------


def billing_checks(billing: Any, missing: CheckStatus) -> list[Check]:
    name = getattr(billing, "name", "")
    if name == "zuora":
        obj, field = ZUORA_FIELD
        found = billing._custom_field_checks(obj, (field,))
        return [_restate(c, "upgrade-target:zuora", missing) for c in found]
    if name == "recurly":
        return [_recurly(billing, missing)]
    if name == "chargebee":
        return [_metadata_check(name, _chargebee_plan_prices(billing), missing)]
    if name == "stripe":
        return [_metadata_check(name, _stripe_plan_prices(billing), missing)]
    return [Check(system=SYSTEM, name=f"upgrade-target:{name or 'billing'}",
                  status=CheckStatus.SKIP, detail="no expansion on this billing platform")]  # fmt: skip


def _restate(check: Check, name: str, missing: CheckStatus) -> Check:
    """A connector's own field check as an expansion line (FAIL becomes WARN while off)."""
    status = missing if check.status is CheckStatus.FAIL else check.status
    return check.model_copy(update={"system": SYSTEM, "name": name, "status": status})


def _recurly(billing: Any, missing: CheckStatus) -> Check:
    related, field = RECURLY_FIELD
    defined = {
        (d.related_type, d.name)
        for d in billing._scan(
            lambda c: c.list_custom_field_definitions(params={"limit": 200}),
            "custom field definitions",
            pages=10,
        )
        if not getattr(d, "deleted_at", None)
    }
    if (related, field) in defined:
        return Check(system=SYSTEM, name="upgrade-target:recurly", status=CheckStatus.OK,
                     detail=f"the {related} custom field '{field}' is defined")  # fmt: skip
    return Check(
        system=SYSTEM,
        name="upgrade-target:recurly",
        status=missing,
        detail=f"the {related} custom field '{field}' is not defined (no plan can name its next "
        "tier)",
        fix=f"define the {related} custom field '{field}' (Configuration > Custom Fields) and set "
        "it on each metered plan to the next tier's plan code",
    )


def _chargebee_plan_prices(billing: Any) -> list[dict[str, Any]]:
    """One page of the site's active plan item prices, with their metadata."""
    page = billing._call(
        lambda: billing.client.ItemPrice.list(
            {"item_type": {"is": "plan"}, "status": {"is": "active"}, "limit": 100}
        ),
        what="item prices",
    )
    out = []
    for entry in page.list:
        ip = entry.item_price
        raw = getattr(ip, "metadata", None)
        if raw is None and hasattr(ip, "raw_data"):
            raw = ip.raw_data.get("metadata")
        out.append({"id": ip.id, "metadata": _as_dict(raw)})
    return out


def _stripe_plan_prices(billing: Any) -> list[dict[str, Any]]:
    """The recurring licensed prices (plans) on one page of the account's active prices, with
    their metadata (``included_units`` a JSON string there)."""
    page = billing._call(
        lambda: billing.client.v1.prices.list({"active": True, "limit": 100}),
        "prices",
    )
    out = []
    for p in page.data:
        price = p.to_dict()
        recurring = price.get("recurring") or {}
        if not recurring or recurring.get("usage_type") == "metered":
            continue
        out.append({"id": price["id"], "metadata": _as_dict(price.get("metadata"))})
    return out


def _as_dict(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return dict(raw) if isinstance(raw, dict) else {}


def _metadata_check(vendor: str, prices: list[dict[str, Any]], missing: CheckStatus) -> Check:
    name = f"upgrade-target:{vendor}"
    naming = [p["id"] for p in prices if p["metadata"].get("upgrade_to")]
    metered = [p["id"] for p in prices if p["metadata"].get("included_units")]
    targets = {str(p["metadata"].get("upgrade_to")) for p in prices}
    # a metered plan naming no next tier and no plan's target: the top tier is a target
    lacking = [i for i in metered if i not in naming and i not in targets]
    fix = (
        "set the plan price's metadata 'upgrade_to' to the next tier's price ID (and "
        "'included_units' to the metered price's allowance)"
    )
    if not naming:
        return Check(
            system=SYSTEM,
            name=name,
            status=missing,
            detail=f"none of {len(prices)} active plan prices names an upgrade_to in its metadata",
            fix=fix,
        )
    if lacking:
        shown = ", ".join(lacking[:5]) + (" …" if len(lacking) > 5 else "")
        return Check(
            system=SYSTEM,
            name=name,
            status=CheckStatus.WARN,
            detail=f"{len(naming)} plan prices name their next tier; metered {shown} does not "
            "(no upgrade can be recommended for it)",
            fix=fix,
        )
    return Check(system=SYSTEM, name=name, status=CheckStatus.OK,
                 detail=f"{len(naming)} plan prices name their next tier (metadata upgrade_to)")  # fmt: skip


# --- CRM: the expansion's records -------------------------------------------------------------------


def crm_checks(crm: Any, missing: CheckStatus) -> list[Check]:
    name = getattr(crm, "name", "")
    if name == "salesforce":
        return [_salesforce(crm, missing)]
    if name == "hubspot":
        from cli.crm_use_cases import _check, expansion_properties

        wanted = expansion_properties()
        out = []
        for otype in dict.fromkeys(o for o, *_ in wanted):
            found = _check(
                crm,
                f"{otype}.expansion",
                tuple(p for p in wanted if p[0] == otype),
                CheckStatus.FAIL,
                "usage-based expansion's records",
                "run `revbridge setup crm` (it creates them in the revbridge group)",
            )
            out.append(_restate(found, f"records:hubspot.{otype}", missing))
        return out
    return [Check(system=SYSTEM, name=f"records:{name or 'crm'}", status=CheckStatus.SKIP,
                  detail="no expansion records on this CRM")]  # fmt: skip


def _salesforce(crm: Any, missing: CheckStatus) -> Check:
    from connectors.base import NotFound
    from connectors.salesforce_fields import NEEDS

    obj = "Expansion_Signal__c"
    name = f"records:salesforce.{obj}"
    fix = "run `revbridge setup crm` (it creates the object and its fields and grants them)"
    try:
        described = crm._call(lambda sf: sf.restful(f"sobjects/{obj}/describe"), f"{obj} describe")
    except NotFound:
        return Check(system=SYSTEM, name=name, status=missing,
                     detail=f"the org has no {obj} (the expansion signal)", fix=fix)  # fmt: skip
    have = {f.get("name") for f in (described or {}).get("fields") or []}
    lacking = [f for f in NEEDS[obj] if f not in have]
    if lacking:
        return Check(system=SYSTEM, name=name, status=missing,
                     detail=f"{obj} lacks {', '.join(lacking)}", fix=fix)  # fmt: skip
    return Check(system=SYSTEM, name=name, status=CheckStatus.OK,
                 detail=f"{obj} with its {len(NEEDS[obj])} fields")  # fmt: skip
