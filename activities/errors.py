"""Turns connector errors into Temporal retry behaviour: permanent → non-retryable with a stable
type, rate limits → ``next_retry_delay`` from the vendor's Retry-After, the rest → retried."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import ParamSpec, TypeVar

from temporalio.exceptions import ApplicationError

from connectors.base import ConnectorError, ErrorKind

P = ParamSpec("P")
R = TypeVar("R")


def to_application_error(err: ConnectorError) -> ApplicationError:
    return ApplicationError(
        str(err),
        type=f"{err.vendor}.{err.code or err.kind.value}",
        non_retryable=err.kind is ErrorKind.PERMANENT,
        next_retry_delay=timedelta(seconds=err.retry_after) if err.retry_after else None,
    )


def vendor_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator for activity methods that call connectors."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ConnectorError as err:
            raise to_application_error(err) from None

    return wrapper
