"""Property groups (``/crm/v3/properties/{objectType}/groups[/{groupName}]``), which every
property belongs to, and a fresh portal (none of the custom properties a setup creates).

A portal's groups are the HubSpot-defined ones (each default property's ``groupName``) plus
those created through the API; a second group of the same name is 409 ``OBJECT_ALREADY_EXISTS``.
With ``require_property_groups = True`` on the emulator, creating a property in a group the
object type does not have is 400 ``VALIDATION_ERROR``, as HubSpot answers; it is off by default
because older tests create properties in a group ``"g"`` they never made. Groups live beside the
store's property definitions and are rebuilt with them on a reset.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .errors import HubSpotError

if TYPE_CHECKING:
    from .emulator import HubSpotEmulator, _Call

_GROUP_NAME = re.compile(r"[a-z0-9_]{1,100}")


class PropertyGroups:
    """Mixed into :class:`HubSpotEmulator`: the group handlers its route table names."""

    #: refuse a property whose group does not exist (HubSpot does; off for older tests)
    require_property_groups: bool = False

    def _groups_of(self: HubSpotEmulator, type_name: str) -> dict[str, dict[str, Any]]:
        state = self.__dict__.get("_property_groups")
        if state is None or state[0] is not self.store.properties:
            groups: dict[str, dict[str, dict[str, Any]]] = {}
            for otype, definitions in self.store.properties.items():
                mine = groups.setdefault(otype, {})
                for d in definitions.values():
                    name = d.get("groupName")
                    if name and name not in mine and not d.get("archived"):
                        mine[name] = _group(name, name.replace("_", " ").title(), len(mine))
            state = (self.store.properties, groups)
            self.__dict__["_property_groups"] = state
        return state[1].setdefault(type_name, {})

    def _groups(self: HubSpotEmulator, call: _Call) -> tuple[int, Any]:
        groups = self._groups_of(self._type(call))
        return 200, {"results": [g for g in groups.values() if not g["archived"]]}

    def _group_get(self: HubSpotEmulator, call: _Call) -> tuple[int, Any]:
        found = self._groups_of(self._type(call)).get(call.params["groupName"])
        if found is None or found["archived"]:
            raise HubSpotError(
                404, f"Property group {call.params['groupName']} does not exist", "OBJECT_NOT_FOUND"
            )
        return 200, found

    def _group_create(self: HubSpotEmulator, call: _Call) -> tuple[int, Any]:
        body = call.body or {}
        name, label = body.get("name"), body.get("label")
        if not isinstance(name, str) or not _GROUP_NAME.fullmatch(name):
            raise HubSpotError(
                400,
                f"Property group name {name!r} is invalid: use lower case letters, digits and _",
                "VALIDATION_ERROR",
            )
        if not isinstance(label, str) or not label:
            raise HubSpotError(400, "A property group needs a label", "VALIDATION_ERROR")
        groups = self._groups_of(self._type(call))
        existing = groups.get(name)
        if existing is not None and not existing["archived"]:
            raise HubSpotError(
                409,
                f"Property group named '{name}' already exists.",
                "OBJECT_ALREADY_EXISTS",
                context={"name": [name]},
            )
        groups[name] = _group(name, label, int(body.get("displayOrder", -1)))
        return 201, groups[name]

    def _property_create_in_group(self: HubSpotEmulator, call: _Call) -> tuple[int, Any]:
        """``POST /crm/v3/properties/{objectType}``: the group must exist first (when the
        emulator's ``require_property_groups`` is on)."""
        if not self.require_property_groups:
            return self._property_create(call)
        group = (call.body or {}).get("groupName") if isinstance(call.body, dict) else None
        groups = self._groups_of(self._type(call))
        if not group or group not in groups or groups[group]["archived"]:
            raise HubSpotError(
                400,
                f"Property group {group!r} does not exist for {self._type(call)}; create it "
                "first (POST /crm/v3/properties/{objectType}/groups)",
                "VALIDATION_ERROR",
            )
        return self._property_create(call)


def fresh_portal(em: HubSpotEmulator) -> list[str]:
    """The portal as HubSpot delivers it: every custom (not HubSpot-defined) property and every
    group only they used are gone. Returns ``["companies.mrr", ...]``, what was removed."""
    removed: list[str] = []
    with em.lock:
        for otype, definitions in em.store.properties.items():
            for name in [n for n, d in definitions.items() if not d.get("hubspotDefined")]:
                del definitions[name]
                removed.append(f"{otype}.{name}")
            em.store._reindex(otype)
        em.__dict__.pop("_property_groups", None)
    return removed


def _group(name: str, label: str, order: int) -> dict[str, Any]:
    return {"name": name, "label": label, "displayOrder": order, "archived": False}
