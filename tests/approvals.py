"""The approval signal a signed-in approver sends from the Web UI, for tests that approve or
reject a pending action on a real server."""

from __future__ import annotations

from temporalio.api.common.v1 import Payloads, WorkflowExecution
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client

from domain.approvals import SIGNAL, ApprovalSignal, Decision
from infra.codec import load_identity_keys, stamp_approver


async def send_approval(
    client: Client,
    workflow_id: str,
    action_id: str,
    approver: str,
    decision: Decision = Decision.APPROVE,
) -> None:
    """``approver``'s ``decision`` on ``action_id``, stamped with the identity key when the
    client's codec checks identities (a dev stack's key file in the working directory turns
    that on), then encoded by the client's codec as the Web UI's codec server would."""
    conv = client.data_converter
    signal = ApprovalSignal(action_id=action_id, decision=decision, approver=approver)
    payload = conv.payload_converter.to_payloads([signal])[0]
    keys = load_identity_keys()
    if keys:
        stamp_approver(payload, approver, keys)
    payloads = await conv.payload_codec.encode([payload]) if conv.payload_codec else [payload]
    await client.workflow_service.signal_workflow_execution(
        SignalWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            signal_name=SIGNAL,
            input=Payloads(payloads=payloads),
            identity="test",
        )
    )
