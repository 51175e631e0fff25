"""Stripe-shaped errors: ``{"error": {"type", "code", "message", "param", "decline_code"?, "doc_url"?}}``."""

from __future__ import annotations

from typing import Any

DOC_URL = "https://stripe.com/docs/error-codes/{code}"

#: decline_code -> (error code, message), as Stripe's test cards answer them.
DECLINES: dict[str, tuple[str, str]] = {
    "generic_decline": ("card_declined", "Your card was declined."),
    "insufficient_funds": ("card_declined", "Your card has insufficient funds."),
    "lost_card": ("card_declined", "Your card was declined."),
    "stolen_card": ("card_declined", "Your card was declined."),
    "fraudulent": ("card_declined", "Your card was declined."),
    "do_not_honor": ("card_declined", "Your card was declined."),
    "card_velocity_exceeded": (
        "card_declined",
        "Your card was declined for making repeated attempts too frequently or exceeding its "
        "amount limit.",
    ),
    "expired_card": ("expired_card", "Your card has expired."),
    "incorrect_cvc": ("incorrect_cvc", "Your card's security code is incorrect."),
    "incorrect_number": ("incorrect_number", "Your card number is incorrect."),
    "processing_error": (
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
    "authentication_required": (
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
    ),
}


def decline_details(decline_code: str) -> tuple[str, str]:
    """(code, message) for a decline code; unknown codes decline like ``generic_decline``."""
    return DECLINES.get(decline_code, ("card_declined", "Your card was declined."))


class StripeError(Exception):
    """An API error. ``cacheable`` says whether an idempotency key stores it (Stripe saves results
    only once the endpoint started executing, so validation failures are not saved)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        cacheable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.extra = extra or {}
        self.headers = headers or {}
        self.cacheable = cacheable

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = DOC_URL.format(code=self.code)
        if self.param:
            err["param"] = self.param
        if self.decline_code:
            err["decline_code"] = self.decline_code
        err.update(self.extra)
        return {"error": err}


def missing(param: str) -> StripeError:
    return StripeError(
        400, f"Missing required param: {param}.", code="parameter_missing", param=param
    )


def invalid(param: str, message: str, code: str = "parameter_invalid_empty") -> StripeError:
    return StripeError(400, message, code=code, param=param)


def unknown_param(param: str) -> StripeError:
    return StripeError(
        400,
        f"Received unknown parameter: {param}",
        code="parameter_unknown",
        param=param,
    )


def no_such(kind: str, obj_id: str, param: str = "id") -> StripeError:
    return StripeError(404, f"No such {kind}: '{obj_id}'", code="resource_missing", param=param)


def card_error(decline_code: str, extra: dict[str, Any] | None = None) -> StripeError:
    code, message = decline_details(decline_code)
    return StripeError(
        402,
        message,
        type="card_error",
        code=code,
        decline_code=decline_code,
        extra=extra,
        cacheable=True,
    )


def fault_error(status: int, message: str) -> StripeError:
    """The error an injected status fault answers with, shaped like Stripe's for that status."""
    if status == 400:
        return StripeError(400, message)
    if status == 401:
        return StripeError(401, f"Invalid API Key provided ({message})")
    if status == 402:
        return StripeError(
            402,
            "Your card was declined.",
            type="card_error",
            code="card_declined",
            decline_code="generic_decline",
        )
    if status == 403:
        return StripeError(403, f"The provided key does not have access ({message})")
    if status == 404:
        return StripeError(404, f"Resource not found ({message})", code="resource_missing")
    if status == 409:
        return StripeError(
            409,
            "There is currently another in-progress request using this idempotent key "
            f"({message}). Please try again later.",
            type="idempotency_error",
            code="idempotency_key_in_use",
        )
    if status == 429:
        return StripeError(
            429,
            "Request rate limit exceeded. You can learn more about rate limits here "
            f"https://stripe.com/docs/rate-limits. ({message})",
            code="rate_limit",
        )
    if status >= 500:
        return StripeError(
            status,
            f"An unknown error occurred while processing your request ({message}).",
            type="api_error",
        )
    return StripeError(status, message)
