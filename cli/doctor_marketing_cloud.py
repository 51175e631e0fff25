"""``revbridge doctor`` for the Marketing Cloud email channel (REVBRIDGE_EMAIL_CHANNEL=
marketing-cloud): the connector's own preflight (connectors/marketing_cloud.py) — the auth host
accepts the API integration's credentials, its token carries email_send and email_read, and the
send definition exists and is active. Nothing is sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain.preflight import Check
from domain.settings import Settings


def checks(settings: Settings, run: Callable[[str, Callable[[], Any]], list[Check]]) -> list[Check]:
    """``run`` is the doctor's ``connector_checks`` (build as the worker does, then preflight)."""
    from connectors.registry import build_mailer

    return run("marketing-cloud", lambda: build_mailer(settings))
