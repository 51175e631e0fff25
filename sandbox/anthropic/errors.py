"""The Messages API error envelope (reference §3.3) and the exception the emulator raises inside.

Every answer carries a ``request-id`` header; an error body is
``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.responses import JSONResponse

#: the error type the API puts on each status (other 4xx are ``invalid_request_error``)
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

DEFAULT_MESSAGES: dict[str, str] = {
    "invalid_request_error": "Invalid request",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "api_error": "Internal server error",
    "timeout_error": "Request timeout",
    "overloaded_error": "Overloaded",
}

#: the largest retry-after the emulator ever sends: the 2.x SDK honours any value (reference §0.3),
#: so a big one would hang a test that left the SDK's retries on
MAX_RETRY_AFTER_S = 60

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # base58, like real IDs


def new_id(prefix: str, n: int = 22) -> str:
    """``msg_01…`` / ``toolu_01…`` / ``req_011…`` style identifiers."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new_request_id() -> str:
    return new_id("req_011", 21)


def error_type_for(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


class AnthropicApiError(Exception):
    """Raised inside the emulator; the HTTP layer turns it into the API's error envelope."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        error_type: str | None = None,
        *,
        retry_after: float | None = None,
        error_code: str | None = None,
    ) -> None:
        self.status = status
        self.error_type = error_type or error_type_for(status)
        self.message = message or DEFAULT_MESSAGES.get(self.error_type, "Error")
        self.retry_after = retry_after
        self.error_code = error_code
        super().__init__(f"{status} {self.error_type}: {self.message}")

    def response(self) -> JSONResponse:
        return error_response(
            self.status,
            self.message,
            self.error_type,
            retry_after=self.retry_after,
            error_code=self.error_code,
        )


def error_response(
    status: int,
    message: str | None = None,
    error_type: str | None = None,
    *,
    retry_after: float | None = None,
    error_code: str | None = None,
) -> JSONResponse:
    etype = error_type or error_type_for(status)
    request_id = new_request_id()
    err: dict[str, Any] = {
        "type": etype,
        "message": message or DEFAULT_MESSAGES.get(etype, "Error"),
    }
    if error_code:
        err["details"] = {"error_code": error_code}
    headers = {"request-id": request_id}
    if retry_after is not None:
        headers["retry-after"] = _retry_after_header(retry_after)
    return JSONResponse(
        {"type": "error", "error": err, "request_id": request_id},
        status_code=status,
        headers=headers,
    )


def _retry_after_header(seconds: float) -> str:
    seconds = max(0.0, min(float(seconds), MAX_RETRY_AFTER_S))
    return str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"
