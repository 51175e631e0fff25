"""Builds the configured billing platform and CRM from settings (one pair per deployment)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.base import BillingPlatform, CrmSystem
from connectors.email import SmtpMailer
from connectors.reasoner import LlmReasoner, Reasoner, RulesReasoner
from domain.settings import Settings, SettingsError

if TYPE_CHECKING:
    from connectors.marketing_cloud import MarketingCloudMailer
    from connectors.netsuite import NetSuiteErp
    from connectors.zendesk import ZendeskDesk
    from domain.revenue import Accounts


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
    if settings.billing == "recurly":
        from connectors.recurly import RecurlyBilling

        if settings.recurly is None:
            raise SettingsError("REVBRIDGE_BILLING=recurly needs RECURLY_API_KEY")
        return RecurlyBilling(settings.recurly, timeout_s=settings.http_timeout_s)
    if settings.billing == "zuora":
        from connectors.zuora import ZuoraBilling

        if settings.zuora is None:
            raise SettingsError(
                "REVBRIDGE_BILLING=zuora needs ZUORA_CLIENT_ID and ZUORA_CLIENT_SECRET"
            )
        return ZuoraBilling(settings.zuora, timeout_s=settings.http_timeout_s)
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


def build_erp(settings: Settings, accounts: Accounts | None = None) -> NetSuiteErp | None:
    """The ERP approved revenue journal entries post to (NetSuite, issue 20); None when none is
    configured. ``accounts`` (policies/revenue.yaml) are what its preflight checks exist."""
    if settings.netsuite is None:
        return None
    from connectors.netsuite import NetSuiteErp

    return NetSuiteErp(settings.netsuite, accounts=accounts, timeout_s=settings.http_timeout_s)


def build_desk(settings: Settings, billing: BillingPlatform | None = None) -> ZendeskDesk | None:
    """The support desk beside the CRM's cases (REVBRIDGE_DESK), or None: cases only."""
    if settings.desk in (None, "", settings.crm):
        return None
    if settings.desk == "zendesk":
        from connectors.zendesk import ZendeskDesk

        if settings.zendesk is None:
            raise SettingsError(
                "REVBRIDGE_DESK=zendesk needs ZENDESK_SUBDOMAIN and ZENDESK_EMAIL + "
                "ZENDESK_API_TOKEN (or ZENDESK_OAUTH_TOKEN)"
            )
        try:
            return ZendeskDesk(
                settings.zendesk, billing, settings.billing, timeout_s=settings.http_timeout_s
            )
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
    raise SettingsError(f"unsupported support desk {settings.desk!r}")


def build_mailer(settings: Settings) -> SmtpMailer | MarketingCloudMailer | None:
    """The email channel (REVBRIDGE_EMAIL_CHANNEL): SMTP (None without a relay: reminder drafts
    go to the CRM as tasks) or Marketing Cloud's Transactional Messaging API."""
    if settings.email_channel == "marketing-cloud":
        from connectors.marketing_cloud import MarketingCloudMailer

        if settings.marketing_cloud is None:
            raise SettingsError(
                "REVBRIDGE_EMAIL_CHANNEL=marketing-cloud needs MARKETING_CLOUD_AUTH_URL, "
                "MARKETING_CLOUD_CLIENT_ID and MARKETING_CLOUD_CLIENT_SECRET"
            )
        return MarketingCloudMailer(settings.marketing_cloud)
    if settings.email_channel != "smtp":
        raise SettingsError(
            f"unsupported email channel {settings.email_channel!r} (smtp or marketing-cloud)"
        )
    s = settings.smtp
    if s is None:
        return None
    return SmtpMailer(
        s.host,
        s.port,
        s.sender,
        timeout_s=s.timeout_s,
        starttls=s.starttls,
        username=s.username,
        password=s.password.get_secret_value() if s.password else None,
        ca_file=s.ca_file,
    )


def build_reasoner(settings: Settings) -> Reasoner | LlmReasoner:
    """Rules unless an LLM is configured (REVBRIDGE_REASONER=anthropic + ANTHROPIC_API_KEY)."""
    if settings.reasoner == "rules":
        return RulesReasoner()
    if settings.reasoner == "anthropic":
        from connectors.anthropic_llm import AnthropicLlm

        if settings.anthropic is None:
            raise SettingsError("REVBRIDGE_REASONER=anthropic needs ANTHROPIC_API_KEY")
        a = settings.anthropic
        return LlmReasoner(
            AnthropicLlm(
                a.api_key.get_secret_value(),
                model=a.model,
                base_url=a.base_url,
                max_tokens=a.max_tokens,
                timeout_s=a.timeout_s,
            )
        )
    raise SettingsError(f"unsupported reasoner {settings.reasoner!r}")
