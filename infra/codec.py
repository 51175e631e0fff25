"""The one data converter every RevBridge client uses: pydantic JSON, then AES-256-GCM.

Every payload that reaches Temporal (workflow and activity inputs and results, signals, updates,
queries, memos, summaries and current details) is the serialized payload encrypted with
authenticated encryption; the metadata says ``binary/encrypted`` and names the key ID, so keys
rotate: encrypt with the current key, decrypt with any configured one. A payload without that
encoding (histories recorded before encryption, such as ``tests/histories/``) decodes unchanged.

Keys (32 random bytes each) come from the environment, never from code or logs:

- ``REVBRIDGE_PAYLOAD_KEYS``: ``kid=base64key`` entries, comma-separated, the first one current;
- or ``REVBRIDGE_PAYLOAD_KEYS_FILE``: a file with one such entry per line (the first current);
- else the dev stack's ``.revbridge/payload-keys`` in the working directory, when it exists
  (``revbridge dev`` generates it once, see :func:`ensure_key_file`).

Without any key the converter stays plaintext (:func:`encryption_configured` says so): the dev
stack always has keys, a deployment sets them (docs/approvals.md).

Approvals: the codec server (``infra/codec_server.py``) stamps the Web UI user's verified
identity onto an approval payload with an HMAC (``REVBRIDGE_IDENTITY_KEYS``). This codec checks
that stamp when it decodes: a valid one becomes the metadata entry :data:`VERIFIED_APPROVER` the
workflow reads; anything claiming that entry from outside is dropped first. With identity keys
configured, every decoded payload carries :data:`IDENTITY_CHECK` (``verified`` or ``none``), so
the workflow knows a typed email alone is not enough — without I/O, deterministically.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from domain.approvals import (
    APPROVER_SIGNATURE,
    CLAIMED_APPROVER,
    IDENTITY_CHECK,
    VERIFIED_APPROVER,
)

ENV_KEYS = "REVBRIDGE_PAYLOAD_KEYS"
ENV_KEYS_FILE = "REVBRIDGE_PAYLOAD_KEYS_FILE"
ENV_IDENTITY_KEYS = "REVBRIDGE_IDENTITY_KEYS"
ENV_IDENTITY_KEYS_FILE = "REVBRIDGE_IDENTITY_KEYS_FILE"
#: the dev stack's key files, relative to the stack's root (the working directory)
DEV_KEYS_FILE = Path(".revbridge") / "payload-keys"
DEV_IDENTITY_KEYS_FILE = Path(".revbridge") / "identity-keys"

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
_INBOUND_ONLY = (VERIFIED_APPROVER, IDENTITY_CHECK)
_NONCE = 12


class KeyError_(ValueError):
    """A key configuration that cannot work, or a payload no configured key opens (one line)."""


def parse_keys(text: str, what: str = ENV_KEYS) -> dict[str, bytes]:
    """``kid=base64`` entries (comma or newline separated), in order: the first is current."""
    keys: dict[str, bytes] = {}
    for raw in text.replace(",", "\n").splitlines():
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        kid, sep, b64 = entry.partition("=")
        kid = kid.strip()
        if not sep or not kid or len(kid) > 64:
            raise KeyError_(f"{what}: each entry is key-id=base64-key")
        try:
            key = base64.urlsafe_b64decode(b64.strip() + "=" * (-len(b64.strip()) % 4))
        except ValueError:
            raise KeyError_(f"{what}: the key of {kid!r} is not base64") from None
        if len(key) != 32:
            raise KeyError_(f"{what}: the key of {kid!r} must be 32 bytes, not {len(key)}")
        keys[kid] = key
    return keys


def _load(env_keys: str, env_file: str, dev_file: Path, env: Mapping[str, str]) -> dict[str, bytes]:
    if env.get(env_keys):
        return parse_keys(env[env_keys], env_keys)
    path = Path(env[env_file]) if env.get(env_file) else dev_file
    if env.get(env_file) or path.exists():
        try:
            return parse_keys(path.read_text(), str(path))
        except OSError as exc:
            raise KeyError_(f"cannot read {path}: {exc.strerror}") from None
    return {}


def load_payload_keys(env: Mapping[str, str] | None = None) -> dict[str, bytes]:
    return _load(ENV_KEYS, ENV_KEYS_FILE, DEV_KEYS_FILE, os.environ if env is None else env)


def load_identity_keys(env: Mapping[str, str] | None = None) -> dict[str, bytes]:
    return _load(
        ENV_IDENTITY_KEYS,
        ENV_IDENTITY_KEYS_FILE,
        DEV_IDENTITY_KEYS_FILE,
        os.environ if env is None else env,
    )


def new_key_entry(kid: str | None = None) -> str:
    kid = kid or "k" + secrets.token_hex(4)
    return f"{kid}={base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip('=')}"


def ensure_key_file(path: Path) -> Path:
    """A key file generated once (0600) and kept: the dev stack's payload and identity keys."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(new_key_entry() + "\n")
    return path


# --- approver stamps ---------------------------------------------------------------------------


def approver_signature(key: bytes, approver: str, data: bytes) -> str:
    """HMAC-SHA256 over the approver and the exact payload bytes (action ID, decision, note)."""
    mac = hmac.new(key, approver.encode() + b"\0" + data, hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def stamp_approver(payload: Payload, approver: str, identity_keys: Mapping[str, bytes]) -> None:
    """What the codec server does for a signed-in user: claim and sign (current identity key)."""
    kid, key = next(iter(identity_keys.items()))
    payload.metadata[CLAIMED_APPROVER] = approver.encode()
    sig = approver_signature(key, approver, payload.data)
    payload.metadata[APPROVER_SIGNATURE] = f"{kid}:{sig}".encode()


def verified_approver(payload: Payload, identity_keys: Mapping[str, bytes]) -> str | None:
    claimed = payload.metadata.get(CLAIMED_APPROVER)
    stamp = payload.metadata.get(APPROVER_SIGNATURE)
    if not claimed or not stamp:
        return None
    kid, _, sig = stamp.decode(errors="replace").partition(":")
    key = identity_keys.get(kid)
    if key is None:
        return None
    approver = claimed.decode(errors="replace")
    want = approver_signature(key, approver, payload.data)
    return approver if hmac.compare_digest(want, sig) else None


# --- the codec ---------------------------------------------------------------------------------


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM with the key ID in the metadata (and bound as associated data)."""

    def __init__(
        self,
        keys: Mapping[str, bytes],
        identity_keys: Mapping[str, bytes] | None = None,
    ) -> None:
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self._current = next(iter(keys), None)
        self._identity_keys = dict(identity_keys or {})

    @property
    def encrypts(self) -> bool:
        return self._current is not None

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        if self._current is None:
            return payload
        kid = self._current
        nonce = os.urandom(_NONCE)
        sealed = self._keys[kid].encrypt(nonce, payload.SerializeToString(), kid.encode())
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID: kid.encode()},
            data=nonce + sealed,
        )

    def open(self, payload: Payload) -> Payload:
        """Decrypt only (the codec server's /decode): no identity checks, no added metadata."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        kid = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        aead = self._keys.get(kid)
        if aead is None:
            raise KeyError_(f"payload encrypted with key {kid[:64]!r}, which is not configured")
        try:
            plain = aead.decrypt(payload.data[:_NONCE], payload.data[_NONCE:], kid.encode())
        except InvalidTag:
            raise KeyError_(f"payload under key {kid[:64]!r} failed authentication") from None
        inner = Payload()
        inner.ParseFromString(plain)
        return inner

    def decrypt(self, payload: Payload) -> Payload:
        inner = self.open(payload)
        if inner is payload:
            inner = Payload()
            inner.CopyFrom(payload)
        for name in _INBOUND_ONLY:  # never trusted from outside: only this codec sets them
            if name in inner.metadata:
                del inner.metadata[name]
        if self._identity_keys:
            who = verified_approver(inner, self._identity_keys)
            inner.metadata[IDENTITY_CHECK] = b"verified" if who else b"none"
            if who:
                inner.metadata[VERIFIED_APPROVER] = who.encode()
        return inner


def payload_codec(env: Mapping[str, str] | None = None) -> EncryptionCodec:
    return EncryptionCodec(load_payload_keys(env), load_identity_keys(env))


def encryption_configured(env: Mapping[str, str] | None = None) -> bool:
    return bool(load_payload_keys(env))


def data_converter(env: Mapping[str, str] | None = None) -> DataConverter:
    """pydantic JSON + the encryption codec (keys read now, from ``env`` or the environment)."""
    codec = payload_codec(env)
    if not codec.encrypts and not codec._identity_keys:
        return pydantic_data_converter
    # failure messages and stack traces too (a vendor's error can quote customer data): they
    # travel as an encoded attribute, sealed like any payload, and read back by every client
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
