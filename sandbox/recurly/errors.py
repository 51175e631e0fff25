"""Recurly's error body (API v2021-02-25): ``{"error": {"type", "message", "params"?,
"transaction_error"?}}``. The official client turns ``type`` into an exception class
(``not_found`` → ``NotFoundError``, ``validation`` → ``ValidationError``, ``transaction`` →
``TransactionError``, ``rate_limited`` → ``RateLimitedError``, ...)."""

from __future__ import annotations

from typing import Any


class RecurlyError(Exception):
    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        params: list[dict[str, str]] | None = None,
        transaction_error: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.params = params
        self.transaction_error = transaction_error
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.params:
            error["params"] = self.params
        if self.transaction_error is not None:
            error["transaction_error"] = self.transaction_error
        return {"error": error}


def not_found(kind: str, ident: str) -> RecurlyError:
    return RecurlyError(404, "not_found", f"Couldn't find {kind} with id = {ident}")


def validation(param: str, message: str) -> RecurlyError:
    return RecurlyError(
        422,
        "validation",
        f"{param.replace('_', ' ').capitalize()} {message}",
        params=[{"param": param, "message": message}],
    )


def bad_request(message: str) -> RecurlyError:
    return RecurlyError(400, "bad_request", message)


def immutable_subscription(message: str) -> RecurlyError:
    return RecurlyError(422, "immutable_subscription", message)


def invalid_transition(message: str) -> RecurlyError:
    """What Recurly answers to an action the object's state does not allow: 422 ``validation``
    on ``state`` (its error types have no dedicated one)."""
    return RecurlyError(422, "validation", message, params=[{"param": "state", "message": message}])


#: status for an injected fault → the error ``type`` Recurly sends with it
_FAULT_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "invalid_permissions",
    404: "not_found",
    406: "invalid_api_version",
    422: "validation",
    429: "rate_limited",
    500: "internal_server_error",
    502: "internal_server_error",
    503: "service_not_available",
    504: "service_not_available",
}


def for_status(status: int, message: str) -> RecurlyError:
    return RecurlyError(status, _FAULT_TYPES.get(status, "internal_server_error"), message)
