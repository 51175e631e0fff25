"""`revbridge doctor` against the session's dev server and the vendor sandboxes: every check passes
on a ready deployment (exit 0), and each misconfiguration is one FAIL line with its fix (exit 1):
a namespace that does not exist, a missing search attribute, a short retention, a Recurly site
missing a custom field, a Zuora tenant without the rate plans, a connector whose preflight
raises. No line carries a trace or a secret.

Each test makes namespaces of its own on the shared server (the default namespace is left alone)
and runs the command in a thread of its own (its asyncio.run never touches the session's loop).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client

from cli.doctor import NEEDED_RETENTION
from cli.main import main
from domain.preflight import Check, CheckStatus
from domain.temporal import SEARCH_ATTRIBUTES
from harness.drivers import ZuoraDriver
from sandbox.framework import ServerThread
from sandbox.recurly import RecurlyEmulator
from sandbox.recurly.emulator import DEFAULT_CUSTOM_FIELDS
from sandbox.stripe import StripeEmulator
from sandbox.zuora import ZuoraEmulator
from tests.pairs import (
    CB_KEY,
    HS_TOKEN,
    RECURLY_KEY,
    RECURLY_SECRET,
    SF_ID,
    SF_SECRET,
    STRIPE_KEY,
    STRIPE_SECRET,
    ZUORA_ID,
    ZUORA_SECRET,
)

ROOT = Path(__file__).resolve().parents[2]
#: what the command reads: Temporal's env-config, the pair, each vendor's credentials
PREFIXES = ("TEMPORAL_", "REVBRIDGE_", "CHARGEBEE_", "STRIPE_", "RECURLY_", "ZUORA_")
PREFIXES += ("SALESFORCE_", "HUBSPOT_", "SMTP_", "ANTHROPIC_")
MISSING = "RevBridgeAmountAtRisk"


@pytest.fixture(scope="module")
def vendors(sandbox_urls: dict[str, str]) -> Iterator[dict[str, str]]:
    """The session's Chargebee/Salesforce/Stripe/HubSpot sandboxes, plus a Zuora tenant with its
    catalog, a Recurly site with every custom field and one lacking ``crm_account_id``."""
    partial = [f for f in DEFAULT_CUSTOM_FIELDS if f != ("account", "crm_account_id")]
    lacking = RecurlyEmulator(
        api_key=RECURLY_KEY, webhook_secrets=[RECURLY_SECRET], custom_fields=partial
    )
    full = RecurlyEmulator(api_key=RECURLY_KEY, webhook_secrets=[RECURLY_SECRET])
    zuora = ZuoraEmulator(client_id=ZUORA_ID, client_secret=ZUORA_SECRET)
    # an account whose webhook endpoint posts to the webhook service (the doctor only reads: no
    # event is ever sent to it); the session's Stripe sandbox keeps its own targets
    stripe = StripeEmulator(
        api_key=STRIPE_KEY,
        webhook_secret=STRIPE_SECRET,
        webhook_targets=["http://127.0.0.1:9/webhooks/stripe"],
    )
    with ServerThread({zuora: 0, full: 0, lacking: 0, stripe: 0}) as thread:
        url = {em: f"http://{thread.host}:{port}" for em, port in thread.ports.items()}
        ZuoraDriver(url[zuora], None).seed_catalog()
        yield {
            **sandbox_urls,
            "stripe": url[stripe],
            "zuora": url[zuora],
            "recurly": url[full],
            "recurly-partial": url[lacking],
        }


async def namespace(client: Client, retention: timedelta, attributes: dict[str, str]) -> str:
    name = f"doctor-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name,
            workflow_execution_retention_period=Duration(seconds=int(retention.total_seconds())),
        )
    )
    if attributes:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=name,
                search_attributes={
                    n: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{k.upper()}")
                    for n, k in attributes.items()
                },
            )
        )
    return name


@pytest.fixture(scope="module")
async def ready(client: Client) -> str:
    """A namespace as `revbridge setup temporal` leaves it."""
    return await namespace(client, NEEDED_RETENTION, SEARCH_ATTRIBUTES)


def env_for(
    client: Client, ns: str, billing: str, crm: str, urls: dict[str, str]
) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": ns,
        "REVBRIDGE_BILLING": billing,
        "REVBRIDGE_CRM": crm,
        "REVBRIDGE_HTTP_TIMEOUT_S": "5",
        "CHARGEBEE_SITE": "acme-test",
        "CHARGEBEE_API_KEY": CB_KEY,
        "CHARGEBEE_API_URL": urls["chargebee"],
        "STRIPE_API_KEY": STRIPE_KEY,
        "STRIPE_API_URL": urls["stripe"],
        "RECURLY_API_KEY": RECURLY_KEY,
        "RECURLY_API_URL": urls["recurly"],
        "ZUORA_CLIENT_ID": ZUORA_ID,
        "ZUORA_CLIENT_SECRET": ZUORA_SECRET,
        "ZUORA_API_URL": urls["zuora"],
        "SALESFORCE_TOKEN_URL": urls["salesforce"] + "/services/oauth2/token",
        "SALESFORCE_CLIENT_ID": SF_ID,
        "SALESFORCE_CLIENT_SECRET": SF_SECRET,
        "HUBSPOT_ACCESS_TOKEN": HS_TOKEN,
        "HUBSPOT_API_URL": urls["hubspot"],
    }


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key in list(os.environ):
        if key.startswith(PREFIXES):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def doctor(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    *flags: str,
) -> tuple[int, list[str], str]:
    """`revbridge doctor` in-process with exactly ``env``: (exit status, stdout lines, stderr)."""
    use_env(monkeypatch, env)
    capsys.readouterr()

    def run() -> int:
        try:
            return main(["doctor", *flags])
        except SystemExit as exc:
            return int(exc.code or 0)

    with ThreadPoolExecutor(1) as pool:
        code = pool.submit(run).result(timeout=150)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def doctor_process(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real command in a process of its own, as CI runs it, with exactly ``env``."""
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "cli.main", "doctor"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


def failed(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL")]


@dataclass
class Doctor:
    """`revbridge doctor` run in-process against the session's server and this module's
    sandboxes, by default in the ready namespace."""

    client: Client
    ns: str
    urls: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def env(
        self, billing: str, crm: str, ns: str | None = None, urls: dict[str, str] | None = None
    ) -> dict[str, str]:
        return env_for(self.client, ns or self.ns, billing, crm, urls or self.urls)

    def __call__(self, env: dict[str, str], *flags: str) -> tuple[int, list[str], str]:
        return doctor(self.monkeypatch, self.capsys, env, *flags)

    async def in_thread(self, env: dict[str, str]) -> tuple[int, list[str], str]:
        """From an async test (its namespace made on the session's loop): the command still
        runs in a thread of its own."""
        return await asyncio.to_thread(self, env)


@pytest.fixture
def run(
    client: Client,
    ready: str,
    vendors: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Doctor:
    return Doctor(client, ready, vendors, monkeypatch, capsys)


@pytest.mark.parametrize(
    ("billing", "crm"),
    [
        ("recurly", "salesforce"),
        ("zuora", "hubspot"),
        ("chargebee", "hubspot"),
        ("stripe", "salesforce"),
    ],
)
def test_a_ready_deployment_passes_every_check(run: Doctor, billing: str, crm: str) -> None:
    ready = run.ns
    code, lines, err = run(run.env(billing, crm))
    assert code == 0, lines
    assert failed(lines) == [] and err == ""
    for expected in (
        "OK    temporal: connection",
        f"OK    temporal: namespace — {ready}",
        *(f"OK    temporal: search-attribute:{n} — {k}" for n, k in SEARCH_ATTRIBUTES.items()),
        "OK    temporal: retention — 7 days ≥ 7 days needed",
        "OK    llm: reasoner",
    ):
        assert any(line.startswith(expected) for line in lines), (expected, lines)
    # every configured system has its lines: its own checks, or one SKIP saying it has none yet
    for system in (billing, crm, "smtp"):
        assert any(line.split()[1] == f"{system}:" for line in lines), (system, lines)
    if billing in ("recurly", "zuora", "stripe"):
        assert f"OK    {billing}: credentials" in {line.split(" — ")[0] for line in lines}
    if billing == "recurly":
        assert "OK    recurly: custom-field:account.crm_account_id — defined" in lines
    if billing == "zuora":
        assert any(line.startswith("OK    zuora: rate-plan:ZUORA_CREDIT_PLAN") for line in lines)
    assert lines[-1].startswith("doctor: ") and "0 fail" in lines[-1]


def test_a_namespace_that_does_not_exist_is_one_fail_line_with_its_fix_and_exit_1(
    client: Client, vendors: dict[str, str]
) -> None:
    """The real command in a process of its own, as CI runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    env |= env_for(client, "no-such-namespace", "recurly", "salesforce", vendors)
    env["PYTHONPATH"] = str(ROOT)
    done = doctor_process(env)
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stdout.splitlines()
    assert failed(lines) == [
        "FAIL  temporal: namespace — namespace 'no-such-namespace' does not exist at "
        f"{env['TEMPORAL_ADDRESS']} (fix: set TEMPORAL_NAMESPACE to the namespace RevBridge runs "
        "in, or create it: temporal operator namespace create --namespace no-such-namespace "
        "--retention 7d)"
    ]
    # what depends on the namespace is skipped, not failed twice
    assert "SKIP  temporal: retention — namespace 'no-such-namespace' not readable" in lines
    assert "Traceback" not in done.stdout + done.stderr


async def test_a_missing_search_attribute_is_one_fail_line_with_its_fix(run: Doctor) -> None:
    partial = {n: k for n, k in SEARCH_ATTRIBUTES.items() if n != MISSING}
    ns = await namespace(run.client, NEEDED_RETENTION, partial)
    code, lines, _ = await run.in_thread(run.env("recurly", "salesforce", ns=ns))
    assert code == 1
    assert failed(lines) == [
        f"FAIL  temporal: search-attribute:{MISSING} — not registered in namespace {ns} (every "
        "workflow start would fail) (fix: run `revbridge setup temporal` with the same "
        "TEMPORAL_* settings)"
    ]


async def test_a_retention_shorter_than_the_redelivery_windows_fails(run: Doctor) -> None:
    ns = await namespace(run.client, timedelta(days=1), SEARCH_ATTRIBUTES)
    code, lines, _ = await run.in_thread(run.env("recurly", "salesforce", ns=ns))
    assert code == 1
    [line] = failed(lines)
    assert line.startswith("FAIL  temporal: retention — 1 day < 7 days needed")
    assert line.endswith("(fix: run `revbridge setup temporal` with the same TEMPORAL_* settings)")


def test_a_recurly_site_missing_a_custom_field_is_one_fail_line_with_its_fix(run: Doctor) -> None:
    urls = {**run.urls, "recurly": run.urls["recurly-partial"]}
    code, lines, _ = run(run.env("recurly", "hubspot", urls=urls))
    assert code == 1
    assert failed(lines) == [
        "FAIL  recurly: custom-field:account.crm_account_id — not defined on accounts of this "
        "site (fix: define the account custom field 'crm_account_id' (Configuration > Custom "
        "Fields; API name exactly as shown))"
    ]


def test_a_zuora_tenant_without_the_rate_plans_and_a_refused_key_fail(run: Doctor) -> None:
    env = run.env("zuora", "hubspot") | {"ZUORA_CREDIT_PLAN": "PRP-NOT-THERE"}
    code, lines, _ = run(env)
    assert code == 1
    assert failed(lines) == [
        "FAIL  zuora: rate-plan:ZUORA_CREDIT_PLAN — product rate plan PRP-NOT-THERE is not in "
        "the catalog (fix: create it in the product catalog, or set ZUORA_CREDIT_PLAN to its ID)"
    ]
    env["ZUORA_CLIENT_SECRET"] = "not-the-secret"
    code, lines, _ = run(env)
    assert code == 1
    [line] = failed(lines)
    assert line.startswith("FAIL  zuora: credentials — the OAuth client was refused")
    assert "not-the-secret" not in "\n".join(lines)


def test_a_preflight_that_raises_is_a_fail_line_naming_it_never_a_trace(
    run: Doctor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.recurly import RecurlyBilling

    def boom(self: RecurlyBilling) -> list[Check]:
        raise RuntimeError("the site answered nonsense\n  File 'x.py', line 1")

    monkeypatch.setattr(RecurlyBilling, "preflight", boom)
    code, lines, err = run(run.env("recurly", "salesforce"))
    assert code == 1
    assert failed(lines) == [
        "FAIL  recurly: preflight — the check itself failed (RuntimeError: the site answered "
        "nonsense) (fix: rerun with REVBRIDGE_DEBUG=1 for the trace, and report it if it persists)"
    ]
    assert "Traceback" not in "\n".join(lines) + err and "x.py" not in "\n".join(lines)


def test_secrets_are_masked_and_warn_fails_only_when_strict(
    run: Doctor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.recurly import RecurlyBilling

    def leaky(self: RecurlyBilling) -> list[Check]:
        return [
            Check(
                system="recurly",
                name="allowance",
                status=CheckStatus.WARN,
                detail=f"key {RECURLY_KEY} has 3% of its daily calls left",
                fix="raise the plan's limit",
            )
        ]

    monkeypatch.setattr(RecurlyBilling, "preflight", leaky)
    env = run.env("recurly", "salesforce")
    code, lines, _ = run(env)
    assert code == 0
    assert (
        "WARN  recurly: allowance — key *** has 3% of its daily calls left "
        "(fix: raise the plan's limit)"
    ) in lines
    assert RECURLY_KEY not in "\n".join(lines)
    code, _, _ = run(env, "--strict")
    assert code == 1


def test_colour_only_when_asked_and_the_same_words_either_way() -> None:
    import io
    import re

    from cli.doctor import render

    checks = [
        Check(system="x", name="a", status=CheckStatus.FAIL, detail="d", fix="f"),
        Check(system="x", name="b", status=CheckStatus.OK),
    ]
    plain, coloured = io.StringIO(), io.StringIO()
    render(checks, set(), plain, colour=False)
    render(checks, set(), coloured, colour=True)
    assert "\x1b[" not in plain.getvalue() and "\x1b[" in coloured.getvalue()
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured.getvalue()) == plain.getvalue()


def test_a_check_that_hangs_is_cut_off_as_one_fail_line(
    run: Doctor, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import threading

    from cli import doctor as doctor_module
    from connectors.recurly import RecurlyBilling

    release = threading.Event()

    def stuck(self: RecurlyBilling) -> list[Check]:
        release.wait(60)
        return []

    # warm up first (SDK imports, Temporal's runtime), so that only the stuck check is slow
    code, _, _ = run(run.env("recurly", "salesforce"))
    assert code == 0
    monkeypatch.setattr(RecurlyBilling, "preflight", stuck)
    out = io.StringIO()
    try:
        with ThreadPoolExecutor(1) as pool:
            code = pool.submit(doctor_module.doctor, out=out, timeout_s=3).result(timeout=60)
    finally:
        release.set()
    assert code == 1
    assert failed(out.getvalue().splitlines()) == [
        "FAIL  recurly: checks — no answer within 3 s (fix: check the service is reachable from "
        "here (network, proxy, firewall))"
    ]


def test_an_unreachable_temporal_is_one_fail_line_and_the_rest_is_skipped(
    vendors: dict[str, str], client: Client
) -> None:
    from sandbox.framework import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIXES)}
    env |= env_for(client, "default", "recurly", "salesforce", vendors)
    env |= {"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port('127.0.0.1')}", "PYTHONPATH": str(ROOT)}
    done = doctor_process(env)
    lines = done.stdout.splitlines()
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert failed(lines) == [
        f"FAIL  temporal: connection — cannot connect to Temporal at {env['TEMPORAL_ADDRESS']} "
        "(plaintext, no credentials): connection refused (fix: start the server or correct "
        "TEMPORAL_ADDRESS / TEMPORAL_API_KEY / TEMPORAL_TLS*)"
    ]
    assert "SKIP  temporal: namespace — no connection" in lines
    assert (
        "OK    recurly: credentials — API key accepted; custom field definitions readable" in lines
    )
    assert "Traceback" not in done.stdout + done.stderr


def test_the_llm_model_is_checked_when_an_llm_is_configured(
    run: Doctor, anthropic_url: str
) -> None:
    from tests.pairs import ANTHROPIC_KEY

    env = run.env("recurly", "salesforce") | {
        "REVBRIDGE_REASONER": "anthropic",
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": anthropic_url,
    }
    code, lines, _ = run(env)
    assert code == 0, lines
    assert any(line.startswith("OK    llm: model — ") for line in lines), lines
    code, lines, _ = run(env | {"ANTHROPIC_MODEL": "claude-nope-1"})
    assert code == 1
    [line] = failed(lines)
    assert line.startswith("FAIL  llm: model — claude-nope-1 does not exist")
    assert "(fix: set ANTHROPIC_MODEL to a served model" in line
    assert ANTHROPIC_KEY not in "\n".join(lines)


def test_a_fresh_chargebee_site_is_reported_check_by_check_then_passes_once_configured(
    run: Doctor, sandbox_urls: dict[str, str]
) -> None:
    """Issue 16's "fresh" site (no cf_crm_link, Contract Terms off) with the product catalog in
    place: each misconfiguration is one FAIL line with its fix, and after the admin's changes
    (emulated by configure_site) the same command passes."""
    from connectors.registry import build_billing
    from domain.settings import Settings
    from harness.drivers import ChargebeeDriver
    from sandbox.chargebee import ChargebeeEmulator
    from sandbox.chargebee.emulator import DEFAULT_CUSTOM_FIELDS

    site = ChargebeeEmulator.fresh_site(api_key=CB_KEY)
    with ServerThread({site: 0}) as thread:
        urls = {**sandbox_urls, "chargebee": thread.urls["chargebee"]}
        urls |= {"recurly": "http://127.0.0.1:9", "zuora": "http://127.0.0.1:9"}
        env = run.env("chargebee", "hubspot", urls=urls)
        connector = build_billing(Settings.from_env(env))
        ChargebeeDriver(urls["chargebee"], connector).seed_catalog()
        code, lines, err = run(env)
        assert code == 1 and err == ""
        mine = [line for line in failed(lines) if line.startswith("FAIL  chargebee: ")]
        assert [line.split(" — ")[0] for line in mine] == [
            "FAIL  chargebee: custom-field:cf_crm_link",
            "FAIL  chargebee: searchable:cf_crm_link",
            "FAIL  chargebee: contract-terms",
        ]
        assert all("(fix: " in line and line.endswith(")") for line in mine)
        site.configure_site(contract_terms=True, custom_field=dict(DEFAULT_CUSTOM_FIELDS[0]))
        code, lines, _ = run(env)
        assert failed(lines) == [] and code == 0


def test_a_hubspot_portal_missing_a_property_and_a_scope_is_reported_with_fixes(
    run: Doctor, sandbox_urls: dict[str, str]
) -> None:
    """Issue 16's other Done-means: a portal where the company property billing_customer_id was
    never created (archived here through HubSpot's properties API) and the private app lacks
    the tickets scope: one FAIL line with its fix each, through `revbridge doctor`."""
    import httpx

    from sandbox.hubspot import HubSpotEmulator
    from sandbox.hubspot.emulator import DEFAULT_SCOPES
    from tests.pairs import HS_SECRET

    portal = HubSpotEmulator(
        access_token=HS_TOKEN,
        client_secret=HS_SECRET,
        scopes=[s for s in DEFAULT_SCOPES if s != "tickets"],
    )
    with ServerThread({portal: 0}) as thread:
        url = thread.urls["hubspot"]
        httpx.delete(
            f"{url}/crm/v3/properties/companies/billing_customer_id",
            headers={"Authorization": f"Bearer {HS_TOKEN}"},
            timeout=10,
        ).raise_for_status()
        urls = {**sandbox_urls, "hubspot": url, "recurly": "http://127.0.0.1:9"}
        urls["zuora"] = "http://127.0.0.1:9"
        code, lines, err = run(run.env("chargebee", "hubspot", urls=urls))
    assert code == 1 and err == ""
    mine = [line for line in failed(lines) if line.startswith("FAIL  hubspot: ")]
    assert [line.split(" — ")[0] for line in mine] == [
        "FAIL  hubspot: scope:tickets",
        "FAIL  hubspot: property:companies.billing_customer_id",
    ]
    assert all("(fix: " in line and line.endswith(")") for line in mine)
    assert HS_TOKEN not in "\n".join(lines)


def test_the_smtp_relay_is_checked_when_configured(run: Doctor) -> None:
    """The sandbox relay with STARTTLS and AUTH, as in production: OK with the right login, one
    FAIL line with its fix (and the password masked) with a wrong one."""
    from sandbox.mailbox import MailboxEmulator

    relay = MailboxEmulator(username="revbridge", password="relay-password-1")
    port = relay.start_smtp()
    try:
        env = run.env("recurly", "salesforce") | {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(port),
            "SMTP_STARTTLS": "true",
            "SMTP_CA_FILE": str(relay.cert_file),
            "SMTP_USERNAME": "revbridge",
            "SMTP_PASSWORD": "relay-password-1",
        }
        code, lines, _ = run(env)
        assert code == 0, lines
        assert [line.split(" — ")[0] for line in lines if line.split()[1] == "smtp:"] == [
            "OK    smtp: reachable",
            "OK    smtp: starttls",
            "OK    smtp: auth",
        ]
        code, lines, _ = run(env | {"SMTP_PASSWORD": "wrong-password-2"})
        assert code == 1
        [line] = failed(lines)
        assert line.startswith("FAIL  smtp: auth — ") and "(fix: " in line
        assert "wrong-password-2" not in "\n".join(lines)
    finally:
        relay.stop_smtp()


def test_zuora_collect_when_configured_is_checked_with_its_own_login(run: Doctor) -> None:
    """The sandbox serves Collect's Configurable Payment Retry API beside the tenant's REST API,
    with its own Basic login (the emulator's defaults)."""
    env = run.env("zuora", "hubspot") | {
        "ZUORA_COLLECT_API_URL": run.urls["zuora"],
        "ZUORA_COLLECT_USERNAME": "collections@revbridge.local",
        "ZUORA_COLLECT_TOKEN": "test_cpr_token",
    }
    code, lines, _ = run(env)
    assert code == 0, lines
    assert any(line.startswith("OK    zuora: collect — ") for line in lines), lines
    code, lines, _ = run(env | {"ZUORA_COLLECT_TOKEN": "not-the-token"})
    assert code == 1
    assert failed(lines) == [
        "FAIL  zuora: collect — the Configurable Payment Retry API refused the login (401) "
        "(fix: set ZUORA_COLLECT_USERNAME to the login email and ZUORA_COLLECT_TOKEN to its CPR "
        "API token)"
    ]
    code, lines, _ = run(env | {"ZUORA_COLLECT_TOKEN": ""})
    assert [line.split(" — ")[0] for line in failed(lines)] == ["FAIL  zuora: collect"]
