"""A stateful HubSpot CRM emulator driven through the official ``hubspot-api-client``.

See :class:`HubSpotEmulator`; facts it follows are in ``shared/docs/reference/crm-llm-apis.md`` §2.
"""

from . import quotes as _quotes  # noqa: F401 - registers the quotes object type
from .emulator import API_ROUTES, HubSpotEmulator
from .webhooks import signature_v3, signing_uri

__all__ = ["API_ROUTES", "HubSpotEmulator", "signature_v3", "signing_uri"]
