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

from domain.settings import RecurlySettings, Settings
from tests.pairs import HS_SECRET, SF_WEBHOOK_SECRET, STRIPE_SECRET, WEBHOOK_PASSWORD, WEBHOOK_USER
from webhooks import hubspot, salesforce, zendesk
from webhooks.app import create_app

HUBSPOT_URL = "http://webhooks/webhooks/hubspot"
ROUTES = ("chargebee", "stripe", "hubspot", "salesforce")
#: with the routes added later (their normalizers re-fetch from the vendor: no property test here)
ALL_ROUTES = (*ROUTES, "zuora", "recurly", "zendesk")
RECURLY_SECRET = "recurly-door-secret"
ZUORA_USER, ZUORA_PASSWORD = "zuora-callouts", "zuora-door-password"
ZENDESK_SECRET = "zendesk-door-secret"


def deployment(settings: Settings, route: str, task_queue: str, **webhooks: object) -> Settings:
    """The session's settings, turned into a deployment whose billing or CRM is ``route``
    (``webhooks``: more webhook settings, e.g. the integration user that marks our writes)."""
    update: dict[str, object] = {"task_queue": task_queue}
    if route in ("chargebee", "stripe", "zuora", "recurly"):
        update["billing"] = route
        if route == "recurly" and settings.recurly is None:
            # nothing is looked up in these tests: every body is refused before the re-fetch
            update["recurly"] = RecurlySettings(
                api_key=SecretStr("door"), api_url="http://127.0.0.1:9"
            )
    elif route == "zendesk":
        update["desk"] = route  # a support desk beside the CRM (REVBRIDGE_DESK=zendesk)
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
            "recurly_secrets": [SecretStr(RECURLY_SECRET)],
            "zuora_username": ZUORA_USER,
            "zuora_password": SecretStr(ZUORA_PASSWORD),
            "zendesk_secrets": [SecretStr(ZENDESK_SECRET)],
            **webhooks,
        }
    )
    return settings.model_copy(update=update)


def auth(route: str, body: bytes) -> dict[str, str]:
    """Headers that authenticate ``body`` on ``route`` (signatures computed here)."""
    if route == "chargebee":
        token = base64.b64encode(f"{WEBHOOK_USER}:{WEBHOOK_PASSWORD}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    if route == "zuora":
        token = base64.b64encode(f"{ZUORA_USER}:{ZUORA_PASSWORD}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    if route == "recurly":
        ms = str(int(time.time() * 1000))
        digest = hmac.new(RECURLY_SECRET.encode(), ms.encode() + b"." + body, hashlib.sha256)
        return {"recurly-signature": f"{ms},{digest.hexdigest()}"}
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
    if route == "zendesk":
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # Zendesk signs timestamp + body
        return {zendesk.SIGNATURE: zendesk.sign(ZENDESK_SECRET, ts, body), zendesk.TIMESTAMP: ts}
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
