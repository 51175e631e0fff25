"""``revbridge doctor`` for the Marketing Cloud email channel (REVBRIDGE_EMAIL_CHANNEL=
marketing-cloud): the connector's own preflight (connectors/marketing_cloud.py) — the auth host
accepts the API integration's credentials, its token carries email_send and email_read, and the
send definition exists and is active. Nothing is sent."""

from __future__ import annotations

from domain.preflight import Check
from domain.settings import Settings


def checks(settings: Settings) -> list[Check]:
    from cli.doctor import connector_checks
    from connectors.registry import build_mailer

    return connector_checks("marketing-cloud", lambda: build_mailer(settings))
