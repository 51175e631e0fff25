"""What a Stripe account must have for RevBridge (``revbridge doctor``): a working key of the
expected mode and a webhook endpoint sending the events RevBridge routes."""

from __future__ import annotations

import stripe

from connectors.stripe.client import StripeClientBase, _key_failure, classify
from domain.preflight import Check, CheckStatus

#: the events RevBridge's webhook endpoint must receive (webhooks/stripe.py)
WEBHOOK_EVENTS = ("invoice.payment_failed", "invoice.paid")


class Preflight(StripeClientBase):
    """``revbridge doctor``: the key's mode and the webhook endpoint's events."""

    def preflight(self) -> list[Check]:
        """The key (valid; test or live mode) and the webhook endpoint (enabled, posting to
        ``/webhooks/stripe``, subscribed to the events RevBridge acts on). Two reads."""
        checks = [self._check_mode()]
        try:
            self._client.v1.customers.list({"limit": 1})
        except stripe.StripeError as exc:
            checks.append(_key_failure(exc))
            checks.append(
                Check(
                    system="stripe",
                    name="webhook-endpoint",
                    status=CheckStatus.SKIP,
                    detail="not checked: the key does not work",
                )
            )
            return checks
        checks.append(
            Check(system="stripe", name="credentials", status=CheckStatus.OK, detail="valid")
        )
        checks.append(self._check_webhook_endpoint())
        return checks

    def _check_mode(self) -> Check:
        if self.mode is None:
            return Check(
                system="stripe",
                name="key-mode",
                status=CheckStatus.WARN,
                detail="the key is neither a secret (sk_) nor a restricted (rk_) key",
                fix="set STRIPE_API_KEY to the account's sk_live_… / rk_live_… (or _test_) key",
            )
        detail = f"{self.mode} mode"
        if self.mode == "live":
            detail += ": set stripe's per_second to 100 in policies/limits.yaml"
        return Check(system="stripe", name="key-mode", status=CheckStatus.OK, detail=detail)

    def _check_webhook_endpoint(self) -> Check:
        name = "webhook-endpoint"
        try:
            page = self._client.v1.webhook_endpoints.list({"limit": 100})
        except stripe.StripeError as exc:
            return Check(
                system="stripe",
                name=name,
                status=CheckStatus.WARN,
                detail=f"could not list webhook endpoints ({classify(exc, 'webhook endpoints')})",
                fix="grant the key read access to Webhook Endpoints, or check them in the Dashboard",
            )
        ours = [
            e.to_dict()
            for e in page.data
            if "/webhooks/stripe" in str(e.url or "") and e.status == "enabled"
        ]
        fix_events = ", ".join(WEBHOOK_EVENTS)
        if not ours:
            return Check(
                system="stripe",
                name=name,
                status=CheckStatus.FAIL,
                detail="no enabled webhook endpoint posts to …/webhooks/stripe",
                fix=(
                    "Dashboard → Developers → Webhooks: add https://<your host>/webhooks/stripe "
                    f"for {fix_events}; put its signing secret in STRIPE_WEBHOOK_SECRETS"
                ),
            )
        for endpoint in ours:
            enabled = set(endpoint.get("enabled_events") or [])
            if "*" in enabled or enabled.issuperset(WEBHOOK_EVENTS):
                return Check(
                    system="stripe",
                    name=name,
                    status=CheckStatus.OK,
                    detail=f"{endpoint['id']} receives {fix_events}",
                )
        endpoint = ours[0]
        missing = [e for e in WEBHOOK_EVENTS if e not in set(endpoint.get("enabled_events") or [])]
        return Check(
            system="stripe",
            name=name,
            status=CheckStatus.FAIL,
            detail=f"{endpoint['id']} does not send {', '.join(missing)}",
            fix=f"add {', '.join(missing)} to the endpoint's events in the Dashboard",
        )
