"""One emulator per implementation under contract (its own, so listings see exactly what the suite
seeded), the connector built from settings as a deployment builds it, and the harness driver that
seeds and drives the vendor side through the official client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from connectors.base import ErrorKind
from connectors.registry import build_billing, build_crm
from harness.drivers import BillingDriver, CrmDriver, drivers
from sandbox.framework import ServerThread
from sandbox.scenarios import DEMO_CUSTOMERS, DunningCustomer
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


@pytest.fixture(autouse=True)
def _no_faults_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for name in ("billing", "crm"):
        if name in request.fixturenames:
            request.getfixturevalue(name).clear_faults()
