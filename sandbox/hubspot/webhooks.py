"""Webhooks v3 as HubSpot sends them: the event objects and the request signatures (reference §2.7)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any

from .catalog import OBJECT_TYPES

#: percent-escapes HubSpot decodes in the URI before signing (v3)
_URI_DECODE = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_KINDS = ("creation", "deletion", "propertyChange", "associationChange", "merge", "restore")
#: appended, never reordered: a subscription's id derives from its position
_PREFIXES = ("contact", "company", "deal", "ticket", "object", "product", "line_item")


def signing_uri(url: str) -> str:
    for escape, char in _URI_DECODE.items():
        url = url.replace(escape, char).replace(escape.lower(), char)
    return url


def signature_v3(
    client_secret: str, method: str, url: str, body: bytes, timestamp_ms: int | str
) -> str:
    """base64(HMAC-SHA256(client_secret, METHOD + URI + body + timestamp))."""
    message = (
        method.upper().encode() + signing_uri(url).encode() + body + str(timestamp_ms).encode()
    )
    digest = hmac.new(client_secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signature_v1(client_secret: str, body: bytes) -> str:
    return hashlib.sha256(client_secret.encode() + body).hexdigest()


def signer(client_secret: str) -> Callable[[bytes, str], Mapping[str, str]]:
    """The per-attempt headers for one delivery: a fresh timestamp and a v3 signature over the
    target URL."""

    def sign(body: bytes, url: str) -> Mapping[str, str]:
        ts = int(time.time() * 1000)
        return {
            "X-HubSpot-Signature-v3": signature_v3(client_secret, "POST", url, body, ts),
            "X-HubSpot-Request-Timestamp": str(ts),
        }

    return sign


def subscription_type(type_name: str, kind: str) -> str:
    prefix = OBJECT_TYPES[type_name].webhook_prefix or "object"
    return f"{prefix}.{kind}"


def subscription_id(sub_type: str) -> int:
    """A stable id per subscription type, as a portal's app would have."""
    prefix, kind = sub_type.split(".", 1)
    return 1000 + _PREFIXES.index(prefix) * 10 + _KINDS.index(kind)


def subscribed(
    sub_type: str, property_name: str | None, subscriptions: frozenset[str] | None
) -> bool:
    """``None`` subscribes to everything; entries are ``deal.creation`` or ``deal.propertyChange``
    (any property) or ``deal.propertyChange:dealstage`` (one property)."""
    if subscriptions is None:
        return True
    return sub_type in subscriptions or (
        property_name is not None and f"{sub_type}:{property_name}" in subscriptions
    )


def event_payload(
    raw: Mapping[str, Any], event_id: int, portal_id: int, app_id: int
) -> dict[str, Any]:
    """One element of the POSTed array, keys in HubSpot's order."""
    sub_type = subscription_type(raw["type"], raw["kind"])
    out: dict[str, Any] = {
        "eventId": event_id,
        "subscriptionId": subscription_id(sub_type),
        "portalId": portal_id,
        "appId": app_id,
        "occurredAt": raw["occurredAt"],
        "subscriptionType": sub_type,
        "attemptNumber": 0,
    }
    if raw["kind"] == "associationChange":
        for key in (
            "associationType",
            "fromObjectId",
            "toObjectId",
            "associationRemoved",
            "isPrimaryAssociation",
        ):
            out[key] = raw[key]
    else:
        out["objectId"] = int(raw["id"])
    if raw["kind"] == "propertyChange":
        out["propertyName"] = raw["name"]
        out["propertyValue"] = raw["value"]
    out["changeSource"] = raw["source"]
    if raw["kind"] == "creation":
        out["changeFlag"] = "NEW"
    elif raw["kind"] == "deletion":
        out["changeFlag"] = "DELETED"
    if sub_type.startswith("object."):
        out["objectTypeId"] = OBJECT_TYPES[raw["type"]].type_id
    if raw.get("sourceId"):
        out["sourceId"] = raw["sourceId"]
    return out
