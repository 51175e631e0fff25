"""Records and DML: create, update, upsert by external ID, delete; validation; org-derived fields.

Records are dicts keyed by canonical field name with Python-typed values (see ``values.py``). A
delete keeps the record with ``IsDeleted = true`` (the recycle bin, visible to ``queryAll``).
Unique and external-ID fields are indexed (case-insensitively, like Salesforce). A journal lets
sObject Collections with ``allOrNone`` roll a whole request back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import automation
from .errors import MultipleMatches, SfError, bad, not_found
from .schema import AUDIT_FIELDS, OPPORTUNITY_STAGES, Field, Schema, SObject, make_id, normalize_id
from .values import coerce, now, to_json

_AUTONUMBER_START = {("Case", "CaseNumber"): 1001}


@dataclass
class Event:
    """A record change a Flow would call out for (see the package docstring)."""

    name: str  # "case_created" | "opportunity_closed_won" | "account_changed"
    sobject: str
    record_id: str
    #: account_changed: the fields the update changed (sandbox/salesforce/sync.py)
    fields: tuple[str, ...] = ()


class Store:
    def __init__(self, schema: Schema, id_seq: Iterator[int]) -> None:
        self.schema = schema
        self._id_seq = id_seq
        self.tables: dict[str, dict[str, dict[str, Any]]] = {}
        self.deleted_at: dict[str, datetime] = {}
        self.events: list[Event] = []
        #: the account-change Flow is active (sandbox/salesforce/sync.py); off in a fresh org
        self.account_flow = False
        self._index: dict[tuple[str, str], dict[Any, set[str]]] = {}
        self._autonumbers: dict[tuple[str, str], int] = {}
        self._journal: list[tuple[str, str, dict[str, Any] | None]] = []
        self._depth = 0

    # --- reading ---------------------------------------------------------------------------------

    def table(self, sobj: SObject) -> dict[str, dict[str, Any]]:
        return self.tables.setdefault(sobj.name, {})

    def get_any(self, record_id: str | None) -> tuple[SObject, dict[str, Any]] | None:
        """The (object, record) behind any 15/18-char ID, deleted ones included."""
        nid = normalize_id(record_id) if record_id else None
        sobj = self.schema.for_id(nid) if nid else None
        rec = self.table(sobj).get(nid) if sobj and nid else None
        return (sobj, rec) if sobj and rec else None

    def live(self, sobj: SObject, record_id: str) -> dict[str, Any]:
        """A live record of ``sobj`` or the API's error for a bad, missing or deleted ID."""
        nid = normalize_id(record_id)
        if nid is None:
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {record_id}"
            )
        if nid[:3] != sobj.key_prefix:
            raise bad(
                "MALFORMED_ID", f"{sobj.label} ID: id value of incorrect type: {record_id}", ["Id"]
            )
        rec = self.table(sobj).get(nid)
        if rec is None:
            raise not_found()
        if rec["IsDeleted"]:
            raise SfError(404, "ENTITY_IS_DELETED", "entity is deleted", [])
        return rec

    def find_by(self, sobj: SObject, f: Field, value: Any) -> list[str]:
        """IDs of live records whose field ``f`` equals ``value`` (case-insensitive), oldest first."""
        if f.name == "Id":
            nid = normalize_id(str(value))
            rec = self.table(sobj).get(nid) if nid else None
            return [nid] if nid and rec and not rec["IsDeleted"] else []
        key = _index_key(coerce(f, value))
        if key is None:
            return []
        return sorted(self._index_for(sobj, f).get(key, ()))

    def to_api(
        self, sobj: SObject, rec: Mapping[str, Any], version: str, fields: list[Field] | None = None
    ) -> dict[str, Any]:
        """A record as the REST API writes it: ``attributes`` first, every field, nulls included."""
        out: dict[str, Any] = {"attributes": attributes(sobj, rec["Id"], version)}
        for f in fields if fields is not None else sobj.fields.values():
            out[f.name] = to_json(f, rec.get(f.name))
        return out

    # --- transactions ----------------------------------------------------------------------------

    @contextmanager
    def atomic(self) -> Iterator[tuple[int, int]]:
        """All or nothing: an exception rolls every write (and pending event) back."""
        self._depth += 1
        savepoint = (len(self._journal), len(self.events))
        try:
            yield savepoint
        except BaseException:
            self.rollback(savepoint)
            raise
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._journal.clear()

    def rollback(self, savepoint: tuple[int, int]) -> None:
        journal_len, events_len = savepoint
        while len(self._journal) > journal_len:
            obj, rid, prev = self._journal.pop()
            self._set(obj, rid, prev)
        del self.events[events_len:]

    # --- DML -------------------------------------------------------------------------------------

    def create(
        self, sobj: SObject, data: Mapping[str, Any], *, user_id: str, seeding: bool = False
    ) -> str:
        if not (sobj.createable or seeding):
            raise bad(
                "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                f"entity type cannot be inserted: {sobj.label}",
            )
        values = self._input(sobj, data, creating=True, seeding=seeding)
        t = now()
        rid = make_id(sobj.key_prefix, next(self._id_seq))
        rec: dict[str, Any] = {}
        for f in sobj.fields.values():
            rec[f.name] = (
                f.default if f.default is not None else (False if f.type == "boolean" else None)
            )
        created = values.pop("CreatedDate", t)
        created_by = values.pop("CreatedById", user_id)
        modified = values.pop("LastModifiedDate", created)
        rec.update(
            Id=rid,
            IsDeleted=False,
            CreatedDate=created,
            CreatedById=created_by,
            LastModifiedDate=modified,
            LastModifiedById=values.pop("LastModifiedById", created_by),
            SystemModstamp=modified,
        )
        if "OwnerId" in rec:
            rec["OwnerId"] = user_id
        for f in sobj.fields.values():
            if f.auto_number:
                rec[f.name] = self._next_autonumber(sobj, f)
        rec.update(values)
        self._derive(sobj, None, rec, values)
        missing = [f.name for f in sobj.fields.values() if f.mandatory and rec.get(f.name) is None]
        if missing:
            raise bad(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        self._check_unique(sobj, rec, None)
        self._put(sobj.name, rid, rec)
        automation.after_save(self, sobj, None, rec, seeding)
        self._events(sobj, None, rec, seeding)
        return rid

    def update(
        self,
        sobj: SObject,
        record_id: str,
        data: Mapping[str, Any],
        *,
        user_id: str,
        seeding: bool = False,
    ) -> str:
        old = self.live(sobj, record_id)
        if not (sobj.updateable or seeding):
            raise bad(
                "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
                f"entity type cannot be updated: {sobj.label}",
            )
        rid = old["Id"]
        data = {
            k: v for k, v in data.items() if not (k.lower() == "id" and normalize_id(str(v)) == rid)
        }
        values = self._input(sobj, data, creating=False, seeding=seeding)
        t = values.pop("LastModifiedDate", now())
        rec = {**old, **values, "LastModifiedDate": t, "SystemModstamp": t}
        rec["LastModifiedById"] = values.get("LastModifiedById", user_id)
        self._derive(sobj, old, rec, values)
        missing = [n for n, v in values.items() if v is None and sobj.fields[n.lower()].mandatory]
        if missing:
            raise bad(
                "REQUIRED_FIELD_MISSING",
                f"Required fields are missing: [{', '.join(missing)}]",
                missing,
            )
        self._check_unique(sobj, rec, rid)
        self._put(sobj.name, rid, rec)
        automation.after_save(self, sobj, old, rec, seeding)
        self._events(sobj, old, rec, seeding)
        return rid

    def upsert(
        self, sobj: SObject, field_name: str, value: Any, data: Mapping[str, Any], *, user_id: str
    ) -> tuple[str, bool]:
        """Create or update by external ID; returns (id, created)."""
        f = sobj.field(field_name)
        if f is None or not (f.external_id or f.name == "Id"):
            raise not_found(
                f"Provided external ID field does not exist or is not accessible: {field_name}"
            )
        matches = self.find_by(sobj, f, value)
        if len(matches) > 1:
            raise MultipleMatches(matches)
        body = {k: v for k, v in data.items() if k.lower() != f.name.lower()}
        if matches:
            return self.update(sobj, matches[0], body, user_id=user_id), False
        if f.name == "Id":
            if value not in (None, ""):
                raise not_found()
            return self.create(sobj, body, user_id=user_id), True
        return self.create(sobj, {**body, f.name: value}, user_id=user_id), True

    def delete(self, sobj: SObject, record_id: str, *, user_id: str) -> str:
        old = self.live(sobj, record_id)
        t = now()
        rec = {**old, "IsDeleted": True, "SystemModstamp": t, "LastModifiedById": user_id}
        self._put(sobj.name, old["Id"], rec)
        self.deleted_at[old["Id"]] = t
        automation.after_save(self, sobj, old, rec, False)
        return old["Id"]

    def touch(
        self, obj: str, record_id: str, changes: Mapping[str, Any], *, stamp: bool = True
    ) -> None:
        """A write the org makes itself (roll-ups, derived fields): no validation, no events,
        but journaled, so an ``allOrNone`` rollback undoes it with the write that caused it."""
        rec = {**self.tables[obj][record_id], **changes}
        if stamp:
            rec["LastModifiedDate"] = rec["SystemModstamp"] = now()
        self._put(obj, record_id, rec)

    # --- internals -------------------------------------------------------------------------------

    def _input(
        self, sobj: SObject, data: Mapping[str, Any], *, creating: bool, seeding: bool
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key == "attributes":
                continue
            f = sobj.field(key)
            if f is None:
                rel = sobj.relationship(key)
                if rel is not None and isinstance(value, Mapping):
                    out[rel.name] = self._foreign_key(rel, value)
                    continue
                raise bad("INVALID_FIELD", f"No such column '{key}' on sobject of type {sobj.name}")
            writable = f.createable if creating else f.updateable
            if not writable and not (seeding and f.name.lower() in AUDIT_FIELDS):
                raise bad(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {f.name}. Please check the security settings "
                    "of this field and verify that it is read/write for your profile or permission set.",
                    [f.name],
                )
            v = coerce(f, value)
            if f.type == "reference" and v is not None:
                v = self._check_reference(f, v)
            out[f.name] = v
        return out

    def _foreign_key(self, rel: Field, value: Mapping[str, Any]) -> str:
        """``"Account": {"Billing_Customer_Id__c": "cus_1"}`` → the Account's ID."""
        target = self.schema.get(value.get("attributes", {}).get("type") or rel.reference_to[0])
        keys = [k for k in value if k != "attributes"]
        f = target.field(keys[0]) if target and len(keys) == 1 else None
        if target is None or f is None or not f.external_id:
            raise bad(
                "INVALID_FIELD", f"Invalid foreign key relationship name {rel.relationship_name}"
            )
        matches = self.find_by(target, f, value[keys[0]])
        if len(matches) != 1:
            raise bad(
                "INVALID_FIELD",
                f"Foreign key external ID: {value[keys[0]]} "
                + ("not found" if not matches else "matches more than one record")
                + f" for field {f.name} in entity {target.name}",
            )
        return matches[0]

    def _check_reference(self, f: Field, value: str) -> str:
        nid = normalize_id(value)
        if nid is None:
            raise bad("MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name])
        target = self.schema.for_id(nid)
        if target is None or target.name not in f.reference_to:
            raise bad(
                "FIELD_INTEGRITY_EXCEPTION",
                f"{f.label}: id value of incorrect type: {value}",
                [f.name],
            )
        rec = self.table(target).get(nid)
        if rec is None:
            raise bad(
                "INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {value}", [f.name]
            )
        if rec["IsDeleted"]:
            raise bad("ENTITY_IS_DELETED", "entity is deleted", [f.name])
        return nid

    def _next_autonumber(self, sobj: SObject, f: Field) -> str:
        key = (sobj.name, f.name)
        n = self._autonumbers.get(key, _AUTONUMBER_START.get(key, 1))
        self._autonumbers[key] = n + 1
        assert f.auto_number is not None
        return re.sub(r"\{(0+)\}", lambda m: str(n).zfill(len(m.group(1))), f.auto_number)

    def _derive(
        self,
        sobj: SObject,
        old: Mapping[str, Any] | None,
        rec: dict[str, Any],
        changed: Mapping[str, Any],
    ) -> None:
        """Fields the org computes: names, IsClosed/IsWon, default probability, ClosedDate."""
        if sobj.name in ("Contact", "User"):
            rec["Name"] = (
                " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p) or None
            )
        elif sobj.name == "Opportunity":
            stage = rec["StageName"]
            rec["IsClosed"] = stage in ("Closed Won", "Closed Lost")
            rec["IsWon"] = stage == "Closed Won"
            if (
                "StageName" in changed
                and "Probability" not in changed
                and stage in OPPORTUNITY_STAGES
            ):
                rec["Probability"] = float(OPPORTUNITY_STAGES[stage])
        elif sobj.name == "Case":
            rec["IsClosed"] = rec["Status"] == "Closed"
            if not rec["IsClosed"]:
                rec["ClosedDate"] = None
            elif not (old and old["IsClosed"]):
                rec["ClosedDate"] = rec["LastModifiedDate"]
        elif sobj.name == "Task":
            rec["IsClosed"] = rec["Status"] == "Completed"
        automation.before_save(self, sobj, old, rec, changed)

    def _events(
        self, sobj: SObject, old: Mapping[str, Any] | None, rec: Mapping[str, Any], seeding: bool
    ) -> None:
        if seeding:
            return
        if sobj.name == "Case" and old is None:
            self.events.append(Event("case_created", sobj.name, rec["Id"]))
        if (
            sobj.name == "Opportunity"
            and rec["StageName"] == "Closed Won"
            and (old is None or old["StageName"] != "Closed Won")
        ):
            self.events.append(Event("opportunity_closed_won", sobj.name, rec["Id"]))
        if sobj.name == "Account" and old is not None and self.account_flow:
            from .sync import changed_fields

            if changed := changed_fields(old, rec):
                self.events.append(Event("account_changed", sobj.name, rec["Id"], tuple(changed)))

    def _check_unique(self, sobj: SObject, rec: Mapping[str, Any], own_id: str | None) -> None:
        for f in sobj.fields.values():
            if not f.unique or rec.get(f.name) is None:
                continue
            others = self._index_for(sobj, f).get(_index_key(rec[f.name]), set()) - {own_id}
            if others:
                raise bad(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {f.name} duplicates value on record with id: {min(others)}",
                )

    def _index_for(self, sobj: SObject, f: Field) -> dict[Any, set[str]]:
        key = (sobj.name, f.name)
        if key not in self._index:
            idx: dict[Any, set[str]] = {}
            for rid, rec in self.table(sobj).items():
                k = _index_key(rec.get(f.name))
                if k is not None and not rec["IsDeleted"]:
                    idx.setdefault(k, set()).add(rid)
            self._index[key] = idx
        return self._index[key]

    def _put(self, obj: str, rid: str, rec: dict[str, Any]) -> None:
        if self._depth:
            self._journal.append((obj, rid, self.tables.setdefault(obj, {}).get(rid)))
        self._set(obj, rid, rec)

    def _set(self, obj: str, rid: str, rec: dict[str, Any] | None) -> None:
        table = self.tables.setdefault(obj, {})
        prev = table.get(rid)
        for (iobj, fname), idx in self._index.items():
            if iobj != obj:
                continue
            if prev is not None and not prev["IsDeleted"]:
                k = _index_key(prev.get(fname))
                if k is not None:
                    idx.get(k, set()).discard(rid)
            if rec is not None and not rec["IsDeleted"]:
                k = _index_key(rec.get(fname))
                if k is not None:
                    idx.setdefault(k, set()).add(rid)
        if rec is None:
            table.pop(rid, None)
            self.deleted_at.pop(rid, None)
        else:
            table[rid] = rec
            if not rec["IsDeleted"]:
                self.deleted_at.pop(rid, None)


def _index_key(value: Any) -> Any:
    if value is None:
        return None
    return value.lower() if isinstance(value, str) else value


def attributes(sobj: SObject, record_id: str, version: str) -> dict[str, str]:
    return {"type": sobj.name, "url": f"/services/data/v{version}/sobjects/{sobj.name}/{record_id}"}
