"""What the org does on save beyond field validation: products, price books, opportunity line
items and contact roles (the Sales Cloud "products" feature).

``before_save`` derives and checks a record about to be written (it may raise the API's error);
``after_save`` updates the records that depend on it (the opportunity's Amount roll-up, a single
primary contact role, product name/code shown on entries and lines). Facts from the
OpportunityLineItem / PricebookEntry object reference and the errors integrators report:

- a line needs a price book entry (or a product the opportunity's price book lists), else
  ``FIELD_INTEGRITY_EXCEPTION ... PricebookEntryId, unknown (versions 3.0 and higher must specify
  pricebook entry id; others must specify product id)``;
- ``UnitPrice`` or ``TotalPrice`` on insert, not both; an update may not change both;
- the first line sets the opportunity's ``Pricebook2Id``; a line from another price book fails;
- the opportunity's ``Amount`` is the sum of its lines' ``TotalPrice`` and is read-only while it
  has lines (updates to it are ignored, not rejected);
- a custom price book entry needs a standard price first (``STANDARD_PRICE_NOT_DEFINED``); a
  product appears once per price book.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import permissions
from .errors import bad

if TYPE_CHECKING:
    from .schema import SObject
    from .store import Store

_PRICE_PLACES = 2


def before_save(
    store: Store,
    sobj: SObject,
    old: Mapping[str, Any] | None,
    rec: dict[str, Any],
    changed: Mapping[str, Any],
) -> None:
    rule = _BEFORE.get(sobj.name)
    if rule is not None:
        rule(store, old, rec, changed)
    elif sobj.name in permissions.OBJECTS:
        permissions.before_save(store, sobj, old, rec)


def after_save(
    store: Store,
    sobj: SObject,
    old: Mapping[str, Any] | None,
    rec: Mapping[str, Any],
    seeding: bool,
) -> None:
    if sobj.name in permissions.OBJECTS:
        permissions.after_save(store, sobj)  # a grant changed what the API user may do
    elif sobj.name == "OpportunityLineItem":
        _roll_up(store, rec["OpportunityId"], stamp=not seeding)
    elif sobj.name == "OpportunityContactRole" and rec["IsPrimary"] and not rec["IsDeleted"]:
        for other in _live(store, "OpportunityContactRole"):
            same_opp = other["OpportunityId"] == rec["OpportunityId"]
            if same_opp and other["Id"] != rec["Id"] and other["IsPrimary"]:
                store.touch("OpportunityContactRole", other["Id"], {"IsPrimary": False})
    elif sobj.name == "Product2" and old is not None and not rec["IsDeleted"]:
        shown = {"Name": rec["Name"], "ProductCode": rec["ProductCode"]}
        if any(old[k] != v for k, v in shown.items()):
            for entry in _live(store, "PricebookEntry"):
                if entry["Product2Id"] == rec["Id"]:
                    store.touch("PricebookEntry", entry["Id"], shown, stamp=False)
            for line in _live(store, "OpportunityLineItem"):
                if line["Product2Id"] == rec["Id"]:
                    store.touch(
                        "OpportunityLineItem",
                        line["Id"],
                        {"ProductCode": rec["ProductCode"]},
                        stamp=False,
                    )


# --- price book entries ----------------------------------------------------------------------------


def _entry(
    store: Store, old: Mapping[str, Any] | None, rec: dict[str, Any], changed: Mapping[str, Any]
) -> None:
    product = _get(store, rec.get("Product2Id"))
    book = _get(store, rec.get("Pricebook2Id"))
    if product is None or book is None:
        return  # the required-field check reports it
    rec["Name"], rec["ProductCode"] = product["Name"], product["ProductCode"]
    if old is not None:
        return
    for other in _live(store, "PricebookEntry"):
        if (other["Pricebook2Id"], other["Product2Id"]) == (book["Id"], product["Id"]):
            raise bad("DUPLICATE_VALUE", "This price definition already exists in this price book")
    if book["IsStandard"]:
        if rec.get("UseStandardPrice"):
            raise bad(
                "FIELD_INTEGRITY_EXCEPTION",
                "field integrity exception: UseStandardPrice (a standard price book entry cannot "
                "use the standard price)",
                ["UseStandardPrice"],
            )
        return
    standard = _standard_entry(store, product["Id"])
    if standard is None:
        raise bad("STANDARD_PRICE_NOT_DEFINED", "No standard price defined for this product")
    if rec.get("UseStandardPrice"):
        rec["UnitPrice"] = standard["UnitPrice"]


def _standard_entry(store: Store, product_id: str) -> dict[str, Any] | None:
    standard_books = {b["Id"] for b in _live(store, "Pricebook2") if b["IsStandard"]}
    return next(
        (
            e
            for e in _live(store, "PricebookEntry")
            if e["Product2Id"] == product_id and e["Pricebook2Id"] in standard_books
        ),
        None,
    )


# --- opportunity line items ------------------------------------------------------------------------


def _line(
    store: Store, old: Mapping[str, Any] | None, rec: dict[str, Any], changed: Mapping[str, Any]
) -> None:
    given_unit = changed.get("UnitPrice") is not None
    given_total = changed.get("TotalPrice") is not None
    if old is None:
        opp = _get(store, rec.get("OpportunityId"))
        if opp is None:
            return  # the required-field check reports it
        if rec.get("Quantity") is None:
            raise bad(
                "REQUIRED_FIELD_MISSING", "Required fields are missing: [Quantity]", ["Quantity"]
            )
        entry = _resolve_entry(store, opp, rec)
        product = _get(store, entry["Product2Id"]) or {}
        rec.update(
            PricebookEntryId=entry["Id"],
            Product2Id=entry["Product2Id"],
            ProductCode=product.get("ProductCode"),
            Name=f"{opp['Name']} {product.get('Name') or ''}".strip()[:376],
            ListPrice=entry["UnitPrice"],
        )
        if given_unit and given_total:
            raise bad(
                "FIELD_INTEGRITY_EXCEPTION",
                "field integrity exception: TotalPrice (cannot specify both unit price and total "
                "price)",
                ["TotalPrice"],
            )
        if not (given_unit or given_total):
            # [U] the exact wording; the rule itself (one of the two on insert) is documented
            raise bad(
                "FIELD_INTEGRITY_EXCEPTION",
                "field integrity exception: unknown (must specify either unit price or total "
                "price)",
                ["UnitPrice", "TotalPrice"],
            )
    elif given_unit and given_total:
        raise bad(
            "INVALID_FIELD",
            "Cannot change both 'UnitPrice' and 'TotalPrice' in update call",
            ["UnitPrice"],
        )
    _price_line(rec, from_total=given_total and not given_unit)


def _resolve_entry(store: Store, opp: Mapping[str, Any], rec: Mapping[str, Any]) -> dict[str, Any]:
    entry = _get(store, rec.get("PricebookEntryId"))
    if entry is None and rec.get("Product2Id"):
        book = opp.get("Pricebook2Id") or next(
            (b["Id"] for b in _live(store, "Pricebook2") if b["IsStandard"]), None
        )
        entry = next(
            (
                e
                for e in _live(store, "PricebookEntry")
                if e["Product2Id"] == rec["Product2Id"]
                and e["Pricebook2Id"] == book
                and e["IsActive"]
            ),
            None,
        )
    if entry is None:
        raise bad(
            "FIELD_INTEGRITY_EXCEPTION",
            "field integrity exception: PricebookEntryId, unknown (versions 3.0 and higher must "
            "specify pricebook entry id; others must specify product id)",
            ["PricebookEntryId", "unknown"],
        )
    if not entry["IsActive"]:
        raise bad(
            "FIELD_INTEGRITY_EXCEPTION",
            "field integrity exception: PricebookEntryId (pricebook entry is inactive)",
            ["PricebookEntryId"],
        )
    if opp.get("Pricebook2Id") and opp["Pricebook2Id"] != entry["Pricebook2Id"]:
        raise bad(
            "FIELD_INTEGRITY_EXCEPTION",
            "field integrity exception: PricebookEntryId (pricebook entry is in a different "
            "pricebook than the one assigned to the opportunity)",
            ["PricebookEntryId"],
        )
    return entry


def _price_line(rec: dict[str, Any], *, from_total: bool) -> None:
    """Subtotal = Quantity × UnitPrice; TotalPrice = Subtotal less the Discount percent. A given
    TotalPrice (without UnitPrice) sets the UnitPrice instead."""
    quantity = rec["Quantity"]
    if quantity == 0:
        raise bad(
            "FIELD_INTEGRITY_EXCEPTION",
            "field integrity exception: Quantity (quantity must be non-zero)",
            ["Quantity"],
        )
    discount = rec.get("Discount") or 0.0
    if not 0 <= discount <= 100:
        raise bad(
            "NUMBER_OUTSIDE_VALID_RANGE",
            f"Discount: value outside of valid range on numeric field: {discount}",
            ["Discount"],
        )
    factor = 1 - discount / 100
    if from_total:
        rec["UnitPrice"] = round(rec["TotalPrice"] / (quantity * (factor or 1)), _PRICE_PLACES)
    rec["Subtotal"] = round(quantity * rec["UnitPrice"], _PRICE_PLACES)
    rec["TotalPrice"] = round(rec["Subtotal"] * factor, _PRICE_PLACES)


# --- opportunities -----------------------------------------------------------------------------------


def _opportunity(
    store: Store, old: Mapping[str, Any] | None, rec: dict[str, Any], changed: Mapping[str, Any]
) -> None:
    if old is None or not old["HasOpportunityLineItem"]:
        return
    rec["Amount"] = old["Amount"]  # read-only while it has lines: ignored, not rejected
    if "Pricebook2Id" in changed and changed["Pricebook2Id"] != old["Pricebook2Id"]:
        raise bad(
            "FIELD_INTEGRITY_EXCEPTION",
            "field integrity exception: Pricebook2Id (pricebook cannot be changed on an "
            "opportunity with line items)",
            ["Pricebook2Id"],
        )


def _roll_up(store: Store, opp_id: str, *, stamp: bool) -> None:
    opp = _get(store, opp_id)
    if opp is None:
        return
    lines = [r for r in _live(store, "OpportunityLineItem") if r["OpportunityId"] == opp_id]
    changes: dict[str, Any] = {"HasOpportunityLineItem": bool(lines)}
    if lines or opp["HasOpportunityLineItem"]:
        changes["Amount"] = round(sum(r["TotalPrice"] or 0 for r in lines), _PRICE_PLACES)
    if lines and not opp["Pricebook2Id"]:
        entry = _get(store, lines[0]["PricebookEntryId"])
        changes["Pricebook2Id"] = entry["Pricebook2Id"] if entry else None
    store.touch("Opportunity", opp_id, changes, stamp=stamp)


# --- helpers -------------------------------------------------------------------------------------------


def _get(store: Store, record_id: str | None) -> dict[str, Any] | None:
    hit = store.get_any(record_id) if record_id else None
    return hit[1] if hit and not hit[1]["IsDeleted"] else None


def _live(store: Store, name: str) -> list[dict[str, Any]]:
    sobj = store.schema.get(name)
    if sobj is None:
        return []
    return [r for r in store.table(sobj).values() if not r["IsDeleted"]]


_BEFORE = {
    "PricebookEntry": _entry,
    "OpportunityLineItem": _line,
    "Opportunity": _opportunity,
}
