"""The Zuora sandbox serves the Describe API (``GET /v1/describe/{object}``, XML as a tenant
answers it), so `revbridge doctor`'s Zuora custom-field lines are real checks against the
sandbox (they were SKIP): a prepared tenant OK, a fresh tenant one FAIL per missing field with
its fix, a field an admin then defines OK, a field of the wrong type a FAIL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
from pydantic import SecretStr

from cli.doctor_expansion import ZUORA_FIELD
from connectors.zuora import REQUIRED_CUSTOM_FIELDS, ZuoraBilling
from domain.preflight import CheckStatus
from domain.settings import ZuoraSettings
from sandbox.framework import ServerThread
from sandbox.zuora import ZuoraEmulator
from sandbox.zuora.describe import DEFAULT_CUSTOM_FIELDS, define_custom_field, fresh_tenant

CLIENT, SECRET = "describe-client", "describe-secret"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ZuoraEmulator, str]]:
    em = ZuoraEmulator(client_id=CLIENT, client_secret=SECRET)
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["zuora"]


@pytest.fixture
def zuora(server: tuple[ZuoraEmulator, str]) -> ZuoraEmulator:
    em = server[0]
    with em.lock:
        em.reset_state()
    return em


def field_checks(url: str) -> dict[str, object]:
    settings = ZuoraSettings(client_id=CLIENT, client_secret=SecretStr(SECRET), api_url=url)
    checks = ZuoraBilling(settings).preflight()
    return {c.name: c for c in checks if c.name.startswith("custom-field:")}


def token(url: str) -> str:
    answer = httpx.post(
        url + "/oauth/token",
        data={"client_id": CLIENT, "client_secret": SECRET, "grant_type": "client_credentials"},
    )
    return str(answer.json()["access_token"])


def test_describe_answers_xml_with_standard_and_custom_fields(
    server: tuple[ZuoraEmulator, str], zuora: ZuoraEmulator
) -> None:
    url = server[1]
    assert httpx.get(url + "/v1/describe/Account").status_code == 401
    auth = {"Authorization": f"Bearer {token(url)}"}
    resp = httpx.get(url + "/v1/describe/Account", headers=auth)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/xml")
    root = ElementTree.fromstring(resp.text)  # noqa: S314 - the sandbox's answer
    assert root.tag == "object" and root.findtext("name") == "Account"
    fields = {f.findtext("name"): f for f in root.iter("field")}
    assert fields["AccountNumber"].findtext("custom") == "false"
    assert fields["AccountNumber"].findtext("maxlength") == "70"
    assert fields["RevBridgeCrm__c"].findtext("custom") == "true"
    assert fields["RevBridgeCrm__c"].findtext("type") == "text"
    status = fields["Status"]
    assert status.findtext("type") == "picklist"
    assert [o.text for o in status.iter("option")] == ["Draft", "Active", "Canceled"]
    assert [c.text for c in fields["Name"].iter("context")] == ["soap", "export"]
    assert [o.findtext("name") for o in root.find("related-objects") or []] == [
        "BillToContact",
        "SoldToContact",
    ]
    unknown = httpx.get(url + "/v1/describe/NoSuchThing", headers=auth)
    assert unknown.status_code == 404 and unknown.json()["success"] is False


def test_doctor_checks_the_custom_fields_on_the_sandbox(
    server: tuple[ZuoraEmulator, str], zuora: ZuoraEmulator
) -> None:
    url = server[1]
    wanted = {f"custom-field:{o}.{n}" for o, names in REQUIRED_CUSTOM_FIELDS.items() for n in names}
    checks = field_checks(url)
    assert set(checks) == wanted
    assert all(c.status is CheckStatus.OK for c in checks.values())  # type: ignore[attr-defined]

    fresh_tenant(zuora)
    checks = field_checks(url)
    assert all(c.status is CheckStatus.FAIL for c in checks.values())  # type: ignore[attr-defined]
    line = checks["custom-field:Order.RevBridgeKey__c"].line()  # type: ignore[attr-defined]
    assert line == (
        "FAIL  zuora: custom-field:Order.RevBridgeKey__c — Order has no custom field "
        "RevBridgeKey__c (fix: create the custom field RevBridgeKey__c on Order (Settings > "
        "Custom Fields; text, API name exactly as shown))"
    )

    define_custom_field(zuora, "Order", "RevBridgeKey__c")
    define_custom_field(zuora, "Account", "RevBridgeCrm__c", kind="integer", length=0)
    checks = field_checks(url)
    assert checks["custom-field:Order.RevBridgeKey__c"].status is CheckStatus.OK  # type: ignore[attr-defined]
    wrong = checks["custom-field:Account.RevBridgeCrm__c"]
    assert wrong.status is CheckStatus.FAIL  # type: ignore[attr-defined]
    assert wrong.fix == "recreate Account.RevBridgeCrm__c as a text custom field"  # type: ignore[attr-defined]


def test_every_custom_field_a_zuora_connector_names_is_checked() -> None:
    """A guard for the next use case: each ``…__c`` the Zuora connectors name is a field doctor
    checks through Describe (and the prepared sandbox tenant has)."""
    root = Path(__file__).resolve().parents[2] / "connectors"
    sources = [root / "zuora.py", *sorted(root.glob("*/zuora.py"))]
    used = {m for p in sources for m in re.findall(r"\b[A-Za-z][A-Za-z0-9]*__c\b", p.read_text())}
    checked = {name for names in REQUIRED_CUSTOM_FIELDS.values() for name in names}
    # usage-based expansion's upgrade target: doctor's expansion group checks it through Describe
    # (cli/doctor_expansion.py; FAIL only while the expansion is switched on)
    expansion = {ZUORA_FIELD[1]}
    assert sorted(used - checked - expansion) == []
    assert checked == {n for fields in DEFAULT_CUSTOM_FIELDS.values() for n in fields}
