"""An operator approves a pending action in the real Temporal Web UI, in headless Chromium.

Its own dev server with the UI (the session's has none), a Chargebee × Salesforce worker on the
session's sandboxes, a governed dunning run waiting for finance. The browser reads the current
details (User Metadata tab), sends the signal ``approval`` through "More Actions → Send a Signal"
with the JSON shown there, and the credit is applied: checked outside the browser.

Drives Debian's system Chromium through the ``playwright`` package, or Playwright's own Chromium
where the package manager is not usable: scripts/bootstrap-browser sets up one or the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from cli.stack import temporal_binary
from domain import temporal as names
from infra.codec import (
    ENV_IDENTITY_KEYS,
    ENV_KEYS,
    EncryptionCodec,
    data_converter,
    new_key_entry,
    parse_keys,
)
from infra.codec_server import CODEC_PATH, OidcVerifier, build_app
from sandbox.framework import App, ServerThread, free_port
from sandbox.identity import IdentityProvider, approvers_from
from tests.pairs import Pair, pair_settings, pending_of, status_when
from tests.workflows.test_approvals import CREDIT, GLOBEX, start

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]  # Playwright adds a fresh --user-data-dir itself
TASK_QUEUE = "revbridge-webui"
APPROVER = "alice@example.com"  # finance, in policies/approvers.yaml
PASSWORD = "webui-test-only"  # the local identity provider's, this module only
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class WebUiStack:
    env: WorkflowEnvironment
    pair: Pair
    #: the codec server in front of the Web UI (sign-in, /encode, /decode, the UI proxied)
    ui_url: str
    #: the dev server's own UI port, behind it
    upstream_url: str


@pytest.fixture(scope="module")
async def chromium() -> Path:
    """Debian's chromium, else Playwright's own Chromium: what scripts/bootstrap-browser (run by
    `make test` and CI) installs."""
    if CHROMIUM.exists():
        return CHROMIUM
    async with async_playwright() as pw:
        own = Path(pw.chromium.executable_path)
    if own.exists():
        return own
    pytest.fail(
        f"no browser ({CHROMIUM} or {own}): run scripts/bootstrap-browser (make test does)",
        pytrace=False,
    )


@pytest.fixture(scope="module")
async def stack(chromium: Path, sandbox_urls: dict[str, str]) -> AsyncIterator[WebUiStack]:
    from workers.main import build_worker

    ui_port, gateway_port = free_port(), free_port()
    keys = {ENV_KEYS: os.environ[ENV_KEYS], ENV_IDENTITY_KEYS: new_key_entry("webui")}
    provider = IdentityProvider(approvers_from(ROOT / "policies" / "approvers.yaml"), PASSWORD)
    idp = ServerThread({App("identity", provider.app): 0}).start()
    gateway = ServerThread(
        {
            App(
                "gateway",
                build_app(
                    EncryptionCodec(parse_keys(keys[ENV_KEYS])),
                    parse_keys(keys[ENV_IDENTITY_KEYS]),
                    OidcVerifier(idp.urls["identity"], "revbridge"),
                    ui_upstream=f"http://127.0.0.1:{ui_port}",
                ),
            ): gateway_port
        }
    ).start()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        ui=True,
        ui_port=ui_port,
        search_attributes=names.ALL_SEARCH_ATTRIBUTE_KEYS,
        # every payload encrypted, approvals verified: the UI reads and writes them through the
        # codec server, as a person signed in at the identity provider
        data_converter=data_converter(keys),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "history.transferProcessorMaxPollRPS=1000",
            "--ui-codec-endpoint",
            f"http://127.0.0.1:{gateway_port}{CODEC_PATH}",
        ],
    )
    try:
        settings = pair_settings(sandbox_urls, "chargebee", "salesforce", TASK_QUEUE)
        pair = Pair.build(settings, sandbox_urls, webhook_url="http://unused")
        # direct starts only: the sandbox's webhooks must not reach other tests' services
        httpx.delete(sandbox_urls["chargebee"] + "/_sandbox/webhooks").raise_for_status()
        async with build_worker(env.client, pair.billing, pair.crm, task_queue=TASK_QUEUE):
            yield WebUiStack(
                env,
                pair,
                f"http://127.0.0.1:{gateway_port}",
                f"http://127.0.0.1:{ui_port}",
            )
    finally:
        await env.shutdown()
        gateway.stop()
        idp.stop()


async def ui_ready(url: str, within_s: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the Web UI at {url} never answered")
            await asyncio.sleep(0.2)


async def sign_in(page: Page, url: str, email: str) -> None:
    """The UI sits behind the sign-in (the local identity provider's password login)."""
    await page.goto(url)
    await expect(page.get_by_role("heading", name="Sign in to approve")).to_be_visible()
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r"/namespaces/[^/]+/workflows/"))


async def approve_in_web_ui(page: Page, url: str, action_id: str) -> None:
    await sign_in(page, url, APPROVER)
    # current details live in the User Metadata tab, as markdown rendered in an iframe
    await page.get_by_role("tab", name="User Metadata").click()
    await expect(page.get_by_role("heading", name="Current Details")).to_be_visible()
    details = page.locator("iframe#user-metadata-current-details").content_frame
    await expect(details.get_by_text("Approval needed:")).to_be_visible(timeout=10_000)
    await expect(details.get_by_text(action_id)).to_be_visible()
    shown = details.locator("code", has_text='"action_id"')
    signal = json.loads(await shown.inner_text())
    assert signal["action_id"] == action_id
    signal["approver"] = APPROVER

    await page.get_by_role("button", name="More Actions").click()
    await page.get_by_role("menuitem", name="Send a Signal").click()
    dialog = page.get_by_role("dialog", name="Send a Signal")
    # the options (name + description) come from the workflow's metadata query, via the worker
    await dialog.get_by_role("button", name="Select a signal").click()
    await dialog.get_by_role("option", name=re.compile(r"^approval\b")).click()
    data = dialog.get_by_role("textbox", name="Data")
    await data.fill(json.dumps(signal))
    # the editor reformats the JSON on blur, which moves Submit: blur first, then click it
    await data.press("Tab")
    submit = dialog.get_by_role("button", name="Submit")
    await expect(submit).to_be_enabled()
    async with page.expect_response(
        lambda r: "/signal/approval" in r.url and r.request.method == "POST"
    ) as sent:
        await submit.click()
    response = await sent.value
    assert response.ok, f"the UI's signal request failed: {await response.text()}"
    await expect(dialog).to_be_hidden()


async def approval_state(handle: WorkflowHandle, want: str, within_s: float = 20) -> str | None:
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        state = (await handle.describe()).typed_search_attributes.get(names.APPROVAL_KEY)
        if state == want or asyncio.get_running_loop().time() > deadline:
            return state
        await asyncio.sleep(0.2)


async def test_operator_approves_a_credit_in_the_web_ui(
    stack: WebUiStack, chromium: Path, uid: str, tmp_path: Path
) -> None:
    pair = stack.pair
    handle, ids = await start(stack.env.client, pair, GLOBEX, uid)
    try:
        pending = await pending_of(handle)
        assert pending.action.kind.value == "apply_credit"
        assert "finance" in pending.approver_roles
        assert pair.credits(ids["customer"]) == 0
        await ui_ready(stack.upstream_url)
        await ui_ready(stack.ui_url + "/_revbridge/health")

        url = (
            f"{stack.ui_url}/namespaces/default/workflows/{urllib.parse.quote(handle.id, safe='')}"
        )
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(15_000)
            try:
                await approve_in_web_ui(page, url, pending.action_id)
            except Exception:
                shot = tmp_path / "web-ui-failure.png"
                with contextlib.suppress(Exception):  # never hide the real failure
                    await page.screenshot(path=shot, full_page=True)
                    print(f"Web UI screenshot: {shot}")
                raise
            finally:
                await browser.close()

        status = await status_when(handle, lambda s: s.stage == "waiting for payment")
        assert f"apply_credit: needs_approval → executed ({APPROVER})" in status.actions
        assert pair.credits(ids["customer"]) == CREDIT
        assert await approval_state(handle, "approved") == "approved"
    finally:
        await handle.terminate("test done")
