"""What NetSuite holds of a month RevBridge posted, line by line (issue 20: the adjusting entry
of a month that changed after it was posted).

The month's RevBridge entries are found by SuiteQL (``NetSuiteErp.find_entries``: external IDs
``rb-rev-<month>-…``); each is read once through the REST record service with its lines
(``GET /record/v1/journalEntry/<id>?expandSubResources=true``: ``line.items`` with ``account``,
``debit``, ``credit``). A line's account comes back as NetSuite's internal ID: it is named by its
number again through the connector's own lookup of the accounts ``policies/revenue.yaml``
names (cached), or one SuiteQL read for an account it does not name. A few entries a month
(one per currency, plus any adjustment): never one call per customer.

An ERP object that keeps its ledger itself (the in-memory one of the workflow tests) answers
``ledger_lines(month)`` directly.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from connectors.base import ConnectorError, ErrorKind
from domain.revenue import Accounts, LedgerLine, currency_of

RECORD = "/services/rest/record/v1"
_EXPONENT = {"JPY": 0, "KRW": 0, "CLP": 0, "VND": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3,
             "JOD": 3, "TND": 3}  # fmt: skip


def ledger_lines(erp: Any, month: str, accounts: Accounts) -> list[LedgerLine]:
    """Every line of RevBridge's journal entries for ``month`` in the ERP."""
    own = getattr(erp, "ledger_lines", None)
    if callable(own):
        return list(own(month))
    entries = erp.find_entries(month)
    if not entries:
        return []
    numbers = {accounts.deferred_revenue, accounts.revenue, *accounts.products.values()}
    by_id = {erp._account_id(n): n for n in sorted(numbers)}
    out: list[LedgerLine] = []
    for entry in entries:
        body = erp._request(
            "GET",
            f"{RECORD}/journalEntry/{entry.internal_id}",
            what=f"journal entry {entry.external_id}",
            params={"expandSubResources": "true"},
        ).json()
        currency = currency_of(entry.external_id)
        items = ((body or {}).get("line") or {}).get("items") or []
        for item in items:
            account_id = str((item.get("account") or {}).get("id") or "")
            if account_id not in by_id:
                by_id[account_id] = _account_number(erp, account_id)
            out.append(
                LedgerLine(
                    external_id=entry.external_id,
                    currency=currency,
                    account=by_id[account_id],
                    debit=_minor(item.get("debit"), currency),
                    credit=_minor(item.get("credit"), currency),
                )
            )
    return out


def _account_number(erp: Any, account_id: str) -> str:
    if not re.fullmatch(r"\d{1,12}", account_id):
        raise ConnectorError(
            "netsuite",
            ErrorKind.PERMANENT,
            f"journal entry line without an account ({account_id!r})",
        )
    rows = list(
        erp._suiteql(
            f"SELECT id, acctnumber FROM account WHERE id = '{account_id}'",  # noqa: S608 (digits only, checked above)
            f"account {account_id} lookup",
        )
    )
    return str(rows[0]["acctnumber"]) if rows else f"id:{account_id}"


def _minor(value: Any, currency: str) -> int:
    if value in (None, ""):
        return 0
    return int(Decimal(str(value)).scaleb(_EXPONENT.get(currency, 2)).to_integral_value())
