"""Chargebee-shaped errors.

Body (apidocs.chargebee.com/docs/api/error-handling): ``message``, ``type`` (optional: ``payment``,
``invalid_request``, ``operation_failed``), ``api_error_code``, ``param`` (optional),
``error_cause_id`` (optional), plus the legacy ``error_code``, ``error_msg``, ``error_param`` and
``http_status_code``. The client maps ``type`` to its exception class and *requires*
``api_error_code`` (otherwise it raises a bare ``Exception``), so every body here carries it.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class ChargebeeError(Exception):
    def __init__(
        self,
        status: int,
        api_error_code: str,
        message: str,
        type: str | None = None,  # noqa: A002 - Chargebee's attribute name
        param: str | None = None,
        error_cause_id: str | None = None,
        error_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.api_error_code = api_error_code
        self.message = message
        self.type = type
        self.param = param
        self.error_cause_id = error_cause_id
        self.error_code = error_code or api_error_code

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message}
        if self.type:
            out["type"] = self.type
        out["api_error_code"] = self.api_error_code
        if self.param:
            out["param"] = self.param
        if self.error_cause_id:
            out["error_cause_id"] = self.error_cause_id
        out["error_code"] = self.error_code
        out["error_msg"] = self.message
        if self.param:
            out["error_param"] = self.param
        out["http_status_code"] = self.status
        return out

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def not_found(resource: str, id_: str, param: str = "id") -> ChargebeeError:
    return ChargebeeError(
        404,
        "resource_not_found",
        f"{resource} {id_} not found",
        type="invalid_request",
        param=param,
        error_code="resource_not_found",
    )


def param_error(param: str, message: str | None = None) -> ChargebeeError:
    return ChargebeeError(
        400,
        "param_wrong_value",
        message or f"{param} : cannot be blank",
        type="invalid_request",
        param=param,
        error_code="param_wrong_value",
    )


def duplicate(param: str, value: str) -> ChargebeeError:
    return ChargebeeError(
        400,
        "duplicate_entry",
        f"The value {value} is already present.",
        type="invalid_request",
        param=param,
        error_code="param_not_unique",
    )


def invalid_state(message: str) -> ChargebeeError:
    return ChargebeeError(
        400,
        "invalid_state_for_request",
        message,
        type="invalid_request",
        error_code="invalid_state_for_request",
    )


def auth_failed() -> ChargebeeError:
    # Chargebee's authentication error carries no ``type``: the client raises a plain APIError.
    return ChargebeeError(
        401,
        "api_authentication_failed",
        "Sorry, authentication failed. Invalid api key",
        error_code="api_authentication_failed",
    )


def rate_limited() -> ChargebeeError:
    return ChargebeeError(
        429,
        "api_request_limit_exceeded",
        "Sorry, access has been blocked temporarily due to request count exceeding acceptable "
        "limits. Please try after some time.",
        error_code="api_request_limit_exceeded",
    )


def for_status(status: int, message: str) -> ChargebeeError:
    """The error an injected status fault answers with."""
    if status == 429:
        return rate_limited()
    if status == 401:
        return auth_failed()
    if status == 403:
        return ChargebeeError(403, "api_authorization_failed", f"Not authorized ({message})")
    if status == 404:
        return ChargebeeError(
            404, "resource_not_found", f"Resource not found ({message})", type="invalid_request"
        )
    if status == 409:
        return invalid_state(f"Conflicting request ({message})")
    if status == 503:
        return ChargebeeError(
            503,
            "internal_temporary_error",
            f"Sorry, the server is temporarily unable to handle the request ({message})",
        )
    if status == 504:
        return ChargebeeError(504, "gateway_timeout", f"Upstream timed out ({message})")
    if status >= 500:
        return ChargebeeError(status, "internal_error", f"Sorry, something went wrong ({message})")
    return ChargebeeError(status, "invalid_request", message, type="invalid_request")
