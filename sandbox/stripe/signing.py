"""Stripe webhook signatures, exactly as ``stripe/_webhook.py`` verifies them.

``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`` where each ``v1`` is
``HMAC-SHA256(key=secret, msg=f"{t}.{body}")`` for one active endpoint secret (several during a
secret rotation).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable


def compute_signature(body: bytes | str, secret: str, timestamp: int) -> str:
    payload = body.decode("utf-8") if isinstance(body, bytes) else body
    return hmac.new(
        secret.encode("utf-8"), f"{timestamp}.{payload}".encode(), hashlib.sha256
    ).hexdigest()


def signature_header(
    body: bytes | str, secrets: Iterable[str], timestamp: int | None = None
) -> str:
    t = int(time.time()) if timestamp is None else int(timestamp)
    parts = [f"t={t}"] + [f"v1={compute_signature(body, s, t)}" for s in secrets]
    return ",".join(parts)


def verify_header(body: bytes | str, header: str, secret: str, tolerance: int | None = 300) -> bool:
    """A dependency-free verifier with the client's semantics (any v1 matches; age checked after)."""
    items = [p.split("=", 1) for p in header.split(",") if "=" in p]
    ts = next((v for k, v in items if k == "t"), None)
    sigs = [v for k, v in items if k == "v1"]
    if ts is None or not sigs:
        return False
    expected = compute_signature(body, secret, int(ts))
    if not any(hmac.compare_digest(expected, s) for s in sigs):
        return False
    return not (tolerance and int(ts) < time.time() - tolerance)
