"""Builds the configured billing platform and CRM from settings (one pair per deployment)."""

from __future__ import annotations

from connectors.base import BillingPlatform, CrmSystem
from domain.settings import Settings, SettingsError


def build_billing(settings: Settings) -> BillingPlatform:
    if settings.billing == "chargebee":
        from connectors.chargebee import ChargebeeBilling

        if settings.chargebee is None:
            raise SettingsError(
                "REVBRIDGE_BILLING=chargebee needs CHARGEBEE_SITE and CHARGEBEE_API_KEY"
            )
        return ChargebeeBilling(settings.chargebee, timeout_s=settings.http_timeout_s)
    if settings.billing == "stripe":
        from connectors.stripe import StripeBilling

        if settings.stripe is None:
            raise SettingsError("REVBRIDGE_BILLING=stripe needs STRIPE_API_KEY")
        return StripeBilling(settings.stripe, timeout_s=settings.http_timeout_s)
    raise SettingsError(f"unsupported billing platform {settings.billing!r}")


def build_crm(settings: Settings) -> CrmSystem:
    if settings.crm == "salesforce":
        from connectors.salesforce import SalesforceCrm

        if settings.salesforce is None:
            raise SettingsError(
                "REVBRIDGE_CRM=salesforce needs SALESFORCE_TOKEN_URL and SALESFORCE_CLIENT_ID"
            )
        return SalesforceCrm(settings.salesforce, timeout_s=settings.http_timeout_s)
    if settings.crm == "hubspot":
        from connectors.hubspot import HubSpotCrm

        if settings.hubspot is None:
            raise SettingsError("REVBRIDGE_CRM=hubspot needs HUBSPOT_ACCESS_TOKEN")
        return HubSpotCrm(settings.hubspot, timeout_s=settings.http_timeout_s)
    raise SettingsError(f"unsupported CRM {settings.crm!r}")
