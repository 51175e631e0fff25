"""A stateful Stripe (Billing) API emulator for the official ``stripe`` client.

Point a client at it with::

    stripe.StripeClient(api_key, base_addresses={"api": base_url}, max_network_retries=0)

Public API: :class:`StripeEmulator` (``name = "stripe"``), its helpers ``set_card_decline``,
``add_webhook_secret``, ``remove_webhook_secret``, ``advance_clock``, ``events``,
``meter_events``, and the control routes under ``/_sandbox/stripe`` (see ``emulator.py``).
"""

from .emulator import DEFAULT_API_VERSION, StripeEmulator
from .errors import DECLINES, StripeError
from .signing import compute_signature, signature_header, verify_header

__all__ = [
    "DECLINES",
    "DEFAULT_API_VERSION",
    "StripeEmulator",
    "StripeError",
    "compute_signature",
    "signature_header",
    "verify_header",
]
