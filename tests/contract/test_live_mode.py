"""Live mode's plumbing (tests/contract/live.py): which vendors go live, the one line each prints,
and — end to end — ``REVBRIDGE_CONTRACT=live`` with a vendor's variables set runs the account-safe
contract against the account those variables name (here a Stripe sandbox standing in for a real
test account, reached only through STRIPE_API_KEY / STRIPE_API_URL, as a deployment would)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.stripe import StripeEmulator
from tests.contract.live import ALLOW, LIVE_VENDORS, MODE, is_live, status_line, status_lines
from tests.pairs import HS_SECRET, HS_TOKEN, STRIPE_KEY, STRIPE_SECRET

ROOT = Path(__file__).resolve().parents[2]


def test_without_live_mode_every_vendor_is_the_sandbox_even_with_credentials() -> None:
    env = {"STRIPE_API_KEY": "sk_test_x", "HUBSPOT_ACCESS_TOKEN": "pat-x"}
    assert not any(is_live(v, env) for v in LIVE_VENDORS)
    assert status_line("stripe", env).startswith("contract stripe: sandbox")


def test_live_mode_says_per_vendor_what_is_missing() -> None:
    lines = status_lines({MODE: "live", "CHARGEBEE_SITE": "acme-test"})
    assert len(lines) == len(LIVE_VENDORS) == 6
    assert "contract chargebee: no credentials (CHARGEBEE_API_KEY unset): sandbox" in lines
    assert "contract stripe: no credentials (STRIPE_API_KEY unset): sandbox" in lines


def test_only_recognisable_test_accounts_go_live_unless_allowed() -> None:
    env = {
        MODE: "live",
        "STRIPE_API_KEY": "sk_test_abc",
        "CHARGEBEE_SITE": "acme",  # a production site: no -test suffix
        "CHARGEBEE_API_KEY": "k",
        "ZUORA_CLIENT_ID": "c",
        "ZUORA_CLIENT_SECRET": "s",
        "ZUORA_API_URL": "https://rest.apisandbox.zuora.com",
        "SALESFORCE_TOKEN_URL": "https://acme.my.salesforce.com/services/oauth2/token",
        "SALESFORCE_CLIENT_ID": "c",
        "HUBSPOT_ACCESS_TOKEN": "pat-x",
    }
    assert [v for v in LIVE_VENDORS if is_live(v, env)] == ["stripe", "zuora"]
    assert status_line("hubspot", env) == (
        "contract hubspot: credentials set, but the account is not recognisably a test account "
        f"(not recognisable): sandbox; {ALLOW}=hubspot runs it live"
    )
    assert is_live("hubspot", env | {ALLOW: "hubspot, recurly"})
    assert not is_live("stripe", env | {"STRIPE_API_KEY": "sk_live_abc"})
    sandbox_org = "https://acme--uat.sandbox.my.salesforce.com/services/oauth2/token"
    assert is_live("salesforce", env | {"SALESFORCE_TOKEN_URL": sandbox_org})


def _listed(url: str, kind: str) -> list[dict]:
    """A HubSpot object type's live (not archived) objects, through its API."""
    resp = httpx.get(
        f"{url}/crm/v3/objects/{kind}",
        params={"limit": 100, "properties": "name,subject,hs_note_body"},
        headers={"Authorization": f"Bearer {HS_TOKEN}"},
        timeout=10,
    )
    return resp.raise_for_status().json()["results"]


def test_make_contract_runs_the_account_safe_contract_on_the_configured_account() -> None:
    """The command line `make contract` runs, on two vendors' tests: Stripe, recognised as a test
    account by its key, and HubSpot, allowed by name."""
    stripe = StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET)
    hubspot = HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET)
    with ServerThread({stripe: 0, hubspot: 0}) as thread:
        mine = ("REVBRIDGE_", "STRIPE_", "HUBSPOT_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(mine)}
        env |= {
            MODE: "live",
            "STRIPE_API_KEY": STRIPE_KEY,  # sk_test_…: recognisably a test-mode key
            "STRIPE_API_URL": thread.urls["stripe"],
            "HUBSPOT_ACCESS_TOKEN": HS_TOKEN,  # a portal cannot be recognised: allowed by name
            "HUBSPOT_API_URL": thread.urls["hubspot"],
            ALLOW: "hubspot",
            "PYTHONPATH": str(ROOT),
        }
        done = subprocess.run(  # noqa: S603
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                "tests/contract/test_live_contract.py",
                "-k",
                "stripe-live or hubspot-live",
            ],
            capture_output=True,
            text=True,
            timeout=170,
            env=env,
            cwd=ROOT,
        )
        left_on_hubspot = [
            obj
            for kind in ("companies", "tickets", "notes")
            for obj in _listed(thread.urls["hubspot"], kind)
            if "contract" in json.dumps(obj)
        ]
    out = done.stdout
    assert done.returncode == 0, out[-3000:]
    assert "contract stripe: LIVE against the account in the environment" in out
    assert "contract hubspot: LIVE against the account in the environment" in out
    assert "contract recurly: no credentials (RECURLY_API_KEY unset): sandbox" in out
    assert " 12 passed" in out, out[-1500:]  # 7 billing tests on Stripe, 5 CRM on HubSpot
    # what the tests created on the "accounts" was deleted again
    made = [
        c
        for c in stripe.state.all("customer", include_deleted=True)
        if "rb-contract-" in (c.get("email") or "")
    ]
    assert len(made) == 2 and all(c.get("_deleted") for c in made), made
    assert left_on_hubspot == []
