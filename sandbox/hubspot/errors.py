"""HubSpot's error body (reference §2.5/§2.6) and the exception the emulator raises internally."""

from __future__ import annotations

import json
import uuid
from typing import Any

AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can "
    "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)

#: the category HubSpot puts on an error of each status (injected faults use it too)
CATEGORY_BY_STATUS = {
    400: "VALIDATION_ERROR",
    401: "INVALID_AUTHENTICATION",
    403: "MISSING_SCOPES",
    404: "OBJECT_NOT_FOUND",
    405: "VALIDATION_ERROR",
    409: "CONFLICT",
    415: "VALIDATION_ERROR",
    429: "RATE_LIMITS",
}


class HubSpotError(Exception):
    """Raised inside the emulator; the HTTP layer turns it into HubSpot's JSON error body."""

    def __init__(
        self,
        status: int,
        message: str,
        category: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        context: dict[str, Any] | None = None,
        sub_category: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.category = category or CATEGORY_BY_STATUS.get(
            status, "INTERNAL_ERROR" if status >= 500 else "VALIDATION_ERROR"
        )
        self.errors = errors
        self.context = context
        self.sub_category = sub_category
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": str(uuid.uuid4()),
        }
        if self.context is not None:
            out["context"] = self.context
        out["category"] = self.category
        if self.sub_category:
            out["subCategory"] = self.sub_category
        if self.errors is not None:
            out["errors"] = self.errors
        out.update(self.extra)
        return out


def not_found(object_id: str) -> HubSpotError:
    return HubSpotError(
        404,
        "Object not found.  objectId are usually numeric.",
        "OBJECT_NOT_FOUND",
        context={"id": [object_id]},
    )


def property_errors(problems: list[dict[str, Any]]) -> HubSpotError:
    """400 ``VALIDATION_ERROR`` for bad property values, message and errors as HubSpot words them.

    ``problems`` items: ``{"name", "error", "message"}``; ``error`` is HubSpot's code
    (``PROPERTY_DOESNT_EXIST``, ``INVALID_OPTION``, ...).
    """
    detail = [
        {
            "isValid": False,
            "message": p["message"],
            "error": p["error"],
            "name": p["name"],
            "localizedErrorMessage": p["message"],
        }
        for p in problems
    ]
    return HubSpotError(
        400,
        "Property values were not valid: " + json.dumps(detail, separators=(",", ":")),
        "VALIDATION_ERROR",
        errors=[
            {"message": p["message"], "code": p["error"], "context": {"propertyName": [p["name"]]}}
            for p in problems
        ],
    )


def rate_limited(policy: str, portal_id: int) -> HubSpotError:
    """429 as HubSpot words it [reference §2.6; hubspot-api-python#117]. ``category`` is not in
    HubSpot's own 429 bodies; it is here so every error carries one, as the Error schema requires."""
    label, group = {
        "TEN_SECONDLY_ROLLING": ("ten_secondly_rolling", "api-calls-ten-secondly"),
        "SECONDLY": ("secondly", "api-calls-search-secondly"),
        "DAILY": ("daily", "api-calls-daily"),
    }[policy]
    return HubSpotError(
        429,
        f"You have reached your {label} limit.",
        "RATE_LIMITS",
        extra={
            "errorType": "RATE_LIMIT",
            "policyName": policy,
            "groupName": f"publicapi:private-app-{group}:{portal_id}",
            "requestId": str(uuid.uuid4()),
        },
    )
