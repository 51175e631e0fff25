"""One deployment per route, and valid credentials for any body: the door's tests send hostile
payloads that pass authentication, so every answer is the parser's and validators' doing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import httpx
from pydantic import SecretStr
from temporalio.client import Client

from domain.settings import Settings
from tests.pairs import HS_SECRET, SF_WEBHOOK_SECRET, STRIPE_SECRET, WEBHOOK_PASSWORD, WEBHOOK_USER
from webhooks import hubspot, salesforce
from webhooks.app import create_app

HUBSPOT_URL = "http://webhooks/webhooks/hubspot"
ROUTES = ("chargebee", "stripe", "hubspot", "salesforce")


def deployment(settings: Settings, route: str, task_queue: str, **webhooks: object) -> Settings:
    """The session's settings, turned into a deployment whose billing or CRM is ``route``
    (``webhooks``: more webhook settings, e.g. the integration user that marks our writes)."""
    update: dict[str, object] = {"task_queue": task_queue}
    if route in ("chargebee", "stripe"):
        update["billing"] = route
    else:
        update["crm"] = route
    update["webhooks"] = settings.webhooks.model_copy(
        update={
            "chargebee_username": WEBHOOK_USER,
            "chargebee_password": SecretStr(WEBHOOK_PASSWORD),
            "stripe_secrets": [SecretStr(STRIPE_SECRET)],
            "hubspot_client_secret": SecretStr(HS_SECRET),
            "hubspot_public_url": HUBSPOT_URL,
            "salesforce_secrets": [SecretStr(SF_WEBHOOK_SECRET)],
            **webhooks,
        }
    )
    return settings.model_copy(update=update)


def auth(route: str, body: bytes) -> dict[str, str]:
    """Headers that authenticate ``body`` on ``route`` (signatures computed here)."""
    if route == "chargebee":
        token = base64.b64encode(f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    if route == "stripe":
        ts = int(time.time())  # Stripe signs the raw bytes, whatever they are
        digest = hmac.new(STRIPE_SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256)
        return {"Stripe-Signature": f"t={ts},v1={digest.hexdigest()}"}
    if route == "hubspot":
        ts = str(int(time.time() * 1000))
        return {
            "X-HubSpot-Signature-v3": hubspot.signature_v3(
                HS_SECRET, "POST", HUBSPOT_URL, body, ts
            ),
            "X-HubSpot-Request-Timestamp": ts,
        }
    return {salesforce.HEADER: SF_WEBHOOK_SECRET}


class CountingProvider:
    """Hands out the real client and counts how often the app asked for it."""

    def __init__(self, client: Client | None) -> None:
        self.client, self.calls = client, 0

    async def __call__(self) -> Client:
        self.calls += 1
        assert self.client is not None
        return self.client


@dataclass
class Door:
    route: str
    http: httpx.AsyncClient
    provider: CountingProvider

    async def post(self, body: bytes) -> httpx.Response:
        return await self.http.post(
            f"/webhooks/{self.route}", content=body, headers=auth(self.route, body)
        )


def door(
    settings: Settings, route: str, client: Client | None, task_queue: str, **webhooks: object
) -> Door:
    provider = CountingProvider(client)
    app = create_app(deployment(settings, route, task_queue, **webhooks), client=provider)
    # a 500 must come back as a response (as a vendor would see it), not as a test exception
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return Door(route, httpx.AsyncClient(transport=transport, base_url="http://webhooks"), provider)
