"""One emulator per implementation under contract (its own, so listings see exactly what the suite
seeded), the connector built from settings as a deployment builds it, and the harness driver that
seeds and drives the vendor side through the official client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from connectors.base import ErrorKind
from connectors.registry import build_billing, build_crm
from domain.settings import Settings
from harness.drivers import BillingDriver, CrmDriver, HubSpotDriver, SalesforceDriver, drivers
from sandbox.framework import ServerThread
from sandbox.scenarios import DEMO_CUSTOMERS, DunningCustomer
from tests.contract import live
from tests.contract.targets import BILLING, CRM, BillingSpec, CrmSpec, Request
from tests.pairs import pair_settings

UNUSED = "http://127.0.0.1:9"
#: the seeded customer: a Globex invoice whose card declines for insufficient funds
CUSTOMER: DunningCustomer = DEMO_CUSTOMERS[1]
OTHERS: tuple[DunningCustomer, ...] = (DEMO_CUSTOMERS[0], DEMO_CUSTOMERS[2])


#: what a vendor answers when it is busy or broken, and the kind the connector must report: None is
#: the vendor's own "slow down" (the spec's ``rate_limit``)
TRANSIENT: list[tuple[dict[str, Any] | None, ErrorKind]] = [
    (None, ErrorKind.RATE_LIMITED),
    ({"kind": "status", "status": 503}, ErrorKind.RETRYABLE),
    ({"kind": "status", "status": 500}, ErrorKind.RETRYABLE),
]
TRANSIENT_IDS = ["rate-limited", "503", "500"]


@dataclass
class Target:
    url: str
    suffix: str

    def fault(self, request: Request, **fault: Any) -> None:
        method, path = request
        httpx.post(
            self.url + "/_sandbox/faults", json={"method": method, "path": path, **fault}
        ).raise_for_status()

    def clear_faults(self) -> None:
        httpx.delete(self.url + "/_sandbox/faults").raise_for_status()

    def ids(self, customer: DunningCustomer = CUSTOMER) -> dict[str, str]:
        return customer.ids(self.suffix)


@dataclass
class BillingTarget(Target):
    spec: BillingSpec
    connector: Any
    driver: BillingDriver


@dataclass
class CrmTarget(Target):
    spec: CrmSpec
    connector: Any
    driver: CrmDriver
    billing: str = "chargebee"


def _urls(name: str, url: str) -> dict[str, str]:
    urls = dict.fromkeys(("chargebee", "stripe", "salesforce", "hubspot"), UNUSED)
    urls[name] = url
    return urls


@pytest.fixture(scope="module", params=BILLING, ids=[s.name for s in BILLING])
def billing(request: pytest.FixtureRequest) -> Iterator[BillingTarget]:
    spec: BillingSpec = request.param
    with ServerThread({spec.emulator(): 0}) as thread:
        url = thread.urls[spec.name]
        settings = pair_settings(_urls(spec.name, url), spec.name, "salesforce", "contract")
        connector = build_billing(settings)
        driver, _ = drivers(settings, connector, None)
        suffix = uuid.uuid4().hex[:6]
        driver.seed((CUSTOMER, *OTHERS), suffix)
        driver.decline(CUSTOMER.ids(suffix)["invoice"])
        target = BillingTarget(url, suffix, spec, connector, driver)
        yield target


@pytest.fixture(scope="module", params=CRM, ids=[s.name for s in CRM])
def crm(request: pytest.FixtureRequest) -> Iterator[CrmTarget]:
    spec: CrmSpec = request.param
    with ServerThread({spec.emulator(): 0}) as thread:
        url = thread.urls[spec.name]
        settings = pair_settings(_urls(spec.name, url), "chargebee", spec.name, "contract")
        connector = build_crm(settings)
        _, driver = drivers(settings, None, connector)
        suffix = uuid.uuid4().hex[:6]
        driver.seed((CUSTOMER, *OTHERS), suffix, "chargebee")
        yield CrmTarget(url, suffix, spec, connector, driver)


# --- live mode (tests/contract/live.py): the account-safe part of the contract --------------------


def pytest_report_header(config: pytest.Config) -> list[str]:
    """One line per vendor: live against its real test account, or the sandbox and why."""
    return live.status_lines() if live.live_mode() else []


@dataclass
class AccountTarget:
    """A vendor for ``test_live_contract.py``: its real test account (``live``) or a fresh
    sandbox, the connector built from settings, and what the tests created, to delete after."""

    name: str
    live: bool
    settings: Settings
    connector: Any
    suffix: str
    #: how long an eventually consistent read (a search index) may take to show a write
    wait_s: float
    spec: Any  # BillingSpec | CrmSpec
    driver: Any = None  # CrmDriver for a CRM
    _cleanups: list[tuple[str, Callable[[], Any]]] = field(default_factory=list)

    def created(self, what: str, delete: Callable[[], Any]) -> None:
        """Delete ``what`` when the module is done (newest first)."""
        self._cleanups.append((what, delete))

    def eventually(self, probe: Callable[[], Any], ok: Callable[[Any], bool], what: str) -> Any:
        deadline = time.monotonic() + self.wait_s
        while True:
            last = probe()
            if ok(last) or time.monotonic() > deadline:
                assert ok(last), (
                    f"{self.name}: {what} never held within {self.wait_s:g} s: {last!r}"
                )
                return last
            time.sleep(0.5 if self.live else 0.05)

    def clean_up(self) -> list[str]:
        left = []
        for what, delete in reversed(self._cleanups):
            try:
                delete()
            except Exception as exc:  # one line per object left behind, never a trace
                left.append(f"{what} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
        self._cleanups.clear()
        return left


def _account_target(kind: str, spec: Any) -> Iterator[AccountTarget]:
    suffix = uuid.uuid4().hex[:6]
    build = build_billing if kind == "billing" else build_crm
    if live.is_live(spec.name):
        settings = live.live_settings(spec.name)
        connector = build(settings)
        target = AccountTarget(spec.name, True, settings, connector, suffix, 90.0, spec)
        if kind == "crm":
            target.driver = _crm_driver(settings, connector)
        yield from _cleaned(target)
        return
    with ServerThread({spec.emulator(): 0}) as thread:
        urls = _urls(spec.name, thread.urls[spec.name])
        pair = (spec.name, "salesforce") if kind == "billing" else ("chargebee", spec.name)
        settings = pair_settings(urls, *pair, "contract")
        connector = build(settings)
        target = AccountTarget(spec.name, False, settings, connector, suffix, 5.0, spec)
        if kind == "billing":
            drivers(settings, connector, None)[0].seed_catalog()  # a configured account's catalog
        else:
            target.driver = _crm_driver(settings, connector)
        yield from _cleaned(target)


def _cleaned(target: AccountTarget) -> Iterator[AccountTarget]:
    yield target
    left = target.clean_up()
    if left:
        where = "its real test account" if target.live else "the sandbox"
        pytest.fail(f"{target.name}: left on {where}, removing failed: " + "; ".join(left))


def _crm_driver(settings: Settings, connector: Any) -> CrmDriver:
    """The harness's CRM driver, which acts through the vendor's official client (so it works on
    a real account too: ``create_account``, ``cases``)."""
    if settings.crm == "hubspot":
        assert settings.hubspot is not None
        return HubSpotDriver(
            settings.hubspot.api_url or "https://api.hubapi.com",
            settings.hubspot.access_token.get_secret_value(),
        )
    assert settings.salesforce is not None
    return SalesforceDriver(settings.salesforce.token_url.split("/services/")[0], connector)


def _ids(kind: str, specs: list[Any]) -> list[str]:
    return [f"{s.name}-{'live' if live.is_live(s.name) else 'sandbox'}" for s in specs]


@pytest.fixture(scope="module", params=BILLING, ids=_ids("billing", BILLING))
def account_billing(request: pytest.FixtureRequest) -> Iterator[AccountTarget]:
    yield from _account_target("billing", request.param)


@pytest.fixture(scope="module", params=CRM, ids=_ids("crm", CRM))
def account_crm(request: pytest.FixtureRequest) -> Iterator[AccountTarget]:
    yield from _account_target("crm", request.param)


@pytest.fixture(autouse=True)
def _no_faults_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for name in ("billing", "crm"):
        if name in request.fixturenames:
            request.getfixturevalue(name).clear_faults()
