"""Harm 5 for quote-to-cash: ``mapping_fixed`` and ``customer_picked`` name a person (``by``);
where senders are verified, that person must be who signed in (the codec server's stamp, checked
by the worker's codec). A typed ``by`` is refused, shown in the Web UI's current details, and the
run keeps waiting; a stamped one goes on. On the time-skipping server over fake activities."""

from __future__ import annotations

import json
import os

from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from domain.quote import SIGNAL_MAPPING_FIXED, MappingFixed
from infra.codec import (
    ENV_IDENTITY_KEYS,
    ENV_KEYS,
    EncryptionCodec,
    data_converter,
    new_key_entry,
    parse_keys,
    stamp_approver,
)
from tests.fast.fakes import sequence
from tests.fast.test_quote_to_cash import MAPPING, Deal, q2c, q2c_fakes, status
from tests.pairs import eventually

IDENTITY = new_key_entry("q2c")


def verified_client(time_env: WorkflowEnvironment) -> Client:
    env = {ENV_KEYS: os.environ[ENV_KEYS], ENV_IDENTITY_KEYS: IDENTITY}
    return Client(**{**time_env.client.config(), "data_converter": data_converter(env)})


async def details(handle) -> str:  # noqa: ANN001
    return (await handle.query("__temporal_workflow_metadata")).current_details


async def test_a_mapping_fix_from_an_unverified_sender_is_refused(
    time_env: WorkflowEnvironment,
) -> None:
    client = verified_client(time_env)
    deal = Deal()
    fakes = (
        q2c_fakes(deal)
        .on("q2c_read_product_mapping", sequence({"products": {}}, MAPPING))
        .on("eligible_approvers", {"emails": ["bob@example.com"]})  # bob is RevOps here
    )
    async with q2c(client, deal, fakes) as handle:
        await eventually(lambda: status(handle), lambda s: bool(s.unmapped), "unmapped")
        await handle.signal(SIGNAL_MAPPING_FIXED, MappingFixed(by="bob@example.com"))
        shown = await eventually(
            lambda: details(handle), lambda d: d.startswith("**Refused:**"), "refusal"
        )
        assert "mapping fix ignored: bob@example.com is not a verified identity" in shown
        assert list((await status(handle)).unmapped) == ["PRO"]  # still waiting
        assert len(fakes.inputs("q2c_read_product_mapping")) == 1

        # what the codec server sends for bob signed in: stamped, then sealed
        plain = Payload(
            metadata={"encoding": b"json/plain"},
            data=json.dumps({"by": "bob@example.com", "note": "PRO mapped"}).encode(),
        )
        stamp_approver(plain, "bob@example.com", parse_keys(IDENTITY))
        sealed = EncryptionCodec(parse_keys(os.environ[ENV_KEYS])).encrypt(plain)
        await client.workflow_service.signal_workflow_execution(
            SignalWorkflowExecutionRequest(
                namespace=client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=handle.id),
                signal_name=SIGNAL_MAPPING_FIXED,
                input=Payloads(payloads=[sealed]),
            )
        )
        result = await handle.result()
    assert result.outcome == "live"
    assert len(fakes.inputs("q2c_read_product_mapping")) == 2
