"""How every RevBridge process finds Temporal: env-config profiles (TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_PROFILE, or a TOML profile file),
falling back to the local dev server. Credentials are never read or printed by our code.
Payloads are encrypted by the one data converter of ``infra/codec.py``."""

from __future__ import annotations

from typing import Any

from temporalio.envconfig import ClientConfig

from infra.codec import data_converter

LOCAL_DEFAULT = "127.0.0.1:7233"


def client_connect_kwargs(default_address: str = LOCAL_DEFAULT) -> dict[str, Any]:
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", default_address)
    config.setdefault("namespace", "default")
    # pydantic JSON + payload encryption (infra/codec.py), the same in every process
    config["data_converter"] = data_converter()
    return config
