"""Turns connector errors into Temporal retry behaviour: permanent → non-retryable with a stable
type, rate limits (a 429, an exhausted daily allowance, this worker's pacing) →
``next_retry_delay`` from the vendor's reset header, the rest → retried. The decorator also tells
the connectors which attempt is running, so a retried write can read back before re-sending."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import ParamSpec, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from connectors import limits
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
        number = activity.info().attempt if activity.in_activity() else 1
        try:
            with limits.attempt(number):
                return fn(*args, **kwargs)
        except ConnectorError as err:
            raise to_application_error(err) from None

    return wrapper
