"""The HubSpot emulator, driven through the official ``hubspot-api-client`` 12.x.

The client returns ``None`` silently when a status code differs from the one it declares
(reference §0.2), so every test asserts typed models come back, not just "no exception".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import hubspot
import pytest
from hubspot.crm.associations.v4 import AssociationSpec
from hubspot.crm.associations.v4.models import LabelsBetweenObjectPair
from hubspot.crm.companies import SimplePublicObjectInput as CompanyUpdate
from hubspot.crm.companies import SimplePublicObjectInputForCreate as CompanyCreate
from hubspot.crm.companies.exceptions import ApiException as CompanyApiException
from hubspot.crm.contacts.exceptions import ApiException as ContactApiException
from hubspot.crm.deals.exceptions import ApiException as DealApiException
from hubspot.crm.objects import (
    BatchInputSimplePublicObjectBatchInputUpsert,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.objects.exceptions import ApiException, NotFoundException
from hubspot.crm.objects.notes import SimplePublicObjectInputForCreate as NoteCreate
from hubspot.crm.objects.notes.exceptions import ApiException as NoteApiException
from hubspot.crm.properties import PropertyCreate
from hubspot.crm.properties.exceptions import ApiException as PropertyApiException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.framework import App, ServerThread
from sandbox.hubspot import API_ROUTES, HubSpotEmulator
from sandbox.hubspot.emulator import SEARCH_LAG_S, SEARCH_RATE_LIMIT_PER_S
from sandbox.hubspot.spec import SpecIndex, default_spec_dir

TOKEN = "pat-local-revbridge"
SECRET = "hubspot-local-secret"


def make_client(base_url: str, token: str = TOKEN) -> hubspot.HubSpot:
    """The connector's recipe: ``host`` redirects every generated API group, ``base_url`` the
    generic ``client.api_request`` (reference §2.1). ``retry=False``: urllib3's default Retry(3)
    would otherwise sleep out a 429's Retry-After on GETs, hidden from the caller (and Temporal)."""
    return hubspot.HubSpot(access_token=token, host=base_url, base_url=base_url, retry=False)


class Receiver:
    """A webhook receiver recording raw requests, served by the ServerThread beside the emulator."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        self.app = App(
            "receiver", Starlette(routes=[Route("/hooks/hubspot", self._hook, methods=["POST"])])
        )

    def clear(self) -> None:
        self.received.clear()
        self.arrived.clear()

    async def _hook(self, request: Request) -> Response:
        self.received.append({"headers": dict(request.headers), "body": await request.body()})
        self.arrived.set()
        return JSONResponse({"ok": True})


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[HubSpotEmulator, Receiver, ServerThread]]:
    emulator, receiver = HubSpotEmulator(), Receiver()
    with ServerThread({emulator: 0, receiver.app: 0}) as st:
        yield emulator, receiver, st


@pytest.fixture
def hs(servers) -> HubSpotEmulator:
    emulator, receiver, st = servers
    emulator.reset_state()
    emulator.faults.clear()
    emulator.webhook_targets.clear()
    emulator.search_rate_limit_per_s = SEARCH_RATE_LIMIT_PER_S  # a test may have changed it
    receiver.clear()
    return emulator


@pytest.fixture
def url(servers) -> str:
    return servers[2].urls["hubspot"]


@pytest.fixture
def hs_client(url: str, hs: HubSpotEmulator) -> hubspot.HubSpot:
    return make_client(url)


def _error(exc: Exception) -> dict[str, Any]:
    return json.loads(exc.body)  # type: ignore[attr-defined]


# --- client wiring -------------------------------------------------------------------------------


def test_both_host_overrides_reach_the_emulator(
    hs_client: hubspot.HubSpot, hs: HubSpotEmulator
) -> None:
    hs.ledger.clear()
    hs_client.crm.companies.basic_api.get_page(limit=1)
    resp = hs_client.api_request({"method": "GET", "path": "/crm/v3/properties/companies"})
    assert resp.status_code == 200
    paths = [(r["method"], r["path"]) for r in hs.ledger]
    assert paths == [("GET", "/crm/v3/objects/companies"), ("GET", "/crm/v3/properties/companies")]
    assert all(r["headers"]["authorization"] == "<redacted>" for r in hs.ledger)
    assert hs.ledger[0]["headers"]["user-agent"].startswith("hubspot-api-client-python")


def test_bad_token_is_401_with_hubspots_body(url: str, hs: HubSpotEmulator) -> None:
    with pytest.raises(CompanyApiException) as exc:
        make_client(url, token="pat-wrong").crm.companies.basic_api.get_page()
    assert exc.value.status == 401
    body = _error(exc.value)
    assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION"
    assert body["message"].startswith("Authentication credentials not found")
    assert len(body["correlationId"]) == 36


def test_routes_and_statuses_match_the_openapi_specs() -> None:
    index = SpecIndex(default_spec_dir())
    for method, template, _handler, status in API_ROUTES:
        assert index.has(method, template), (method, template)
        assert status in index.success_statuses(method, template), (method, template, status)


# --- objects -------------------------------------------------------------------------------------


def test_company_create_get_update_archive(hs_client: hubspot.HubSpot, hs: HubSpotEmulator) -> None:
    api = hs_client.crm.companies.basic_api
    created = api.create(
        CompanyCreate(
            properties={
                "name": "Acme",
                "domain": "acme.test",
                "billing_customer_id": "cus_1",
                "mrr": 1200,
            }
        )
    )
    assert type(created).__name__ == "SimplePublicObject"  # a 200 instead of 201 gives None
    assert created.properties["mrr"] == "1200" and created.properties["hs_object_id"] == created.id
    assert created.created_at.tzinfo is not None and created.archived is False
    raw = next(r for r in hs.ledger if r["method"] == "POST")
    assert raw["status"] == 201

    got = api.get_by_id(created.id, properties=["name", "mrr", "industry"])
    assert got.properties["name"] == "Acme" and got.properties["industry"] is None
    assert {"hs_object_id", "createdate", "lastmodifieddate"} <= set(got.properties)
    by_key = api.get_by_id("cus_1", id_property="billing_customer_id")
    assert by_key.id == created.id

    updated = api.update(
        created.id, SimplePublicObjectInput(properties={"industry": "SOFTWARE", "mrr": ""})
    )
    assert updated is not None and updated.properties["industry"] == "SOFTWARE"
    assert "mrr" not in updated.properties  # an empty string clears
    assert updated.updated_at >= created.updated_at

    assert api.archive(created.id) is None
    with pytest.raises(CompanyApiException) as exc:
        api.get_by_id(created.id)
    assert exc.value.status == 404
    body = _error(exc.value)
    assert body["category"] == "OBJECT_NOT_FOUND" and body["context"] == {"id": [created.id]}


def test_list_paging_and_get_all(hs_client: hubspot.HubSpot, hs: HubSpotEmulator) -> None:
    ids = hs.seed(
        {"objects": {"companies": [{"properties": {"name": f"Co {i}"}} for i in range(25)]}}
    )["objects"]["companies"]
    api = hs_client.crm.companies.basic_api
    seen, after, pages = [], None, 0
    while True:
        page = api.get_page(limit=10, after=after, properties=["name"])
        pages += 1
        seen += [c.id for c in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert pages == 3 and seen == ids
    everything = hs_client.crm.companies.get_all(properties=["name"])
    assert [c.id for c in everything] == ids
    assert everything[24].properties["name"] == "Co 24"


def test_generic_objects_api_for_tasks_and_notes(hs_client: hubspot.HubSpot) -> None:
    note = hs_client.crm.objects.notes.basic_api.create(
        SimplePublicObjectInputForCreate(
            properties={"hs_note_body": "hi", "hs_timestamp": 1_700_000_000_000}
        )
    )
    assert note is not None and note.properties["hs_timestamp"] == "2023-11-14T22:13:20.000Z"
    same = hs_client.crm.objects.basic_api.get_by_id("0-46", note.id, properties=["hs_note_body"])
    assert same.properties["hs_note_body"] == "hi"
    with pytest.raises(ApiException) as exc:  # hs_timestamp is required on tasks
        hs_client.crm.objects.basic_api.create(
            "tasks", SimplePublicObjectInputForCreate(properties={"hs_task_subject": "x"})
        )
    assert exc.value.status == 400 and "hs_timestamp is required" in _error(exc.value)["message"]


def test_unknown_property_is_400_validation_error(hs_client: hubspot.HubSpot) -> None:
    with pytest.raises(CompanyApiException) as exc:
        hs_client.crm.companies.basic_api.create(
            CompanyCreate(properties={"name": "X", "no_such_prop": "1"})
        )
    assert exc.value.status == 400
    body = _error(exc.value)
    assert body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Property values were not valid: ")
    detail = json.loads(body["message"].removeprefix("Property values were not valid: "))
    assert detail[0]["error"] == "PROPERTY_DOESNT_EXIST" and detail[0]["name"] == "no_such_prop"
    assert body["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"
    with pytest.raises(DealApiException) as exc:  # enumeration options are checked (each API
        hs_client.crm.deals.basic_api.create(
            SimplePublicObjectInputForCreate(properties={"dealstage": "won"})
        )
    assert "INVALID_OPTION" in _error(exc.value)["message"]  # group has its own ApiException)


def test_unique_property_conflict_is_409(hs_client: hubspot.HubSpot) -> None:
    api = hs_client.crm.companies.basic_api
    first = api.create(CompanyCreate(properties={"name": "A", "billing_customer_id": "cus_dup"}))
    with pytest.raises(CompanyApiException) as exc:
        api.create(CompanyCreate(properties={"name": "B", "billing_customer_id": "cus_dup"}))
    assert exc.value.status == 409
    body = _error(exc.value)
    assert body["category"] == "CONFLICT" and f"Existing ID: {first.id}" in body["message"]
    contacts = hs_client.crm.contacts.basic_api
    c = contacts.create(SimplePublicObjectInputForCreate(properties={"email": "a@b.test"}))
    with pytest.raises(ContactApiException) as exc:
        contacts.create(SimplePublicObjectInputForCreate(properties={"email": "A@b.test"}))
    assert _error(exc.value)["message"] == f"Contact already exists. Existing ID: {c.id}"


def test_not_found_raises_not_found_exception(hs_client: hubspot.HubSpot) -> None:
    with pytest.raises(NotFoundException) as exc:
        hs_client.crm.objects.basic_api.get_by_id("deals", "999999")
    assert exc.value.status == 404 and _error(exc.value)["category"] == "OBJECT_NOT_FOUND"


def test_batch_upsert_by_unique_key_creates_then_updates(hs_client: hubspot.HubSpot) -> None:
    api = hs_client.crm.objects.batch_api

    def upsert(body: str) -> Any:
        return api.upsert(
            "tickets",
            BatchInputSimplePublicObjectBatchInputUpsert(
                inputs=[
                    SimplePublicObjectBatchInputUpsert(
                        id="wf-1/step-3",
                        id_property="revbridge_key",
                        properties={"subject": "Payment failed", "content": body},
                    )
                ]
            ),
        )

    first, second = upsert("v1"), upsert("v2")
    assert first is not None and second is not None  # 200, not 201
    assert first.status == "COMPLETE" and first.results[0].new is True
    assert second.results[0].new is False and second.results[0].id == first.results[0].id
    assert second.results[0].properties["content"] == "v2"
    assert second.results[0].properties["revbridge_key"] == "wf-1/step-3"
    page = hs_client.crm.tickets.basic_api.get_page(properties=["content"])
    assert len(page.results) == 1
    got = hs_client.crm.tickets.basic_api.get_by_id("wf-1/step-3", id_property="revbridge_key")
    assert got.id == first.results[0].id  # the "/" in the id travels percent-encoded


@pytest.mark.parametrize("otype", ["notes", "tasks"])
def test_activities_refuse_unique_properties_and_reads_by_one(
    hs_client: hubspot.HubSpot, url: str, otype: str
) -> None:
    """HubSpot has unique properties for contacts, companies, deals, tickets and custom objects,
    not for activities: creating one on notes/tasks is a 400, and so is any ``idProperty``
    read or upsert there (the sandbox used to allow both)."""
    with pytest.raises(PropertyApiException) as err:
        hs_client.crm.properties.core_api.create(
            otype,
            PropertyCreate(
                name="rb_unique_key",
                label="x",
                type="string",
                field_type="text",
                group_name="g",
                has_unique_value=True,
            ),
        )
    assert err.value.status == 400
    assert _error(err.value)["category"] == "VALIDATION_ERROR"
    assert "rb_unique_key" not in {
        p.name for p in hs_client.crm.properties.core_api.get_all(otype).results
    }
    # a plain (non-unique) custom property is fine on activities
    hs_client.crm.properties.core_api.create(
        otype,
        PropertyCreate(
            name="rb_plain", label="x", type="string", field_type="text", group_name="g"
        ),
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    read = httpx.get(
        f"{url}/crm/v3/objects/{otype}/k-1", params={"idProperty": "rb_plain"}, headers=headers
    )
    assert read.status_code == 400
    assert read.json()["category"] == "VALIDATION_ERROR"
    assert "non-unique" in read.json()["message"]
    upsert = httpx.post(
        f"{url}/crm/v3/objects/{otype}/batch/upsert",
        json={"inputs": [{"id": "k-1", "idProperty": "rb_plain", "properties": {}}]},
        headers=headers,
    )
    assert upsert.status_code == 400


def test_a_text_value_over_65536_characters_is_refused(hs_client: hubspot.HubSpot) -> None:
    notes = hs_client.crm.objects.notes.basic_api
    at = "2024-05-01T10:00:00Z"
    ok = notes.create(NoteCreate(properties={"hs_note_body": "x" * 65_536, "hs_timestamp": at}))
    assert len(notes.get_by_id(ok.id, properties=["hs_note_body"]).properties["hs_note_body"]) == (
        65_536
    )
    with pytest.raises(NoteApiException) as err:
        notes.create(NoteCreate(properties={"hs_note_body": "x" * 65_537, "hs_timestamp": at}))
    assert err.value.status == 400
    body = _error(err.value)
    assert body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Property values were not valid")
    assert body["errors"][0]["context"] == {"propertyName": ["hs_note_body"]}


def test_batch_read_reports_missing_ids_as_207(
    hs_client: hubspot.HubSpot, hs: HubSpotEmulator
) -> None:
    from hubspot.crm.objects import BatchReadInputSimplePublicObjectId, SimplePublicObjectId

    (cid,) = hs.seed({"objects": {"companies": [{"properties": {"name": "A"}}]}})["objects"][
        "companies"
    ]
    out = hs_client.crm.objects.batch_api.read(
        "companies",
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=cid), SimplePublicObjectId(id="424242")],
            properties=["name"],
            properties_with_history=[],
        ),
    )
    assert out is not None and out.num_errors == 1 and out.errors[0].context == {"ids": ["424242"]}
    assert out.results[0].properties["name"] == "A"


def test_search_filters_sorts_and_paging(hs_client: hubspot.HubSpot, hs: HubSpotEmulator) -> None:
    tiers = ["gold", "silver", "bronze", "gold", "silver", "gold"]
    hs.seed(
        {
            "objects": {
                "companies": [
                    {
                        "properties": {
                            "name": f"Co {i}",
                            "customer_tier": t,
                            "mrr": str(100 * (i + 1)),
                        }
                    }
                    for i, t in enumerate(tiers)
                ]
            }
        }
    )
    hs.search_rate_limit_per_s = None  # many searches in a row: the semantics, not the limit
    search = hs_client.crm.companies.search_api.do_search

    def names(groups: list[FilterGroup], **kw: Any) -> list[str]:
        res = search(
            PublicObjectSearchRequest(filter_groups=groups, properties=["name", "mrr"], **kw)
        )
        assert res is not None
        return [r.properties["name"] for r in res.results]

    eq = [FilterGroup(filters=[Filter(property_name="customer_tier", operator="EQ", value="gold")])]
    assert names(eq) == ["Co 0", "Co 3", "Co 5"]
    in_ = [
        FilterGroup(
            filters=[
                Filter(property_name="customer_tier", operator="IN", values=["silver", "bronze"])
            ]
        )
    ]
    assert names(in_) == ["Co 1", "Co 2", "Co 4"]
    gt = [FilterGroup(filters=[Filter(property_name="mrr", operator="GT", value="350")])]
    assert names(gt, sorts=["-mrr"]) == ["Co 5", "Co 4", "Co 3"]
    either = [
        FilterGroup(filters=[Filter(property_name="mrr", operator="LTE", value="100")]),
        FilterGroup(
            filters=[
                Filter(property_name="customer_tier", operator="EQ", value="gold"),
                Filter(property_name="mrr", operator="GTE", value="600"),
            ]
        ),
    ]
    assert names(either) == ["Co 0", "Co 5"]
    # the docs' object sort form; paging by numeric offset
    first = search(
        PublicObjectSearchRequest(
            sorts=[{"propertyName": "mrr", "direction": "DESCENDING"}], properties=["name"], limit=4
        )
    )
    assert first.total == 6 and len(first.results) == 4 and first.paging.next.after == "4"
    rest = search(
        PublicObjectSearchRequest(
            sorts=[{"propertyName": "mrr", "direction": "DESCENDING"}],
            properties=["name"],
            limit=4,
            after="4",
        )
    )
    assert [r.properties["name"] for r in rest.results] == ["Co 1", "Co 0"] and rest.paging is None
    with pytest.raises(CompanyApiException) as exc:
        search(PublicObjectSearchRequest(limit=201))
    assert exc.value.status == 400


def test_batch_create_is_atomic_unless_every_input_has_a_trace_id(
    hs_client: hubspot.HubSpot,
) -> None:
    from hubspot.crm.objects import (
        BatchInputSimplePublicObjectBatchInputForCreate,
        SimplePublicObjectBatchInputForCreate,
    )

    api = hs_client.crm.objects.batch_api

    def batch(trace: bool) -> Any:
        inputs = [
            SimplePublicObjectBatchInputForCreate(
                properties=props, object_write_trace_id=f"t{i}" if trace else None
            )
            for i, props in enumerate([{"name": "Good"}, {"name": "Bad", "mrr": "lots"}])
        ]
        return api.create(
            "companies", BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs)
        )

    with pytest.raises(ApiException) as exc:
        batch(trace=False)
    assert exc.value.status == 400 and "INVALID_FLOAT" in _error(exc.value)["message"]
    assert hs_client.crm.companies.basic_api.get_page().results == []  # nothing was written
    partial = batch(trace=True)
    assert partial is not None and partial.num_errors == 1  # 207
    assert partial.errors[0].context["objectWriteTraceId"] == ["t1"]
    assert [r.properties["name"] for r in partial.results] == ["Good"]
    assert partial.results[0].object_write_trace_id == "t0"


def test_search_rejects_malformed_requests_per_the_spec(url: str, hs: HubSpotEmulator) -> None:
    r = httpx.post(
        f"{url}/crm/v3/objects/companies/search",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={
            "filterGroups": [
                {"filters": [{"propertyName": "name", "operator": "LIKE", "value": "x"}]}
            ]
        },
    )
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"
    assert "LIKE" in r.json()["message"]
    r = httpx.post(
        f"{url}/crm/v3/objects/notes/batch/upsert",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"input": [{"id": "k", "idProperty": "revbridge_key", "properties": {}}]},
    )
    assert (
        r.status_code == 400 and "required attributes are not set ['inputs']" in r.json()["message"]
    )


def test_search_has_its_own_per_second_limit(
    hs_client: hubspot.HubSpot, hs: HubSpotEmulator
) -> None:
    hs.search_rate_limit_per_s = 2
    try:
        search = hs_client.crm.companies.search_api.do_search
        assert search(PublicObjectSearchRequest()) is not None
        assert search(PublicObjectSearchRequest()) is not None
        with pytest.raises(CompanyApiException) as exc:
            search(PublicObjectSearchRequest())
        assert exc.value.status == 429 and _error(exc.value)["policyName"] == "SECONDLY"
        assert hs_client.crm.companies.basic_api.get_page() is not None  # other calls go on
    finally:
        hs.search_rate_limit_per_s = SEARCH_RATE_LIMIT_PER_S


# --- associations --------------------------------------------------------------------------------


def test_v4_default_association_labels_and_listing(
    hs_client: hubspot.HubSpot, hs: HubSpotEmulator
) -> None:
    seeded = hs.seed(
        {
            "objects": {
                "companies": [{"ref": "acme", "properties": {"name": "Acme"}}],
                "contacts": [{"ref": "bob", "properties": {"email": "bob@acme.test"}}],
                "deals": [{"ref": "d1", "properties": {"dealname": "Big"}}],
            }
        }
    )
    company, contact, deal = (seeded["refs"][r]["id"] for r in ("acme", "bob", "d1"))
    v4 = hs_client.crm.associations.v4.basic_api
    made = v4.create_default("contacts", contact, "companies", company)
    assert made is not None and made.status == "COMPLETE"  # 200, not 201
    assert {r.association_spec.association_type_id for r in made.results} == {279, 280}
    labelled = v4.create(
        "deals",
        deal,
        "companies",
        company,
        [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=5)],
    )
    assert isinstance(labelled, LabelsBetweenObjectPair)  # 201
    assert labelled.labels == ["Primary"] and labelled.to_object_id == company

    page = v4.get_page("companies", company, "contacts")
    assert [r.to_object_id for r in page.results] == [contact]
    assert page.results[0].association_types[0].type_id == 280
    deals = v4.get_page("companies", company, "deals")
    assert {t.type_id for t in deals.results[0].association_types} == {6}
    with_assoc = hs_client.crm.contacts.basic_api.get_by_id(contact, associations=["companies"])
    assert with_assoc.associations["companies"].results[0].id == company

    with pytest.raises(Exception) as exc:  # the wrong direction's type id
        v4.create(
            "contacts", contact, "companies", company, [AssociationSpec("HUBSPOT_DEFINED", 280)]
        )
    assert exc.value.status == 400  # type: ignore[attr-defined]
    assert v4.archive("contacts", contact, "companies", company) is None
    assert v4.get_page("companies", company, "contacts").results == []


def test_v3_create_with_associations(hs_client: hubspot.HubSpot, hs: HubSpotEmulator) -> None:
    (cid,) = hs.seed({"objects": {"companies": [{"properties": {"name": "A"}}]}})["objects"][
        "companies"
    ]
    task = hs_client.crm.objects.tasks.basic_api.create(
        SimplePublicObjectInputForCreate(
            properties={
                "hs_task_subject": "Call",
                "hs_timestamp": "2024-06-01T09:00:00Z",
            },
            associations=[
                {
                    "to": {"id": cid},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 192}],
                }
            ],
        )
    )
    assert task is not None and task.properties["hs_task_status"] == "NOT_STARTED"
    page = hs_client.crm.associations.v4.basic_api.get_page("companies", cid, "tasks")
    assert [r.to_object_id for r in page.results] == [task.id]
    assert page.results[0].association_types[0].type_id == 191


# --- properties ----------------------------------------------------------------------------------


def test_custom_property_creation_and_defaults(
    hs_client: hubspot.HubSpot, hs: HubSpotEmulator
) -> None:
    core = hs_client.crm.properties.core_api
    made = core.create(
        "deals",
        PropertyCreate(
            name="revbridge_key",
            label="RevBridge key",
            type="string",
            field_type="text",
            group_name="dealinformation",
            has_unique_value=True,
        ),
    )
    assert made is not None and made.has_unique_value is True and made.hubspot_defined is False
    names = {p.name for p in core.get_all("deals").results}
    assert {"revbridge_key", "dealstage", "amount", "closedate"} <= names
    company_props = {p.name: p for p in core.get_all("companies").results}
    assert company_props["billing_customer_id"].has_unique_value is True
    assert company_props["mrr"].type == "number"
    with pytest.raises(Exception) as exc:
        core.create(
            "deals",
            PropertyCreate(
                name="revbridge_key", label="x", type="string", field_type="text", group_name="g"
            ),
        )
    assert exc.value.status == 409  # type: ignore[attr-defined]
    deal = hs_client.crm.deals.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"revbridge_key": "d-1"})
    )
    assert hs_client.crm.deals.basic_api.get_by_id("d-1", id_property="revbridge_key").id == deal.id
    hs.reset_state()  # custom properties go, RevBridge's defaults stay
    names = {p.name for p in core.get_all("deals").results}
    assert "revbridge_key" not in names
    assert "billing_customer_id" in {p.name for p in core.get_all("companies").results}


# --- limits and faults ---------------------------------------------------------------------------


def test_rate_limit_429_after_n_requests_in_ten_seconds() -> None:
    emulator = HubSpotEmulator(rate_limit_per_10s=3)
    with ServerThread({emulator: 0}) as st:
        api = make_client(st.urls["hubspot"]).crm.companies.basic_api
        for remaining in (2, 1, 0):
            _, status, headers = api.get_page_with_http_info()
            assert status == 200 and headers["X-HubSpot-RateLimit-Remaining"] == str(remaining)
            assert headers["X-HubSpot-RateLimit-Max"] == "3"
            assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        with pytest.raises(CompanyApiException) as exc:
            api.get_page()
        assert exc.value.status == 429
        body = _error(exc.value)
        assert body["policyName"] == "TEN_SECONDLY_ROLLING" and body["errorType"] == "RATE_LIMIT"
        assert body["category"] == "RATE_LIMITS"
        assert body["message"] == "You have reached your ten_secondly_rolling limit."
        assert 1 <= int(exc.value.headers["Retry-After"]) <= 10


def test_real_limits_and_lag_are_on_by_default_and_one_knob_turns_them_off() -> None:
    real, focused = HubSpotEmulator(), HubSpotEmulator(limits=False)
    assert (real.rate_limit_per_10s, real.search_rate_limit_per_s) == (190, 5)
    assert real.search_lag_s == SEARCH_LAG_S > 0
    assert focused.search_rate_limit_per_s is None and focused.search_lag_s == 0
    assert focused.rate_limit_per_10s > 100_000
    assert HubSpotEmulator(limits=False, search_lag_s=1.5).search_lag_s == 1.5  # explicit wins


def test_default_search_limit_is_five_per_second(hs_client: hubspot.HubSpot) -> None:
    """Before, search was unthrottled by default; HubSpot allows a few per second per portal."""
    search = hs_client.crm.companies.search_api.do_search
    with pytest.raises(CompanyApiException) as exc:
        for _ in range(SEARCH_RATE_LIMIT_PER_S + 1):
            search(PublicObjectSearchRequest())
    assert exc.value.status == 429 and _error(exc.value)["policyName"] == "SECONDLY"
    assert _error(exc.value)["message"] == "You have reached your secondly limit."


def test_search_shows_a_write_only_after_the_index_lag(
    hs_client: hubspot.HubSpot, hs: HubSpotEmulator
) -> None:
    """Before, a created or updated record was searchable at once; HubSpot's index lags writes
    by seconds, while a read by ID (or by a unique property) sees the write immediately."""
    hs.search_lag_s = 0.6
    hs.search_rate_limit_per_s = None  # the lag, not the limit
    try:
        api, search = hs_client.crm.companies.basic_api, hs_client.crm.companies.search_api
        seeded = hs.seed({"objects": {"companies": [{"properties": {"name": "Old Co"}}]}})
        (old_id,) = seeded["objects"]["companies"]
        new = api.create(CompanyCreate(properties={"name": "New Co", "billing_customer_id": "c9"}))
        api.update(old_id, CompanyUpdate(properties={"name": "Renamed Co"}))

        def named(name: str) -> list[str]:
            req = PublicObjectSearchRequest(
                filter_groups=[
                    FilterGroup(filters=[Filter(property_name="name", operator="EQ", value=name)])
                ],
                properties=["name"],
            )
            return [r.id for r in search.do_search(req).results]

        assert named("New Co") == [] and named("Old Co") == [old_id]  # not indexed yet
        assert named("Renamed Co") == []
        assert api.get_by_id("c9", id_property="billing_customer_id").id == new.id  # consistent
        time.sleep(0.7)
        assert named("New Co") == [new.id] and named("Renamed Co") == [old_id]
        assert named("Old Co") == []
    finally:
        hs.search_lag_s = SEARCH_LAG_S


def test_private_app_token_info_names_its_scopes(url: str) -> None:
    info = httpx.post(
        f"{url}/oauth/v2/private-apps/get/access-token-info", json={"tokenKey": TOKEN}
    )
    assert info.status_code == 200
    body = info.json()
    assert {"userId", "hubId", "appId", "scopes"} <= set(body)
    assert "crm.objects.companies.write" in body["scopes"] and "tickets" in body["scopes"]
    wrong = httpx.post(
        f"{url}/oauth/v2/private-apps/get/access-token-info", json={"tokenKey": "pat-wrong"}
    )
    assert wrong.status_code == 401 and wrong.json()["category"] == "INVALID_AUTHENTICATION"


def test_injected_faults_are_hubspot_shaped(
    hs_client: hubspot.HubSpot, hs: HubSpotEmulator, url: str
) -> None:
    httpx.post(f"{url}/_sandbox/faults", json={"path": "/crm/v3/objects/companies", "status": 503})
    with pytest.raises(CompanyApiException) as exc:
        hs_client.crm.companies.basic_api.get_page()
    assert exc.value.status == 503
    body = _error(exc.value)
    assert body["status"] == "error" and body["correlationId"] and body["category"]
    httpx.post(f"{url}/_sandbox/faults", json={"path": ".*/search", "status": 429})
    with pytest.raises(CompanyApiException) as exc:
        hs_client.crm.companies.search_api.do_search(PublicObjectSearchRequest())
    assert _error(exc.value)["policyName"] == "TEN_SECONDLY_ROLLING"
    assert exc.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert hs_client.crm.companies.basic_api.get_page() is not None  # faults are spent


# --- webhooks ------------------------------------------------------------------------------------


def verify_v3(
    secret: str, method: str, uri: str, body: bytes, timestamp: str, signature: str
) -> bool:
    """The receiver side, written from HubSpot's docs (not the emulator's code)."""
    if abs(time.time() * 1000 - int(timestamp)) > 300_000:
        return False
    for escape, char in {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
                         "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}.items():  # fmt: skip
        uri = uri.replace(escape, char)
    message = f"{method}{uri}".encode() + body + timestamp.encode()
    expected = base64.b64encode(
        hmac.new(secret.encode(), message, hashlib.sha256).digest()
    ).decode()
    return hmac.compare_digest(expected, signature)


def test_ui_stage_change_sends_a_signed_batched_webhook(
    servers, hs_client: hubspot.HubSpot, hs: HubSpotEmulator, url: str
) -> None:
    emulator, receiver, st = servers
    target = st.urls["receiver"] + "/hooks/hubspot"
    httpx.post(f"{url}/_sandbox/webhooks", json={"url": target})
    deal = hs_client.crm.deals.basic_api.create(
        SimplePublicObjectInputForCreate(
            properties={"dealname": "Big", "dealstage": "contractsent", "amount": "5000"}
        )
    )
    hs.flush_webhooks()
    receiver.clear()

    r = httpx.post(
        f"{url}/_sandbox/hubspot/objects/deals/{deal.id}/ui_update",
        json={"properties": {"dealstage": "closedwon", "amount": "5500"}},
    )
    assert r.status_code == 200 and r.json()["properties"]["hs_is_closed_won"] == "true"
    assert receiver.arrived.wait(5)  # the ~100 ms buffer flushes on its own
    assert len(receiver.received) == 1
    hit = receiver.received[0]
    events = json.loads(hit["body"])
    assert isinstance(events, list) and len(events) == 2  # both changes in one POST
    stage = next(e for e in events if e["propertyName"] == "dealstage")
    assert (
        stage["subscriptionType"] == "deal.propertyChange" and stage["propertyValue"] == "closedwon"
    )
    assert stage["objectId"] == int(deal.id) and stage["changeSource"] == "CRM_UI"
    assert (
        stage["attemptNumber"] == 0
        and stage["portalId"] == hs.portal_id
        and stage["appId"] == hs.app_id
    )
    assert {"eventId", "subscriptionId", "occurredAt"} <= set(stage)
    headers = hit["headers"]
    assert verify_v3(
        SECRET,
        "POST",
        target,
        hit["body"],
        headers["x-hubspot-request-timestamp"],
        headers["x-hubspot-signature-v3"],
    )
    assert not verify_v3("other-secret", "POST", target, hit["body"], headers["x-hubspot-request-timestamp"],
                         headers["x-hubspot-signature-v3"])  # fmt: skip
    assert (
        headers["x-hubspot-signature"] == hashlib.sha256(SECRET.encode() + hit["body"]).hexdigest()
    )

    # API writes say so, and deletions are events too
    hs_client.crm.deals.basic_api.archive(deal.id)
    hs.flush_webhooks()
    last = json.loads(receiver.received[-1]["body"])
    assert [(e["subscriptionType"], e["changeSource"], e["changeFlag"]) for e in last] == [
        ("deal.deletion", "API", "DELETED")
    ]
    assert last[0]["sourceId"] == str(hs.app_id)


def test_ui_create_and_seeded_associations_emit_webhooks(
    servers, hs_client: hubspot.HubSpot, hs: HubSpotEmulator, url: str
) -> None:
    seeded = hs.seed(
        {
            "objects": {
                "companies": [{"ref": "acme", "properties": {"name": "Acme"}}],
                "contacts": [{"ref": "bob", "properties": {"email": "bob@acme.test"}}],
            },
            "associations": [{"from": "bob", "to": {"type": "companies", "index": 0}}],
        }
    )
    company, contact = seeded["refs"]["acme"]["id"], seeded["refs"]["bob"]["id"]
    page = hs_client.crm.associations.v4.basic_api.get_page("contacts", contact, "companies")
    assert [(r.to_object_id, r.association_types[0].type_id) for r in page.results] == [
        (company, 279)
    ]
    assert hs.webhook_events == []  # seeding is silent

    r = httpx.post(
        f"{url}/_sandbox/hubspot/objects/tickets", json={"properties": {"subject": "Help"}}
    )
    assert r.status_code == 201 and r.json()["properties"]["hs_pipeline_stage"] == "1"
    ticket = r.json()["id"]
    hs_client.crm.associations.v4.basic_api.create_default("tickets", ticket, "companies", company)
    r = httpx.post(
        f"{url}/_sandbox/hubspot/objects/tickets/{ticket}/ui_update",
        json={"properties": {"bogus": "1"}},
    )
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"
    hs.flush_webhooks()
    kinds = [(e["subscriptionType"], e["changeSource"]) for e in hs.webhook_events]
    assert kinds == [
        ("ticket.creation", "CRM_UI"),
        ("ticket.associationChange", "API"),
        ("company.associationChange", "API"),
    ]
    assoc = hs.webhook_events[1]
    assert assoc["associationType"] == "TICKET_TO_COMPANY" and assoc["fromObjectId"] == int(ticket)
    assert assoc["associationRemoved"] is False and "objectId" not in assoc
