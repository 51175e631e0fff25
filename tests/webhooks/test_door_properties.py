"""Property tests at the door (Hypothesis), one per route: hostile payloads with VALID credentials
(signatures computed here) are answered with a documented status and a one-line reason — never a
5xx, never a hang — and a rejected event starts nothing, checked in Temporal afterwards (each
candidate workflow ID described, and every workflow on the route's task queue accounted for by
an accepted event).

The payloads: vendor-shaped events with one to three fields replaced by hostile values (wrong
types, huge or negative integers, IDs with spaces, slashes, unicode, 300 characters), raw JSON
tokens no encoder writes (``1e400``, ``NaN``, 400- and 5,000-digit integers, deep nesting), and
plain garbage bytes. Examples are bounded (``EXAMPLES`` per route) so the suite stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from domain.settings import RecurlySettings, Settings
from sandbox.framework import App, ServerThread
from sandbox.recurly import RecurlyEmulator
from tests.pairs import RECURLY_KEY
from tests.webhooks.door import ROUTES, auth, deployment
from webhooks.app import TemporalConnection, create_app

#: per route; DOOR_EXAMPLES=500 for a deeper run
#: every route; Recurly's re-fetches what a notification names from a Recurly sandbox
PROPERTY_ROUTES = (*ROUTES, "zuora", "recurly")
EXAMPLES = int(os.environ.get("DOOR_EXAMPLES", "40"))
DOCUMENTED = {200, 202, 400, 413, 422}
RAW = "__raw_token__"

_ids = itertools.count()

hostile_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", " ", "a b", "../../x", "ü", "x" * 300, "line\nbreak", "1e400", "0x1f"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.just(RAW),
)
raw_token = st.sampled_from(
    [b"1e400", b"-1e400", b"NaN", b"Infinity", b"9" * 400, b"1" + b"0" * 5000, b"[" * 100_000]
)


def template(route: str, n: int) -> tuple[Any, list[tuple[Any, ...]]]:
    """A well-formed event with fresh IDs, and the paths a mutation may replace."""
    now = int(time.time())
    if route == "chargebee":
        body = {
            "id": f"ev_{n}",
            "occurred_at": now,
            "api_version": "v2",
            "event_type": "payment_failed",
            "content": {
                "transaction": {"error_code": "card_declined"},
                "invoice": {
                    "id": f"INV-p{n}",
                    "customer_id": f"cust_p{n}",
                    "subscription_id": f"sub_p{n}",
                    "amount_due": 2000,
                    "currency_code": "USD",
                },
            },
        }
        inv = ("content", "invoice")
        paths = [("id",), ("occurred_at",), ("api_version",), ("event_type",), ("content",),
                 ("content", "transaction"), ("content", "transaction", "error_code"),
                 (*inv,), (*inv, "id"), (*inv, "customer_id"), (*inv, "subscription_id"),
                 (*inv, "amount_due"), (*inv, "currency_code")]  # fmt: skip
        return body, paths
    if route == "stripe":
        body = {
            "id": f"evt_p{n}",
            "object": "event",
            "created": now,
            "type": "invoice.payment_failed",
            "request": {"id": None, "idempotency_key": None},
            "data": {
                "object": {
                    "id": f"in_p{n}",
                    "object": "invoice",
                    "customer": f"cus_p{n}",
                    "currency": "usd",
                    "amount_due": 2000,
                    "parent": {"subscription_details": {"subscription": f"sub_p{n}"}},
                }
            },
        }
        obj = ("data", "object")
        paths = [("id",), ("created",), ("type",), ("request",), ("data",), (*obj,),
                 (*obj, "id"), (*obj, "object"), (*obj, "customer"), (*obj, "currency"),
                 (*obj, "amount_due"), (*obj, "parent"),
                 (*obj, "parent", "subscription_details", "subscription")]  # fmt: skip
        return body, paths
    if route == "recurly":
        body = {
            "id": f"rn{n}",
            "object_type": "payment",
            "event_type": "failed",
            "uuid": f"{n:032x}",
            "event_time": "2026-11-27T10:00:00Z",
        }
        paths = [("id",), ("object_type",), ("event_type",), ("uuid",), ("event_time",)]
        return body, paths
    if route == "zuora":
        body = {
            "eventCategory": "PaymentDeclined",
            "eventTimestamp": "2026-11-27T10:00:00Z",
            "paymentId": f"8a90p{n}",
            "accountId": f"8a90a{n}",
            "invoiceId": f"8a90i{n}",
            "gatewayResponseCode": "51",
        }
        paths = [("eventCategory",), ("eventTimestamp",), ("paymentId",), ("accountId",),
                 ("invoiceId",), ("gatewayResponseCode",)]  # fmt: skip
        return body, paths
    if route == "hubspot":
        body = [
            {
                "eventId": 10_000 + n,
                "subscriptionId": 1,
                "portalId": 62515,
                "occurredAt": now * 1000,
                "subscriptionType": "ticket.creation",
                "objectId": 900_000_000 + n,
                "changeSource": "CRM_UI",
            }
        ]
        paths = [(0,), (0, "eventId"), (0, "occurredAt"), (0, "subscriptionType"),
                 (0, "objectId"), (0, "changeSource")]  # fmt: skip
        return body, paths
    body = {
        "event": "case_created",
        "eventId": f"e-{n}",
        "sobject": "Case",
        "recordId": f"500P{n:011d}",
        "occurredAt": "2026-11-27T10:00:00.000+0000",
        "record": {"Id": f"500P{n:011d}"},
    }
    paths = [("event",), ("eventId",), ("recordId",), ("occurredAt",), ("record",)]
    return body, paths


def candidates(route: str, n: int) -> list[str]:
    """Every workflow ID the template's event could start."""
    if route == "chargebee":
        return [f"dunning:chargebee:INV-p{n}", f"churn:chargebee:cust_p{n}"]
    if route == "stripe":
        return [f"dunning:stripe:in_p{n}", f"churn:stripe:cus_p{n}"]
    if route == "zuora":
        return [f"dunning:zuora:8a90i{n}", f"churn:zuora:8a90a{n}"]
    if route == "recurly":  # the IDs come from the re-fetch: nothing of the sandbox's matches
        return []
    if route == "hubspot":
        return [f"case:hubspot:{900_000_000 + n}"]
    return [f"case:salesforce:500P{n:011d}"]


def started_by(route: str, body: bytes, answer: dict[str, Any]) -> set[str]:
    """The workflow IDs an accepted event started or signalled: those the answer names (a failed
    payment's churn run is its dunning run's to start, not the service's: one call per event)."""
    del route, body
    results = answer.get("results", [answer])
    return {r["workflow_id"] for r in results if r.get("status") in ("accepted", "duplicate")}


def put(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    target = body
    for key in path[:-1]:
        try:
            target = target[key]
        except (KeyError, IndexError, TypeError):
            return body  # an earlier mutation removed the parent
    with contextlib.suppress(IndexError, TypeError):
        target[path[-1]] = value
    return body


@st.composite
def hostile(draw: st.DrawFn, route: str) -> tuple[bytes, int]:
    n = next(_ids)
    body, paths = template(route, n)
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "garbage", "random_json"]))
    if kind == "garbage":
        return draw(st.binary(max_size=300)), n
    if kind == "random_json":
        value = draw(
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                lambda inner: (
                    st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=4)
                ),
                max_leaves=20,
            )
        )
        return json.dumps(value).encode(), n
    body = copy.deepcopy(body)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        body = put(body, draw(st.sampled_from(paths)), draw(hostile_value))
    raw = json.dumps(body).encode()
    return raw.replace(json.dumps(RAW).encode(), draw(raw_token)), n


@pytest.fixture(scope="module")
def doors(
    temporal_env: WorkflowEnvironment, settings: Settings
) -> Iterator[dict[str, tuple[str, str]]]:
    """One webhook service per route on a real port (its own loop and Temporal connection), each
    starting work on a task queue of its own that no worker polls."""
    os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
    tag = f"{time.time_ns():x}"
    queues = {route: f"door-props-{route}-{tag}" for route in PROPERTY_ROUTES}
    recurly = RecurlyEmulator(api_key=RECURLY_KEY, rate_limit_per_minute=None)
    with ServerThread({recurly: 0}) as vendor:
        settings = settings.model_copy(
            update={
                "recurly": RecurlySettings(
                    api_key=SecretStr(RECURLY_KEY), api_url=vendor.urls["recurly"]
                )
            }
        )
        apps = {
            App(f"door-{route}", create_app(deployment(settings, route, queues[route]),
                                            client=TemporalConnection())): 0
            for route in PROPERTY_ROUTES
        }  # fmt: skip
        with ServerThread(apps) as thread:
            yield {
                route: (thread.urls[f"door-{route}"], queues[route]) for route in PROPERTY_ROUTES
            }


async def _started(target: str, namespace: str, queue: str) -> tuple[Client, set[str]]:
    client = await Client.connect(target, namespace=namespace)
    found = {w.id async for w in client.list_workflows(f"TaskQueue = '{queue}'")}
    return client, found


async def _exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


@pytest.mark.parametrize("route", PROPERTY_ROUTES)
def test_hostile_payloads_with_valid_auth_never_5xx_hang_or_start_a_rejected_run(
    route: str, doors: dict[str, tuple[str, str]], temporal_env: WorkflowEnvironment
) -> None:
    base, queue = doors[route]
    url = f"{base}/webhooks/{route}"
    accepted: set[str] = set()
    rejected: set[str] = set()
    statuses: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=hostile(route))
    def check(case: tuple[bytes, int]) -> None:
        body, n = case
        headers = auth(route, body)
        started = time.monotonic()
        resp = httpx.post(url, content=body, headers=headers, timeout=10)
        assert time.monotonic() - started < 5, "a hostile payload must not hang the door"
        assert resp.status_code in DOCUMENTED, (resp.status_code, resp.text[:200])
        statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
        answer = resp.json()
        if resp.status_code >= 400:
            assert isinstance(answer["error"], str) and "\n" not in answer["error"]
            rejected.update(candidates(route, n))
            return
        results = answer.get("results", [answer])  # HubSpot answers per event of the batch
        for result in results:
            if result.get("status") == "dead_letter":
                assert "\n" not in result["reason"]
        started = started_by(route, body, answer)
        accepted.update(started)
        # the template's own IDs, where the event did not start them (refused, ignored, echo)
        rejected.update(set(candidates(route, n)) - started)

    check()
    rejected -= accepted  # an event's other half (a paid invoice) may be ignored, not refused
    target = temporal_env.client.service_client.config.target_host
    namespace = temporal_env.client.namespace

    async def verify() -> None:
        client, found = await _started(target, namespace, queue)
        for _ in range(50):  # visibility trails the starts by a moment
            if {a for a in accepted if a.startswith(("dunning:", "case:"))} <= found:
                break
            await asyncio.sleep(0.1)
            client, found = await _started(target, namespace, queue)
        assert found <= accepted, f"runs no accepted event explains: {sorted(found - accepted)}"
        for workflow_id in sorted(rejected):
            assert not await _exists(client, workflow_id), f"{workflow_id} started by a rejection"

    asyncio.run(verify())
    assert any(code >= 400 for code in statuses), statuses  # the refusals are reached
