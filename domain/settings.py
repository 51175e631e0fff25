"""Runtime settings, parsed from a mapping (the process environment in production).

Pure parsing only: the caller hands in ``os.environ``. Secrets are ``SecretStr`` so they never print.
Production points the same variables at the real vendors; ``revbridge dev`` points them at the
sandbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError


class SettingsError(ValueError):
    """A missing or malformed setting; the message names the variable, never its value."""


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True)


class ChargebeeSettings(_Settings):
    site: str
    api_key: SecretStr
    #: base URL override (sandbox or a proxy); None means https://{site}.chargebee.com
    api_url: str | None = None


class RecurlySettings(_Settings):
    api_key: SecretStr
    #: us | eu (v3.recurly.com | v3.eu.recurly.com)
    region: str = "us"
    #: base URL override (sandbox or a proxy); None means the region's API host
    api_url: str | None = None


class ZuoraSettings(_Settings):
    """OAuth client credentials (Settings > Administration > Manage Users > OAuth clients)."""

    client_id: str
    client_secret: SecretStr
    #: the tenant's REST base URL (https://rest.na.zuora.com, https://rest.eu.zuora.com, ...)
    api_url: str = "https://rest.zuora.com"
    #: the discount-percentage product rate plan retention offers add (number or ID)
    discount_plan: str = "PRP-DISCOUNT-PERCENTAGE"
    #: the product rate plan whose one-time charge courtesy credit memos are made from
    credit_plan: str = "PRP-COURTESY-CREDIT"
    #: Zuora Collect's Configurable Payment Retry API (its own host, Basic auth with a login
    #: email and a CPR API token): when set, an invoice in an active retry cycle is left to it
    collect_api_url: str | None = None
    collect_username: str | None = None
    collect_token: SecretStr | None = None


class SalesforceSettings(_Settings):
    token_url: str
    client_id: str
    client_secret: SecretStr | None = None
    #: client_credentials | jwt_bearer
    auth_flow: str = "client_credentials"
    username: str | None = None
    private_key_file: str | None = None
    audience: str = "https://login.salesforce.com"
    api_version: str = "62.0"


class StripeSettings(_Settings):
    api_key: SecretStr
    #: base URL override (sandbox or a proxy); None means https://api.stripe.com
    api_url: str | None = None


class HubSpotSettings(_Settings):
    access_token: SecretStr
    #: base URL override (sandbox or a proxy); None means https://api.hubapi.com
    api_url: str | None = None
    #: the app ID our own writes carry in webhooks (``sourceId``), for echo suppression
    app_id: str | None = None


class NetSuiteSettings(_Settings):
    """The NetSuite account revenue journal entries post to (issue 20). Token-based auth (TBA:
    OAuth 1.0a HMAC-SHA256, the integration's consumer key/secret and a token ID/secret), or
    OAuth 2.0 client credentials (client ID, certificate ID, the certificate's private key file)."""

    #: the account ID, also the OAuth realm: 1234567 or, for a sandbox, 1234567_SB1
    account_id: str
    #: base URL override (sandbox or a proxy); None means https://<account>.suitetalk.api.netsuite.com
    api_url: str | None = None
    consumer_key: SecretStr | None = None
    consumer_secret: SecretStr | None = None
    token_id: SecretStr | None = None
    token_secret: SecretStr | None = None
    client_id: str | None = None
    certificate_id: str | None = None
    private_key_file: str | None = None
    #: the subsidiary entries post to (OneWorld accounts need one)
    subsidiary_id: str = "1"
    #: requests this process keeps in flight at once (the account's limit is shared by every
    #: integration: 15 on a standard tier)
    concurrency: int = 4


class AnthropicSettings(_Settings):
    api_key: SecretStr
    model: str = "claude-sonnet-5-5"
    #: base URL override (sandbox or a proxy); None means the SDK's default
    base_url: str | None = None
    max_tokens: int = 1024
    #: below the assessment activity's 30 s start-to-close (connectors/timeouts.py caps it)
    timeout_s: float = 25.0


class ZendeskSettings(_Settings):
    """Zendesk Support as the support desk (issue 22): an agent's email + API token (Basic
    ``{email}/token:{token}``) or an OAuth access token."""

    subdomain: str
    email: str | None = None
    api_token: SecretStr | None = None
    oauth_token: SecretStr | None = None
    #: base URL override (sandbox or a proxy), e.g. http://127.0.0.1:8130; None means
    #: https://{subdomain}.zendesk.com
    api_url: str | None = None


class MarketingCloudSettings(_Settings):
    """Salesforce Marketing Cloud's Transactional Messaging API as the email channel (issue 22):
    an API integration's client ID/secret (Installed Packages), the tenant's auth host, and the
    send definition reminders go through (MARKETING_CLOUD_*)."""

    #: Authentication Base URI: https://<subdomain>.auth.marketingcloudapis.com/ (the REST base
    #: comes from the token answer's rest_instance_url)
    auth_url: str
    client_id: str
    client_secret: SecretStr
    #: the business unit's MID (omitted: the BU that created the integration)
    account_id: str | None = None
    #: the transactional send definition (its content renders the %%Subject%% / %%Body%% attributes)
    definition_key: str = "revbridge-dunning"
    timeout_s: float = 20.0
    #: how long a send waits for its status to leave EmailQueued before it is retried
    status_wait_s: float = 10.0


class SmtpSettings(_Settings):
    """The mail relay dunning reminders go through (SMTP_HOST, SMTP_PORT, SMTP_SENDER, ...)."""

    host: str
    port: int = 587
    sender: str = "billing@revbridge.local"
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = 20.0
    #: a PEM of the CA that signed the relay's certificate, when not a public one (SMTP_CA_FILE)
    ca_file: str | None = None


class WebhookSettings(_Settings):
    chargebee_username: str | None = None
    chargebee_password: SecretStr | None = None
    #: the ``user`` Chargebee names on events our API key caused (``source: api``): those are
    #: echoes of our own writes (CHARGEBEE_API_USER)
    chargebee_api_user: str | None = None
    #: every active Stripe endpoint secret (several during a rotation)
    stripe_secrets: list[SecretStr] = []
    #: every active Recurly webhook endpoint secret (several during a rotation)
    recurly_secrets: list[SecretStr] = []
    #: the HubSpot app's client secret (signs webhooks v3)
    hubspot_client_secret: SecretStr | None = None
    #: the URL HubSpot posts to, exactly as configured there (the v3 signature covers it);
    #: behind a proxy the request's own URL differs
    hubspot_public_url: str | None = None
    #: the shared secret(s) the Salesforce Flow callout's External Credential sends in the
    #: X-RevBridge-Webhook-Secret header (several during a rotation)
    salesforce_secrets: list[SecretStr] = []
    #: the org's ID (00D…); when set, callouts from any other org are refused
    salesforce_org_id: str | None = None
    #: the Basic auth of the Zuora callout templates (challenge/response or preemptive)
    zuora_username: str | None = None
    zuora_password: SecretStr | None = None
    #: optional HMAC keys of the callout templates (several during a rotation), and the header
    zuora_hmac_keys: list[SecretStr] = []
    zuora_hmac_header: str = "X-Zuora-Signature"
    #: the integration user RevBridge's API calls run as (005…): callouts for records it last
    #: changed are echoes of our own writes (SALESFORCE_INTEGRATION_USER_ID)
    salesforce_integration_user_id: str | None = None
    #: every active Zendesk webhook signing secret (several during a rotation)
    zendesk_secrets: list[SecretStr] = []
    #: the Zendesk user RevBridge's API token belongs to: comments it wrote are echoes
    zendesk_integration_user_id: str | None = None
    #: route customer, subscription and CRM account changes to the account sync (issue 19;
    #: REVBRIDGE_ACCOUNT_SYNC=1). Off: those events are acknowledged and not routed
    account_sync: bool = False


class Settings(_Settings):
    billing: str = "chargebee"
    crm: str = "salesforce"
    #: the task queue this deployment's workers poll and its webhook service starts work on
    task_queue: str = "revbridge"
    #: the policies/ folder (Cedar policies, modes, approvers, playbooks, product map); None: the
    #: one shipped in the package (activities.policy.DEFAULT_POLICY_DIR)
    policy_dir: str | None = None
    #: rules (default, no key needed) | anthropic
    reasoner: str = "rules"
    #: the day RevBridge went live (REVBRIDGE_GO_LIVE, YYYY-MM-DD): deals won before it are
    #: never provisioned automatically (they are billed already; ``revbridge link`` links them)
    go_live: date | None = None
    anthropic: AnthropicSettings | None = None
    http_timeout_s: float = 20.0
    chargebee: ChargebeeSettings | None = None
    stripe: StripeSettings | None = None
    zuora: ZuoraSettings | None = None
    recurly: RecurlySettings | None = None
    salesforce: SalesforceSettings | None = None
    hubspot: HubSpotSettings | None = None
    #: the ERP approved revenue journal entries post to (issue 20)
    netsuite: NetSuiteSettings | None = None
    #: None: no relay, so reminder drafts go to the CRM as tasks for a rep
    smtp: SmtpSettings | None = None
    #: how customer email goes out (REVBRIDGE_EMAIL_CHANNEL): smtp (SMTP_*) | marketing-cloud
    #: (MARKETING_CLOUD_*)
    email_channel: str = "smtp"
    marketing_cloud: MarketingCloudSettings | None = None
    webhooks: WebhookSettings = WebhookSettings()
    #: where support context finds tickets: None = the CRM's cases; "zendesk" = Zendesk tickets
    #: too (REVBRIDGE_DESK; the CRM still holds accounts and the agent log)
    desk: str | None = None
    zendesk: ZendeskSettings | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def pick(prefix: str, names: list[str]) -> dict[str, str]:
            return {n: env[f"{prefix}{n.upper()}"] for n in names if f"{prefix}{n.upper()}" in env}

        raw: dict[str, object] = pick(
            "REVBRIDGE_",
            [
                "billing",
                "crm",
                "task_queue",
                "policy_dir",
                "reasoner",
                "http_timeout_s",
                "go_live",
                "desk",
                "email_channel",
            ],
        )
        if raw.get("desk") == "":  # REVBRIDGE_DESK= (empty): the CRM's cases, as unset
            del raw["desk"]
        for key, known in (("billing", ("chargebee", "stripe", "zuora", "recurly")),
                           ("crm", ("salesforce", "hubspot")),
                           ("desk", ("zendesk",))):  # fmt: skip
            if key in raw and raw[key] not in known:  # a typo, refused before any Temporal call
                raise SettingsError(f"REVBRIDGE_{key.upper()} must be one of {', '.join(known)}")
        cb = pick("CHARGEBEE_", ["site", "api_key", "api_url"])
        if cb:
            raw["chargebee"] = cb
        sf = pick(
            "SALESFORCE_",
            [
                "token_url",
                "client_id",
                "client_secret",
                "auth_flow",
                "username",
                "private_key_file",
                "audience",
                "api_version",
            ],
        )
        if sf:
            raw["salesforce"] = sf
        llm = pick("ANTHROPIC_", ["api_key", "model", "base_url", "max_tokens", "timeout_s"])
        if llm:
            raw["anthropic"] = llm
        st = pick("STRIPE_", ["api_key", "api_url"])
        if st:
            raw["stripe"] = st
        zu = pick(
            "ZUORA_",
            [
                "client_id",
                "client_secret",
                "api_url",
                "discount_plan",
                "credit_plan",
                "collect_api_url",
                "collect_username",
                "collect_token",
            ],
        )
        if zu:
            raw["zuora"] = zu
        rc = pick("RECURLY_", ["api_key", "region", "api_url"])
        if rc:
            raw["recurly"] = rc
        smtp = pick(
            "SMTP_",
            ["host", "port", "sender", "starttls", "username", "password", "timeout_s", "ca_file"],
        )
        if smtp:
            raw["smtp"] = smtp
        mc = pick(
            "MARKETING_CLOUD_",
            [
                "auth_url",
                "client_id",
                "client_secret",
                "account_id",
                "definition_key",
                "timeout_s",
                "status_wait_s",
            ],
        )
        if mc:
            raw["marketing_cloud"] = mc
        zd = pick("ZENDESK_", ["subdomain", "email", "api_token", "oauth_token", "api_url"])
        if zd:
            raw["zendesk"] = zd
        hs = pick("HUBSPOT_", ["access_token", "api_url", "app_id"])
        if hs:
            raw["hubspot"] = hs
        ns = pick(
            "NETSUITE_",
            [
                "account_id",
                "api_url",
                "consumer_key",
                "consumer_secret",
                "token_id",
                "token_secret",
                "client_id",
                "certificate_id",
                "private_key_file",
                "subsidiary_id",
                "concurrency",
            ],
        )
        if ns:
            raw["netsuite"] = ns
        webhooks: dict[str, object] = {
            k: v
            for k, v in {
                "chargebee_username": env.get("CHARGEBEE_WEBHOOK_USERNAME"),
                "chargebee_password": env.get("CHARGEBEE_WEBHOOK_PASSWORD"),
                "chargebee_api_user": env.get("CHARGEBEE_API_USER"),
                "hubspot_client_secret": env.get("HUBSPOT_CLIENT_SECRET"),
                "hubspot_public_url": env.get("HUBSPOT_WEBHOOK_URL"),
                "salesforce_org_id": env.get("SALESFORCE_ORG_ID"),
                "zuora_username": env.get("ZUORA_WEBHOOK_USERNAME"),
                "zuora_password": env.get("ZUORA_WEBHOOK_PASSWORD"),
                "zuora_hmac_header": env.get("ZUORA_WEBHOOK_HMAC_HEADER"),
                "salesforce_integration_user_id": env.get("SALESFORCE_INTEGRATION_USER_ID"),
                "zendesk_integration_user_id": env.get("ZENDESK_INTEGRATION_USER_ID"),
                "account_sync": env.get("REVBRIDGE_ACCOUNT_SYNC"),
            }.items()
            if v is not None
        }
        if env.get("STRIPE_WEBHOOK_SECRETS"):
            # comma-separated: add the new secret, deploy, switch Stripe over, then drop the old
            webhooks["stripe_secrets"] = [
                x.strip() for x in env["STRIPE_WEBHOOK_SECRETS"].split(",") if x.strip()
            ]
        if env.get("RECURLY_WEBHOOK_SECRETS"):
            webhooks["recurly_secrets"] = [
                x.strip() for x in env["RECURLY_WEBHOOK_SECRETS"].split(",") if x.strip()
            ]
        if env.get("ZUORA_WEBHOOK_HMAC_KEYS"):
            webhooks["zuora_hmac_keys"] = [
                x.strip() for x in env["ZUORA_WEBHOOK_HMAC_KEYS"].split(",") if x.strip()
            ]
        if env.get("SALESFORCE_WEBHOOK_SECRETS"):
            webhooks["salesforce_secrets"] = [
                x.strip() for x in env["SALESFORCE_WEBHOOK_SECRETS"].split(",") if x.strip()
            ]
        if env.get("ZENDESK_WEBHOOK_SECRETS"):
            webhooks["zendesk_secrets"] = [
                x.strip() for x in env["ZENDESK_WEBHOOK_SECRETS"].split(",") if x.strip()
            ]
        raw["webhooks"] = webhooks
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SettingsError(f"setting {where}: {first['msg']}") from None


def go_live_from_env(env: Mapping[str, str]) -> date | None:
    """REVBRIDGE_GO_LIVE (YYYY-MM-DD) alone, for the quote-to-cash activities; None when unset.
    A malformed date is a ValueError with one line (the worker refuses to start)."""
    raw = (env.get("REVBRIDGE_GO_LIVE") or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"REVBRIDGE_GO_LIVE: expected YYYY-MM-DD, got {raw[:20]!r}") from None
