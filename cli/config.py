"""``temporal-dev.yaml``: the local stack's shape, and the environment it hands its processes."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

import revbridge_data

#: the file ``revbridge dev`` / ``demo`` read from the working directory when there is no --config
CONFIG_NAME = revbridge_data.CONFIG_NAME


class CliError(Exception):
    """Shown to the user as one line, exit code 2."""


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TemporalCfg(_M):
    ip: str = "127.0.0.1"
    port: int = 7233
    ui_port: int = 8233
    namespace: str = "default"
    db_file: str | None = ".revbridge/temporal.db"
    sqlite_pragmas: dict[str, str] = {}
    #: extra search attributes the dev server registers at start (--search-attribute); RevBridge's
    #: own (domain/temporal.py) are registered by `revbridge setup temporal`, as on any cluster
    search_attributes: dict[str, str] = {}
    dynamic_config: dict[str, int | float | str | bool] = {}
    log_level: str = "warn"

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


class SandboxVendorCreds(_M):
    site: str | None = None
    api_key: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    webhook_secret: str | None = None
    access_token: str | None = None
    app_id: str | None = None


BILLING_PLATFORMS = ("chargebee", "stripe", "zuora", "recurly")
CRMS = ("salesforce", "hubspot")


class Pair(_M):
    billing: str = "chargebee"
    crm: str = "salesforce"

    def model_post_init(self, _: object) -> None:
        if self.billing not in BILLING_PLATFORMS:
            raise ValueError(f"billing must be one of {', '.join(BILLING_PLATFORMS)}")
        if self.crm not in CRMS:
            raise ValueError(f"crm must be one of {', '.join(CRMS)}")


class SandboxCfg(_M):
    host: str = "127.0.0.1"
    ports: dict[str, int]
    smtp_port: int = 8725
    chargebee: SandboxVendorCreds = SandboxVendorCreds()
    salesforce: SandboxVendorCreds = SandboxVendorCreds()
    stripe: SandboxVendorCreds = SandboxVendorCreds()
    recurly: SandboxVendorCreds = SandboxVendorCreds()
    hubspot: SandboxVendorCreds = SandboxVendorCreds()
    zuora: SandboxVendorCreds = SandboxVendorCreds()

    def url(self, vendor: str) -> str:
        return f"http://{self.host}:{self.ports[vendor]}"


class BasicCreds(_M):
    username: str
    password: str


class WebhooksCfg(_M):
    host: str = "127.0.0.1"
    port: int = 8700
    chargebee: BasicCreds
    #: the Basic auth the Zuora tenant's callout templates use
    zuora: BasicCreds | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class WorkerCfg(_M):
    task_queues: list[str] = ["revbridge"]
    http_timeout_s: float = 20.0
    #: the policies/ folder, relative to this file (`revbridge init` writes one to own and edit);
    #: None: the policies shipped in the package
    policy_dir: str | None = None


class StackConfig(_M):
    temporal: TemporalCfg
    pair: Pair = Pair()
    sandbox: SandboxCfg
    webhooks: WebhooksCfg
    worker: WorkerCfg = WorkerCfg()
    root: Path = Path(".")

    @classmethod
    def load(cls, path: str | Path) -> StackConfig:
        """A stack file; the packaged default keeps its state (``.revbridge/``) in the working
        directory, never inside site-packages."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise CliError(f"config file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise CliError(f"{path}: not valid YAML ({type(exc).__name__})") from None
        try:
            root = Path.cwd() if revbridge_data.is_shipped(path) else path.resolve().parent
            return cls.model_validate({**(raw or {}), "root": root})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise CliError(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None

    def with_pair(self, billing: str | None, crm: str | None) -> StackConfig:
        try:
            pair = Pair(billing=billing or self.pair.billing, crm=crm or self.pair.crm)
        except ValidationError as exc:
            raise CliError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return self.model_copy(update={"pair": pair})

    def service_env(self) -> dict[str, str]:
        """What the worker and webhook processes read: the vendors are the sandbox."""
        sb = self.sandbox
        policies = (
            {"REVBRIDGE_POLICY_DIR": str((self.root / self.worker.policy_dir).resolve())}
            if self.worker.policy_dir
            else {}
        )
        return {
            **policies,
            "TEMPORAL_ADDRESS": self.temporal.address,
            "TEMPORAL_NAMESPACE": self.temporal.namespace,
            "REVBRIDGE_BILLING": self.pair.billing,
            "REVBRIDGE_CRM": self.pair.crm,
            "REVBRIDGE_HTTP_TIMEOUT_S": str(self.worker.http_timeout_s),
            "REVBRIDGE_TASK_QUEUE": self.worker.task_queues[0],
            "CHARGEBEE_SITE": sb.chargebee.site or "acme-test",
            "CHARGEBEE_API_KEY": sb.chargebee.api_key or "",
            "CHARGEBEE_API_URL": sb.url("chargebee"),
            "SALESFORCE_TOKEN_URL": sb.url("salesforce") + "/services/oauth2/token",
            "SALESFORCE_CLIENT_ID": sb.salesforce.client_id or "",
            "SALESFORCE_CLIENT_SECRET": sb.salesforce.client_secret or "",
            "CHARGEBEE_WEBHOOK_USERNAME": self.webhooks.chargebee.username,
            "CHARGEBEE_WEBHOOK_PASSWORD": self.webhooks.chargebee.password,
            "STRIPE_API_KEY": sb.stripe.api_key or "",
            "STRIPE_API_URL": sb.url("stripe"),
            "STRIPE_WEBHOOK_SECRETS": sb.stripe.webhook_secret or "",
            **(
                {
                    "RECURLY_API_KEY": sb.recurly.api_key or "",
                    "RECURLY_API_URL": sb.url("recurly"),
                    "RECURLY_WEBHOOK_SECRETS": sb.recurly.webhook_secret or "",
                }
                if "recurly" in sb.ports
                else {}
            ),
            "HUBSPOT_ACCESS_TOKEN": sb.hubspot.access_token or "",
            "HUBSPOT_API_URL": sb.url("hubspot"),
            "HUBSPOT_APP_ID": sb.hubspot.app_id or "",
            "HUBSPOT_CLIENT_SECRET": sb.hubspot.client_secret or "",
            "HUBSPOT_WEBHOOK_URL": f"{self.webhooks.url}/webhooks/hubspot",
            "SALESFORCE_WEBHOOK_SECRETS": sb.salesforce.webhook_secret or "",
            "ZUORA_CLIENT_ID": sb.zuora.client_id or "",
            "ZUORA_CLIENT_SECRET": sb.zuora.client_secret or "",
            **({"ZUORA_API_URL": sb.url("zuora")} if "zuora" in sb.ports else {}),
            **(
                {
                    "ZUORA_WEBHOOK_USERNAME": self.webhooks.zuora.username,
                    "ZUORA_WEBHOOK_PASSWORD": self.webhooks.zuora.password,
                }
                if self.webhooks.zuora
                else {}
            ),
            "SMTP_HOST": sb.host,
            "SMTP_PORT": str(sb.smtp_port),
            "SMTP_SENDER": "billing@revbridge.local",
        }

    def ui_url(self) -> str:
        return f"http://{self.temporal.ip}:{self.temporal.ui_port}/namespaces/{self.temporal.namespace}/workflows"


def config_path(arg: str | None) -> tuple[Path, bool]:
    """The stack file to use: ``--config``, else ``./temporal-dev.yaml``, else the one shipped in
    the package (any directory works after ``pip install``). The flag says it is the shipped one."""
    if arg:
        return Path(arg).resolve(), False
    local = Path(CONFIG_NAME)
    if local.exists():
        return local.resolve(), False
    return revbridge_data.default_config(), True
