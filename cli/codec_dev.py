"""The local stack's codec server and identity provider (``revbridge codec-server``).

``revbridge dev`` / ``demo`` run the dev server's Web UI on an internal port and this process in
front of it on the UI port people open: a sign-in page backed by a local OpenID Connect provider
(sandbox/identity.py, the people of ``policies/approvers.yaml``), the codec routes the UI calls
(same origin, so the session cookie reaches them), and the UI itself proxied. Keys are generated
once into ``.revbridge/`` (payload keys, identity keys, the local sign-in password), files only
the owner can read; nothing secret is printed.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import httpx
from temporalio.client import Client

from cli.config import CliError, StackConfig
from infra.codec import (
    DEV_IDENTITY_KEYS_FILE,
    DEV_KEYS_FILE,
    ENV_IDENTITY_KEYS,
    ENV_IDENTITY_KEYS_FILE,
    ENV_KEYS,
    ENV_KEYS_FILE,
    ensure_key_file,
)

CLIENT_ID = "revbridge-dev"
PASSWORD_FILE = Path(".revbridge") / "dev-password"


def dev_key_env(cfg: StackConfig, identity: bool = True) -> dict[str, str]:
    """The stack's key files (generated once) as the environment every child reads — unless the
    environment names keys already. ``identity``: approvers are verified (a stack with the Web UI
    and its codec server; a headless one has nowhere to sign in)."""
    env: dict[str, str] = {}
    if not os.environ.get(ENV_KEYS) and not os.environ.get(ENV_KEYS_FILE):
        env[ENV_KEYS_FILE] = str(ensure_key_file((cfg.root / DEV_KEYS_FILE).resolve()))
    if not identity:
        return env
    if not os.environ.get(ENV_IDENTITY_KEYS) and not os.environ.get(ENV_IDENTITY_KEYS_FILE):
        env[ENV_IDENTITY_KEYS_FILE] = str(
            ensure_key_file((cfg.root / DEV_IDENTITY_KEYS_FILE).resolve())
        )
    return env


def dev_password(cfg: StackConfig) -> Path:
    """The local provider's sign-in password for every approver, generated once (0600)."""
    path = (cfg.root / PASSWORD_FILE).resolve()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(12) + "\n")
    return path


def _approvers_file(cfg: StackConfig) -> Path:
    from activities.policy import DEFAULT_POLICY_DIR

    folder = (cfg.root / cfg.worker.policy_dir) if cfg.worker.policy_dir else DEFAULT_POLICY_DIR
    return Path(folder) / "approvers.yaml"


def run_codec_server(cfg: StackConfig, ui_upstream: str, idp_port: int) -> None:
    """Serve the provider (``idp_port``) and the codec server on the UI port until stopped."""
    import uvicorn

    from infra.codec import EncryptionCodec, load_identity_keys, load_payload_keys
    from infra.codec_server import OidcVerifier, build_app
    from sandbox.framework import App, ServerThread
    from sandbox.identity import IdentityProvider, approvers_from

    host = cfg.temporal.ip
    provider = IdentityProvider(
        approvers_from(_approvers_file(cfg)), dev_password(cfg).read_text().strip()
    )
    issuer = f"http://{host}:{idp_port}"
    gateway = build_app(
        EncryptionCodec(load_payload_keys()),
        load_identity_keys(),
        OidcVerifier(issuer, CLIENT_ID),
        ui_upstream=ui_upstream,
    )
    # the provider in a thread of its own; the codec server in front, stopped by SIGTERM/Ctrl-C
    with ServerThread({App("identity", provider.app): idp_port}, host=host):
        uvicorn.run(
            gateway, host=host, port=cfg.temporal.ui_port, log_level="warning", access_log=False
        )


async def approver_client(cfg: StackConfig, client: Client, email: str) -> Client:
    """A client whose approvals carry ``email``'s verified identity on the local stack: signed
    in at its sign-in page with the local password, encoding through its codec server. Where
    approvers are not verified (no identity keys), ``client`` itself."""
    from infra.codec import load_identity_keys
    from infra.codec_server import (
        COOKIE,
        ENV_CODEC_URL,
        ENV_ID_TOKEN,
        LOGIN_PATH,
        stamping_converter,
    )

    if not load_identity_keys():
        return client
    gateway = f"http://{cfg.temporal.ip}:{cfg.temporal.ui_port}"
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(
            gateway + LOGIN_PATH,
            data={"email": email, "password": dev_password(cfg).read_text().strip(), "next": "/"},
        )
    token = resp.cookies.get(COOKIE)
    if resp.status_code != 303 or not token:
        raise CliError(f"the local sign-in refused {email} (status {resp.status_code})")
    converter = stamping_converter({**os.environ, ENV_CODEC_URL: gateway, ENV_ID_TOKEN: token})
    return Client(**{**client.config(), "data_converter": converter})
