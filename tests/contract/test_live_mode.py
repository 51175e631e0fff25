"""Live mode's plumbing (tests/contract/live.py): which vendors go live, the one line each prints,
and — end to end — ``REVBRIDGE_CONTRACT=live`` with a vendor's variables set runs the account-safe
contract against the account those variables name (here a Stripe sandbox standing in for a real
test account, reached only through STRIPE_API_KEY / STRIPE_API_URL, as a deployment would)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sandbox.framework import ServerThread
from sandbox.stripe import StripeEmulator
from tests.contract.live import ALLOW, LIVE_VENDORS, MODE, is_live, status_line, status_lines
from tests.pairs import STRIPE_KEY, STRIPE_SECRET

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


def test_make_contract_runs_the_account_safe_contract_on_the_configured_account() -> None:
    """The real command line `make contract` runs, on one vendor's tests."""
    stripe = StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET)
    with ServerThread({stripe: 0}) as thread:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REVBRIDGE_", "STRIPE_"))}
        env |= {
            MODE: "live",
            "STRIPE_API_KEY": STRIPE_KEY,  # sk_test_…: recognisably a test-mode key
            "STRIPE_API_URL": thread.urls["stripe"],
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
                "stripe-live",
            ],
            capture_output=True,
            text=True,
            timeout=170,
            env=env,
            cwd=ROOT,
        )
    out = done.stdout
    assert done.returncode == 0, out[-3000:]
    assert "contract stripe: LIVE against the account in the environment" in out
    assert "contract hubspot: no credentials (HUBSPOT_ACCESS_TOKEN unset): sandbox" in out
    assert " 7 passed" in out, out[-1500:]
    # what the tests created on the "account" was deleted again
    made = [
        c
        for c in stripe.state.all("customer", include_deleted=True)
        if "rb-contract-" in (c.get("email") or "")
    ]
    assert len(made) == 2 and all(c.get("_deleted") for c in made), made
