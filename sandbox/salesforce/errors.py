"""Salesforce-shaped errors.

Top-level REST errors are JSON arrays ``[{"message", "errorCode", "fields"}]``; inside SaveResults
(sObject Collections) the same error is ``{"statusCode", "message", "fields"}``.
"""

from __future__ import annotations

from typing import Any

NOT_FOUND_MESSAGE = "The requested resource does not exist"


class SfError(Exception):
    """An error the API answers with ``status`` and one ``[{"message","errorCode","fields"}]``."""

    def __init__(
        self, status: int, code: str, message: str, fields: list[str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields or [])

    def body(self) -> list[dict[str, Any]]:
        return [{"message": self.message, "errorCode": self.code, "fields": self.fields}]

    def save_error(self) -> dict[str, Any]:
        """The error as it appears inside a SaveResult (``statusCode``, not ``errorCode``)."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}


class MultipleMatches(Exception):
    """An external-ID lookup matched more than one record (the API answers 300)."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} records match")
        self.ids = ids


def not_found(message: str = NOT_FOUND_MESSAGE) -> SfError:
    return SfError(404, "NOT_FOUND", message)


def bad(code: str, message: str, fields: list[str] | None = None) -> SfError:
    return SfError(400, code, message, fields)
