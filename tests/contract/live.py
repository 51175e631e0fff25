"""Live mode of the contract suite: which vendors run against a real test account.

``REVBRIDGE_CONTRACT=live`` (``make contract``) runs ``test_live_contract.py`` against every vendor
whose credentials are in the environment — the same variables a deployment sets (README,
"Running the pieces against real systems") — and against its sandbox for every other vendor;
the rest of tests/contract (fault injection, seeded scenarios) needs the sandbox's control plane
and runs there in either mode. Without the variable (``make test``) everything runs on the
sandboxes.

Safety on a real account: every object a live test creates carries ``rb-contract-<suffix>`` in
its key, name or email, and the tests delete what they created (a deletion that fails is a test
failure naming what was left). A vendor is only used live when its account is recognisably a
test account (a Stripe test-mode key, a Chargebee ``-test`` site, a Zuora sandbox host, a
Salesforce sandbox or Developer Edition domain); Recurly and HubSpot accounts cannot be told
apart from production by their credentials, so they (or any vendor whose account is not
recognised) run live only when named in ``REVBRIDGE_CONTRACT_ALLOW`` (comma-separated).

``python -m tests.contract.live`` prints the one line per vendor that the suite prints first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from domain.settings import Settings

MODE = "REVBRIDGE_CONTRACT"
ALLOW = "REVBRIDGE_CONTRACT_ALLOW"


def _stripe_test(env: Mapping[str, str]) -> bool:
    return env.get("STRIPE_API_KEY", "").startswith(("sk_test_", "rk_test_"))


def _chargebee_test(env: Mapping[str, str]) -> bool:
    return env.get("CHARGEBEE_SITE", "").endswith("-test")


def _zuora_test(env: Mapping[str, str]) -> bool:
    host = urlparse(env.get("ZUORA_API_URL", "")).hostname or ""
    return host.startswith(("rest.apisandbox.", "rest.sandbox.", "rest.test.", "rest.pt1."))


def _salesforce_test(env: Mapping[str, str]) -> bool:
    host = urlparse(env.get("SALESFORCE_TOKEN_URL", "")).hostname or ""
    return host == "test.salesforce.com" or host.endswith(
        (".sandbox.my.salesforce.com", ".develop.my.salesforce.com", ".scratch.my.salesforce.com")
    )


def _unknown(env: Mapping[str, str]) -> bool:
    return False


@dataclass(frozen=True)
class LiveVendor:
    name: str
    kind: str  # billing | crm
    #: every one must be set for the vendor to run live
    required: tuple[str, ...]
    #: the account is recognisably a test account (else REVBRIDGE_CONTRACT_ALLOW must name it)
    is_test_account: Callable[[Mapping[str, str]], bool]
    #: how a test account is recognised, for the status line
    test_hint: str

    def missing(self, env: Mapping[str, str]) -> list[str]:
        return [v for v in self.required if not env.get(v, "").strip()]

    def allowed(self, env: Mapping[str, str]) -> bool:
        named = {x.strip().lower() for x in env.get(ALLOW, "").split(",")}
        return self.is_test_account(env) or self.name in named


LIVE_VENDORS: dict[str, LiveVendor] = {
    v.name: v
    for v in (
        LiveVendor(
            "chargebee",
            "billing",
            ("CHARGEBEE_SITE", "CHARGEBEE_API_KEY"),
            _chargebee_test,
            "a site ending in -test",
        ),
        LiveVendor("stripe", "billing", ("STRIPE_API_KEY",), _stripe_test, "an sk_test_ key"),
        LiveVendor(
            "zuora",
            "billing",
            ("ZUORA_CLIENT_ID", "ZUORA_CLIENT_SECRET", "ZUORA_API_URL"),
            _zuora_test,
            "a sandbox REST host",
        ),
        LiveVendor("recurly", "billing", ("RECURLY_API_KEY",), _unknown, "not recognisable"),
        LiveVendor(
            "salesforce",
            "crm",
            ("SALESFORCE_TOKEN_URL", "SALESFORCE_CLIENT_ID"),
            _salesforce_test,
            "a sandbox or Developer Edition My Domain",
        ),
        LiveVendor("hubspot", "crm", ("HUBSPOT_ACCESS_TOKEN",), _unknown, "not recognisable"),
    )
}


def live_mode(env: Mapping[str, str] = os.environ) -> bool:
    return env.get(MODE, "").strip().lower() == "live"


def is_live(vendor: str, env: Mapping[str, str] = os.environ) -> bool:
    """This vendor runs against its real account in this session."""
    v = LIVE_VENDORS[vendor]
    return live_mode(env) and not v.missing(env) and v.allowed(env)


def status_line(vendor: str, env: Mapping[str, str] = os.environ) -> str:
    v = LIVE_VENDORS[vendor]
    if not live_mode(env):
        return f"contract {vendor}: sandbox ({MODE}=live runs it on a real test account)"
    missing = v.missing(env)
    if missing:
        return f"contract {vendor}: no credentials ({', '.join(missing)} unset): sandbox"
    if not v.allowed(env):
        return (
            f"contract {vendor}: credentials set, but the account is not recognisably a test "
            f"account ({v.test_hint}): sandbox; {ALLOW}={vendor} runs it live"
        )
    return f"contract {vendor}: LIVE against the account in the environment"


def status_lines(env: Mapping[str, str] = os.environ) -> list[str]:
    return [status_line(name, env) for name in LIVE_VENDORS]


def live_settings(vendor: str, env: Mapping[str, str] = os.environ) -> Settings:
    """The deployment's own settings for this vendor (the pair's other side is irrelevant)."""
    kind = LIVE_VENDORS[vendor].kind
    return Settings.from_env({**env, f"REVBRIDGE_{kind.upper()}": vendor})


if __name__ == "__main__":
    print("\n".join(status_lines()))
    sys.exit(0)
