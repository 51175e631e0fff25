from datetime import UTC, datetime, timedelta

import pytest

from domain.decisions import FailureClass, classify_decline, classify_payment_failure
from domain.ids import dunning_workflow_id, idempotency_key
from domain.models import (
    BillingCustomer,
    CasePriority,
    CrmAccount,
    CustomerTier,
    Invoice,
    InvoiceContext,
    InvoiceStatus,
    Payment,
)

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def ctx(code: str | None, amount: int = 5_000, tenure_days: int = 400) -> InvoiceContext:
    return InvoiceContext(
        invoice=Invoice(
            id="INV-1",
            customer_id="c1",
            status=InvoiceStatus.OPEN,
            total=amount,
            amount_due=amount,
            currency="USD",
        ),
        customer=BillingCustomer(id="c1", created_at=NOW - timedelta(days=tenure_days)),
        recent_payments=[
            Payment(id="t1", succeeded=False, amount=amount, currency="USD", decline_code=code)
        ],
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("expired_card", FailureClass.EXPIRED_CARD),
        ("insufficient_funds", FailureClass.INSUFFICIENT_FUNDS),
        ("FRAUDULENT", FailureClass.HARD_DECLINE),
        ("processing_error", FailureClass.TECHNICAL),
        ("something_new", FailureClass.UNKNOWN),
        (None, FailureClass.UNKNOWN),
    ],
)
def test_decline_codes_classify(code: str | None, expected: FailureClass) -> None:
    assert classify_decline(code) is expected


def test_small_established_customer_is_low_priority_and_retried() -> None:
    a = classify_payment_failure(ctx("insufficient_funds"), None, NOW)
    assert a.priority is CasePriority.LOW
    assert a.retry_recommended
    assert any("insufficient_funds" in r for r in a.reasons)


def test_hard_decline_on_enterprise_is_high_priority_and_not_retried() -> None:
    account = CrmAccount(id="001", name="Acme", tier=CustomerTier.ENTERPRISE)
    a = classify_payment_failure(ctx("fraudulent"), account, NOW)
    assert a.priority is CasePriority.HIGH
    assert not a.retry_recommended
    assert any("Enterprise" in r for r in a.reasons)


def test_amount_and_tenure_raise_priority() -> None:
    assert (
        classify_payment_failure(ctx("expired_card", amount=50_000), None, NOW).priority
        is CasePriority.MEDIUM
    )
    assert (
        classify_payment_failure(ctx("expired_card", tenure_days=10), None, NOW).priority
        is CasePriority.MEDIUM
    )
    assert (
        classify_payment_failure(
            ctx("expired_card", amount=250_000, tenure_days=10), None, NOW
        ).priority
        is CasePriority.HIGH
    )


def test_idempotency_key_is_stable_per_step_and_vendor_safe() -> None:
    k1 = idempotency_key("dunning:chargebee:INV-1", "create-case")
    assert k1 == idempotency_key("dunning:chargebee:INV-1", "create-case")
    assert k1 != idempotency_key("dunning:chargebee:INV-1", "audit")
    assert k1 != idempotency_key("dunning:chargebee:INV-2", "create-case")
    assert len(k1) <= 64 and all(c.isalnum() or c == "-" for c in k1)


@pytest.mark.parametrize(
    "bad", ["jane@example.com", "Jane Doe", "4242 4242 4242 4242", "a/b", "", "x" * 200]
)
def test_workflow_ids_refuse_anything_but_provider_ids(bad: str) -> None:
    with pytest.raises(ValueError):
        dunning_workflow_id("chargebee", bad)


def test_workflow_id_shape() -> None:
    assert dunning_workflow_id("chargebee", "INV-42") == "dunning:chargebee:INV-42"


def test_settings_read_every_documented_variable_and_never_print_secrets() -> None:
    from domain.settings import Settings

    env = {
        "REVBRIDGE_BILLING": "stripe",
        "REVBRIDGE_CRM": "hubspot",
        "REVBRIDGE_TASK_QUEUE": "q",
        "REVBRIDGE_POLICY_DIR": "/etc/revbridge/policies",
        "REVBRIDGE_REASONER": "anthropic",
        "ANTHROPIC_API_KEY": "sk-ant-secret",
        "STRIPE_API_KEY": "sk_live_secret",
        "STRIPE_WEBHOOK_SECRETS": "whsec_old, whsec_new",
        "HUBSPOT_ACCESS_TOKEN": "pat-secret",
        "HUBSPOT_APP_ID": "42",
    }
    s = Settings.from_env(env)
    assert (s.billing, s.crm, s.task_queue, s.policy_dir, s.reasoner) == (
        "stripe",
        "hubspot",
        "q",
        "/etc/revbridge/policies",
        "anthropic",
    )
    assert [x.get_secret_value() for x in s.webhooks.stripe_secrets] == ["whsec_old", "whsec_new"]
    assert s.hubspot and s.hubspot.app_id == "42"
    shown = repr(s) + str(s)
    assert not any(
        secret in shown for secret in ("sk-ant-secret", "sk_live_secret", "pat-secret", "whsec_old")
    )
