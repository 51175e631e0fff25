"""The Recurly sandbox's answers against the API's own descriptions:

- the installed client (4.79) in strict mode (``recurly.STRICT_MODE``: every field must be in the
  client's generated schema for that object, or the client raises) over every kind of object and
  answer the sandbox makes;
- ``../shared/specs/recurly/api.yaml`` (OpenAPI 3.0, client 4.48): each field the spec describes
  has the spec's type, enum and timestamp format (jsonschema is not a dependency, so this walks
  the subset Recurly's schemas use: ``$ref``, ``allOf``, ``type``, ``enum``, ``items``,
  ``properties``, ``format: date-time``). The spec is older than the client; fields it does not
  know are left to the strict-mode check.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import recurly
import yaml

from sandbox.framework import ServerThread
from sandbox.recurly import RecurlyEmulator
from sandbox.recurly.seeding import catalog_plans, dunning_seed
from sandbox.scenarios import DEMO_CUSTOMERS

KEY = "recurly_spec_test_key"
SPEC = Path(__file__).resolve().parents[3] / "shared" / "specs" / "recurly" / "api.yaml"
ACCEPT = {"Accept": "application/vnd.recurly.v2021-02-25"}
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
}


@cache
def schemas() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    # the C SafeLoader (a 1 MB spec parses in a fraction of the pure-Python time): still safe
    return yaml.load(SPEC.read_text(), Loader=loader)["components"]["schemas"]  # noqa: S506


def violations(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    if "$ref" in schema:
        schema = schemas()[schema["$ref"].rsplit("/", 1)[1]]
    if value is None:  # Recurly sends null for every unset field
        return []
    out: list[str] = []
    for part in schema.get("allOf", []):
        out += violations(value, part, where)
    kind = schema.get("type")
    if kind:
        expected = _TYPES[kind]
        if isinstance(value, bool) and kind in ("integer", "number"):
            return [f"{where}: {value!r} is not {kind}"]
        if not isinstance(value, expected):
            return [f"{where}: {type(value).__name__} is not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{where}: {value!r} not in {schema['enum']}")
    if schema.get("format") == "date-time" and not _TIME.fullmatch(str(value)):
        out.append(f"{where}: {value!r} is not YYYY-MM-DDTHH:MM:SSZ")
    if isinstance(value, list) and "items" in schema:
        for n, item in enumerate(value):
            out += violations(item, schema["items"], f"{where}[{n}]")
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                out += violations(value[key], sub, f"{where}.{key}")
    return out


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[str, recurly.Client]]:
    em = RecurlyEmulator(api_key=KEY, rate_limit_per_minute=None)
    with ServerThread({em: 0}) as thread:
        url = thread.urls["recurly"]
        seed = {
            "plans": catalog_plans(),
            "campaigns": [{"id": "camp-1", "code": "standard", "default_campaign": True}],
        }
        httpx.post(url + "/_sandbox/seed", json=seed).raise_for_status()
        httpx.post(url + "/_sandbox/seed", json=dunning_seed(DEMO_CUSTOMERS, "spec"))
        client = recurly.Client(KEY)
        host, port = url.removeprefix("http://").split(":")
        client._BaseClient__conn = http.client.HTTPConnection(host, int(port), timeout=5)
        strict = recurly.STRICT_MODE
        recurly.STRICT_MODE = True
        try:
            _exercise(client)
        finally:
            recurly.STRICT_MODE = strict
        yield url, client


def _exercise(c: recurly.Client) -> None:
    """Every kind of object and answer, read back by the client in strict mode (a field the
    client does not know raises ValueError)."""
    c.create_account(
        {
            "code": "spec-1",
            "company": "Spec Co",
            "email": "ap@spec.example",
            "billing_info": {"token_id": "tok_visa"},
            "custom_fields": [{"name": "crm", "value": "salesforce"}],
        }
    )
    c.get_billing_info("code-spec-1")
    c.create_account_note("code-spec-1", {"message": "audit"})
    list(c.list_plan_add_ons("code-rb-core").items())
    sub = c.create_subscription(
        {
            "plan_code": "rb-core",
            "currency": "USD",
            "account": {"code": "spec-1"},
            "add_ons": [{"code": "seat", "quantity": 3}, {"code": "api-calls"}],
            "custom_fields": [{"name": "crm_opportunity_id", "value": "006X"}],
        }
    )
    c.create_coupon(
        {
            "code": "spec-20",
            "name": "Spec 20%",
            "discount_type": "percent",
            "discount_percent": 20,
            "duration": "temporal",
            "temporal_amount": 2,
            "temporal_unit": "month",
        }
    )
    c.create_coupon_redemption(
        "code-spec-1", {"coupon_id": "code-spec-20", "subscription_id": sub.id}
    )
    c.create_subscription_change(sub.id, {"timeframe": "renewal", "quantity": 2})
    c.get_subscription_change(sub.id)
    c.remove_subscription_change(sub.id)
    c.create_subscription_change(
        sub.id,
        {"timeframe": "now", "add_ons": [{"code": "seat", "quantity": 1}, {"code": "api-calls"}]},
    )
    c.create_usage(sub.id, "code-api-calls", {"amount": 42})
    c.create_line_item(
        "code-spec-1",
        {"type": "credit", "currency": "USD", "unit_amount": 5, "description": "courtesy"},
    )
    c.get_account_balance("code-spec-1")
    for lister in (
        c.list_account_subscriptions,
        c.list_account_invoices,
        c.list_account_transactions,
        c.list_account_line_items,
        c.list_account_notes,
        c.list_account_coupon_redemptions,
    ):
        list(lister("code-spec-1").items())
    list(c.list_dunning_campaigns().items())
    list(c.list_custom_field_definitions().items())
    with pytest.raises(recurly.errors.TransactionError):
        c.collect_invoice("INV-northwind-spec")
    c.mark_invoice_successful("INV-globex-spec")
    c.refund_invoice("INV-globex-spec", {"type": "amount", "amount": 10})
    c.pause_subscription(sub.id, {"remaining_pause_cycles": 1})
    c.terminate_subscription(sub.id, params={"refund": "none"})
    c.deactivate_account("code-spec-1")


def test_the_client_in_strict_mode_knows_every_field(site: tuple[str, recurly.Client]) -> None:
    """The module fixture ran every call in strict mode; a list read back again proves it."""
    url, client = site
    strict = recurly.STRICT_MODE
    recurly.STRICT_MODE = True
    try:
        assert list(client.list_invoices(params={"limit": 200}).items())
        assert list(client.list_transactions(params={"limit": 200}).items())
    finally:
        recurly.STRICT_MODE = strict


LISTS = {
    "/accounts": "Account",
    "/subscriptions": "Subscription",
    "/invoices": "Invoice",
    "/transactions": "Transaction",
    "/coupons": "Coupon",
    "/plans": "Plan",
    "/plans/code-rb-core/add_ons": "AddOn",
    "/accounts/code-spec-1/notes": "AccountNote",
    "/accounts/code-spec-1/line_items": "LineItem",
    "/accounts/code-spec-1/coupon_redemptions": "CouponRedemption",
    "/dunning_campaigns": "DunningCampaign",
    "/custom_field_definitions": "CustomFieldDefinition",
}


@pytest.mark.parametrize(("path", "schema"), LISTS.items(), ids=list(LISTS.values()))
def test_objects_match_the_openapi_spec(
    site: tuple[str, recurly.Client], path: str, schema: str
) -> None:
    url, _ = site
    resp = httpx.get(url + path, params={"limit": 200}, auth=(KEY, ""), headers=ACCEPT)
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert violations(page, {"$ref": "#/components/schemas/" + schema + "List"}, path) == []
    assert page["data"], f"nothing to check under {path}"
    for n, item in enumerate(page["data"]):
        assert violations(item, {"$ref": f"#/components/schemas/{schema}"}, f"{path}[{n}]") == []


def test_errors_match_the_openapi_spec(site: tuple[str, recurly.Client]) -> None:
    url, _ = site
    missing = httpx.get(url + "/accounts/code-nobody", auth=(KEY, ""), headers=ACCEPT)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/json")
    assert violations(missing.json()["error"], {"$ref": "#/components/schemas/Error"}, "404") == []
    declined = httpx.put(url + "/invoices/INV-initech-spec/collect", auth=(KEY, ""), headers=ACCEPT)
    assert declined.status_code == 422
    error = declined.json()["error"]
    assert error["type"] == "transaction"
    ref = {"$ref": "#/components/schemas/ErrorMayHaveTransaction"}
    assert violations(error, ref, "422") == []
    usage = httpx.get(url + "/usage/none", auth=(KEY, ""), headers=ACCEPT)
    assert usage.status_code == 404
