"""Zuora's preflight reads custom fields through the Describe API (``GET /v1/describe/{object}``,
XML): the parsing a real tenant exercises, against answers in Describe's shape, through the
connector's own transport (the Zuora sandbox serves Describe too: test_zuora_describe_sandbox.py)."""

from __future__ import annotations

import json

import httpx
from pydantic import SecretStr

from connectors.zuora import ZuoraBilling
from domain.preflight import CheckStatus
from domain.settings import ZuoraSettings


def _describe(obj: str, fields: list[tuple[str, str]]) -> str:
    rows = "".join(
        f"<field><name>{name}</name><label>{name}</label><type>{kind}</type>"
        f"<custom>{str(name.endswith('__c')).lower()}</custom></field>"
        for name, kind in fields
    )
    return f'<?xml version="1.0" encoding="UTF-8"?><object><name>{obj}</name><fields>{rows}</fields></object>'


DESCRIBE = {
    "Account": _describe("Account", [("AccountNumber", "text"), ("RevBridgeCrm__c", "text")]),
    # CrmOpportunityId__c is missing on this tenant
    "Subscription": _describe("Subscription", [("Name", "text"), ("RevBridgeCrm__c", "text")]),
    "Order": _describe("Order", [("OrderNumber", "text"), ("RevBridgeKey__c", "text")]),
}


def _tenant(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/oauth/token":
        return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
    if path == "/object-query/accounts":
        return httpx.Response(200, json={"data": []})
    if path.startswith("/v1/describe/"):
        assert request.headers["Authorization"] == "Bearer t"
        return httpx.Response(
            200, text=DESCRIBE[path.rsplit("/", 1)[1]], headers={"Content-Type": "text/xml"}
        )
    if path.startswith("/v1/product-rate-plans/"):
        return httpx.Response(200, content=json.dumps({"success": True, "name": "Plan"}))
    return httpx.Response(404, json={"success": False, "reasons": [{"code": 50000040}]})


def test_each_required_custom_field_is_ok_or_one_fail_with_its_fix() -> None:
    settings = ZuoraSettings(
        client_id="c", client_secret=SecretStr("s"), api_url="https://rest.apisandbox.zuora.com"
    )
    zuora = ZuoraBilling(settings, transport=httpx.MockTransport(_tenant))
    checks = {c.name: c for c in zuora.preflight()}
    assert checks["credentials"].status is CheckStatus.OK
    assert checks["custom-field:Account.RevBridgeCrm__c"].status is CheckStatus.OK
    assert checks["custom-field:Account.RevBridgeCrm__c"].detail == "exists (text)"
    assert checks["custom-field:Order.RevBridgeKey__c"].status is CheckStatus.OK
    missing = checks["custom-field:Subscription.CrmOpportunityId__c"]
    assert missing.line() == (
        "FAIL  zuora: custom-field:Subscription.CrmOpportunityId__c — Subscription has no custom "
        "field CrmOpportunityId__c (fix: create the custom field CrmOpportunityId__c on "
        "Subscription (Settings > Custom Fields; text, API name exactly as shown))"
    )
    assert [c.name for c in checks.values() if c.failed] == [missing.name]
    assert checks["rate-plan:ZUORA_CREDIT_PLAN"].status is CheckStatus.OK
