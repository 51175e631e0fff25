"""The Salesforce route: a record-triggered Flow's HTTP callout with a shared-secret header
(reference §1.9). Bad secrets start nothing; a won opportunity starts quote-to-cash and a new case
starts support context, each exactly once however often the callout is delivered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client

from domain.settings import Settings
from webhooks import salesforce
from webhooks.app import create_app
from webhooks.errors import Rejected

URL = "/webhooks/salesforce"
SECRET = "flow-secret-current"
ORG = "00D000000000001EAA"


def callout(kind: str, record_id: str, event_id: str = "e-1", org: str = ORG) -> bytes:
    sobject = "Opportunity" if kind == "opportunity_closed_won" else "Case"
    return json.dumps(
        {
            "event": kind,
            "eventId": event_id,
            "sobject": sobject,
            "recordId": record_id,
            "orgId": org,
            "occurredAt": "2026-11-27T10:00:00.000+0000",
            "record": {"Id": record_id},
        }
    ).encode()


class CountingProvider:
    def __init__(self, client: Client) -> None:
        self.client, self.calls = client, 0

    async def __call__(self) -> Client:
        self.calls += 1
        return self.client


@pytest.fixture
def provider(client: Client) -> CountingProvider:
    return CountingProvider(client)


@pytest.fixture
async def http(
    settings: Settings, provider: CountingProvider, uid: str
) -> AsyncIterator[httpx.AsyncClient]:
    deployment = settings.model_copy(
        update={
            "crm": "salesforce",
            # a queue no worker polls: these tests are about what gets started, not how it runs
            "task_queue": f"sf-webhooks-{uid}",
            "webhooks": settings.webhooks.model_copy(
                update={
                    "salesforce_secrets": [SecretStr("flow-secret-old"), SecretStr(SECRET)],
                    "salesforce_org_id": ORG,
                }
            ),
        }
    )
    app = create_app(deployment, client=provider)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://webhooks"
    ) as http:
        yield http


def header(secret: str = SECRET) -> dict[str, str]:
    return {"X-RevBridge-Webhook-Secret": secret}


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing x-revbridge-webhook-secret header"),
        (header("nope"), "webhook secret does not match"),
        (header(SECRET[:-1]), "webhook secret does not match"),
    ],
    ids=["missing", "wrong", "prefix"],
)
async def test_bad_secret_is_401_and_starts_nothing(
    http: httpx.AsyncClient, provider: CountingProvider, headers: dict, reason: str, uid: str
) -> None:
    resp = await http.post(
        URL, content=callout("opportunity_closed_won", f"006{uid[:12]}"), headers=headers
    )
    assert (resp.status_code, resp.json()) == (401, {"error": reason})
    assert provider.calls == 0


async def test_the_previous_secret_still_works_during_a_rotation(
    http: httpx.AsyncClient, client: Client, uid: str
) -> None:
    resp = await http.post(
        URL, content=callout("case_created", f"500{uid[:12]}"), headers=header("flow-secret-old")
    )
    assert resp.status_code == 202
    await client.get_workflow_handle(resp.json()["workflow_id"]).terminate("test over")


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "malformed JSON at position 1"),
        (b"[]", 400, "body is not a JSON object"),
        (json.dumps({"event": "case_created", "recordId": "500x"}).encode(), 400,
         "eventId is missing"),
        (json.dumps({"event": "case_created", "eventId": "e"}).encode(), 400,
         "recordId is missing"),
        (callout("case_created", "500abc", org="00D999999999999AAA"), 403,
         "callout from another Salesforce org"),
        (callout("case_created", "500 has spaces"), 422, "not a provider ID: '500 has spaces'"),
    ],
    ids=["malformed", "not-object", "no-event-id", "no-record-id", "other-org", "bad-id"],
)  # fmt: skip
async def test_bad_bodies_get_one_line_reasons(
    http: httpx.AsyncClient, body: bytes, status: int, reason: str
) -> None:
    resp = await http.post(URL, content=body, headers=header())
    assert (resp.status_code, resp.json()) == (status, {"error": reason})


async def test_an_event_type_not_routed_is_acknowledged(http: httpx.AsyncClient) -> None:
    resp = await http.post(URL, content=callout("account_updated", "001abc"), headers=header())
    assert (resp.status_code, resp.json()["status"]) == (200, "ignored")


@pytest.mark.parametrize(
    ("kind", "prefix", "workflow_type", "id_prefix"),
    [
        ("opportunity_closed_won", "006", "QuoteToCashWorkflow", "q2c:salesforce:"),
        ("case_created", "500", "SupportContextWorkflow", "case:salesforce:"),
    ],
)
async def test_redelivered_callouts_start_one_workflow(
    http: httpx.AsyncClient,
    client: Client,
    kind: str,
    prefix: str,
    workflow_type: str,
    id_prefix: str,
    uid: str,
) -> None:
    record = f"{prefix}{uid[:12]}"
    answers = await asyncio.gather(
        *(
            http.post(URL, content=callout(kind, record, f"e-{i}"), headers=header())
            for i in range(4)
        )
    )
    statuses = sorted(r.json()["status"] for r in answers)
    assert statuses == ["accepted", "duplicate", "duplicate", "duplicate"]
    assert {r.json()["workflow_id"] for r in answers} == {f"{id_prefix}{record}"}
    handle = client.get_workflow_handle(f"{id_prefix}{record}")
    desc = await handle.describe()
    assert desc.workflow_type == workflow_type
    attrs: dict[str, Any] = {k.name: v for k, v in desc.typed_search_attributes}  # type: ignore[misc]
    assert attrs["RevBridgeUseCase"] in ("quote_to_cash", "support_context")
    await handle.terminate("test over")


def test_verify_checks_every_secret() -> None:
    salesforce.verify("b", ["a", "b"])
    with pytest.raises(Rejected) as exc:
        salesforce.verify("c", ["a", "b"])
    assert exc.value.status == 401
