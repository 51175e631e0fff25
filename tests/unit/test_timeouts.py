"""Process hygiene: every vendor client gives up before the activity that calls it times out, and
the worker lets running activities finish on shutdown.

Every activity that calls a vendor runs with ``workflows/options.py`` READ or WRITE (the LLM's
assessment with READ); the policy activity with POLICY. Each connector's call timeout must be
shorter than all of them, whatever ``REVBRIDGE_HTTP_TIMEOUT_S`` / ``ANTHROPIC_TIMEOUT_S`` say —
before, the LLM client's 30 s equalled its activity's 30 s.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.client import Client

from connectors.anthropic_llm import AnthropicLlm
from connectors.chargebee import ChargebeeBilling
from connectors.email import SmtpMailer
from connectors.hubspot import HubSpotCrm
from connectors.recurly import RecurlyBilling
from connectors.registry import build_billing, build_crm, build_mailer, build_reasoner
from connectors.salesforce import SalesforceCrm
from connectors.stripe import StripeBilling
from connectors.timeouts import MAX_CALL_S, call_timeout
from connectors.zuora import ZuoraBilling
from domain.settings import (
    AnthropicSettings,
    ChargebeeSettings,
    HubSpotSettings,
    RecurlySettings,
    SalesforceSettings,
    Settings,
    SmtpSettings,
    StripeSettings,
    ZuoraSettings,
)
from workers.main import GRACEFUL_SHUTDOWN, build_worker
from workflows.options import POLICY, READ, WRITE

LOCAL = "http://127.0.0.1:9"  # nothing is called: only the clients' configuration is read
SHORTEST_START_TO_CLOSE: timedelta = min(o["start_to_close_timeout"] for o in (READ, WRITE, POLICY))
LONGEST_START_TO_CLOSE: timedelta = max(o["start_to_close_timeout"] for o in (READ, WRITE, POLICY))


def connector(vendor: str, timeout_s: float) -> Any:
    """One client, built the way the registry builds it, with ``timeout_s`` requested."""
    build = {
        "chargebee": lambda: ChargebeeBilling(
            ChargebeeSettings(site="acme-test", api_key=SecretStr("k"), api_url=LOCAL),
            timeout_s=timeout_s,
        ),
        "stripe": lambda: StripeBilling(
            StripeSettings(api_key=SecretStr("sk_test_x"), api_url=LOCAL), timeout_s=timeout_s
        ),
        "salesforce": lambda: SalesforceCrm(
            SalesforceSettings(
                token_url=LOCAL + "/services/oauth2/token",
                client_id="x",
                client_secret=SecretStr("y"),
            ),
            timeout_s=timeout_s,
        ),
        "hubspot": lambda: HubSpotCrm(
            HubSpotSettings(access_token=SecretStr("pat"), api_url=LOCAL), timeout_s=timeout_s
        ),
        "smtp": lambda: SmtpMailer("127.0.0.1", 9, "billing@example.com", timeout_s=timeout_s),
        "anthropic": lambda: AnthropicLlm("sk-ant-x", base_url=LOCAL, timeout_s=timeout_s),
        "zuora": lambda: ZuoraBilling(
            ZuoraSettings(client_id="x", client_secret=SecretStr("y"), api_url=LOCAL),
            timeout_s=timeout_s,
        ),
        "recurly": lambda: RecurlyBilling(
            RecurlySettings(api_key=SecretStr("k"), api_url=LOCAL), timeout_s=timeout_s
        ),
    }
    return build[vendor]()


@pytest.mark.parametrize("requested_s", [2.0, 20.0, 30.0, 120.0])
@pytest.mark.parametrize(
    "vendor",
    ["chargebee", "stripe", "zuora", "recurly", "salesforce", "hubspot", "smtp", "anthropic"],
)
def test_each_connectors_call_timeout_is_shorter_than_its_activitys_start_to_close(
    vendor: str, requested_s: float
) -> None:
    client = connector(vendor, requested_s)
    assert client.call_timeout_s == min(requested_s, MAX_CALL_S)
    assert timedelta(seconds=client.call_timeout_s) < SHORTEST_START_TO_CLOSE


def test_the_llm_client_itself_carries_the_shorter_timeout() -> None:
    """The defect issue 14 names: 30 s on the client, 30 s on the activity."""
    llm = AnthropicLlm("sk-ant-x", base_url=LOCAL)
    assert llm._client.timeout == MAX_CALL_S < SHORTEST_START_TO_CLOSE.total_seconds()
    assert timedelta(seconds=AnthropicSettings(api_key=SecretStr("k")).timeout_s) < (
        SHORTEST_START_TO_CLOSE
    )


def test_the_defaults_and_the_registry_stay_below_too() -> None:
    settings = Settings(
        http_timeout_s=600,
        chargebee=ChargebeeSettings(site="a", api_key=SecretStr("k"), api_url=LOCAL),
        hubspot=HubSpotSettings(access_token=SecretStr("pat"), api_url=LOCAL),
        smtp=SmtpSettings(host="127.0.0.1", timeout_s=600),
        reasoner="anthropic",
        anthropic=AnthropicSettings(api_key=SecretStr("k"), base_url=LOCAL, timeout_s=600),
    )
    built = [
        build_billing(settings),
        build_crm(settings.model_copy(update={"crm": "hubspot"})),
        build_mailer(settings),
        build_reasoner(settings).client,  # type: ignore[union-attr]
    ]
    for connector in built:
        assert timedelta(seconds=connector.call_timeout_s) < SHORTEST_START_TO_CLOSE


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_a_non_positive_timeout_is_a_configuration_error(bad: float) -> None:
    with pytest.raises(ValueError):
        call_timeout(bad)


def test_the_worker_lets_running_activities_finish_on_shutdown() -> None:
    """A deploy's SIGTERM gives in-flight activities longer than any start-to-close."""
    assert GRACEFUL_SHUTDOWN > LONGEST_START_TO_CLOSE


async def test_every_worker_the_process_runs_has_that_grace(
    client: Client, settings: Settings
) -> None:
    """The main queue's worker and each vendor queue's worker (activities run on those)."""
    group = build_worker(
        client, build_billing(settings), build_crm(settings), task_queue=f"grace-{uuid.uuid4()}"
    )
    workers = getattr(group, "workers", [group])
    assert len(workers) >= 2
    for worker in workers:
        assert worker.config()["graceful_shutdown_timeout"] == GRACEFUL_SHUTDOWN
