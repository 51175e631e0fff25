"""A stateful Salesforce Marketing Cloud emulator: the auth host and the Transactional Messaging
email API (see :class:`MarketingCloudEmulator`; the facts it follows are in
``shared/docs/reference/erp-support-email-apis.md`` §3, its checklist §3.7)."""

from .emulator import DEFAULT_DEFINITION, MarketingCloudEmulator

__all__ = ["DEFAULT_DEFINITION", "MarketingCloudEmulator"]
