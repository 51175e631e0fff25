"""How NetSuite checks a caller (erp-support-email-apis.md §1.2), implemented independently of
any OAuth client library so the connector's signing is really tested:

- **TBA (OAuth 1.0a)**: ``Authorization: OAuth realm="<account ID>", oauth_...``; realm must be
  the account ID (``_SB1`` form, un-encoded); HMAC-SHA256 only (HMAC-SHA1 ended in 2023.1);
  the RFC 5849 base string over the emulator's own origin (scheme, host, port), the path, the
  query parameters and every ``oauth_*`` but the signature (realm excluded; a JSON body is not
  a parameter); key ``pct(consumer secret)&pct(token secret)``. An ``oauth_body_hash``, when
  sent, must be the base64 SHA-1 of the raw body. Nonces are single-use, timestamps within
  five minutes.
- **OAuth 2.0 client credentials**: ``POST /services/rest/auth/oauth2/v1/token`` with a JWT
  assertion signed PS256/384/512 or ES256/384/512 by the certificate mapped to the client
  (``kid``), ``iss`` = client ID, ``aud`` = the token URL, ``exp - iat`` ≤ 3600 s, ``scope``
  holding ``rest_webservices`` (a comma-separated string or an array); the bearer token lives
  3600 s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote
from urllib.request import parse_http_list

import jwt

from .errors import NetSuiteError, invalid_login

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_ALGORITHMS = ["PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
TOKEN_LIFETIME_S = 3600
TIMESTAMP_WINDOW_S = 300


def pct(value: str) -> str:
    """RFC 5849 §3.6: every byte but the unreserved characters percent-encoded, upper hex."""
    return quote(value, safe="-._~")


@dataclass
class TbaCredentials:
    consumer_key: str
    consumer_secret: str
    token_id: str
    token_secret: str


@dataclass
class M2mClient:
    """An integration's client-credentials mapping: the certificate ID and its public key."""

    client_id: str
    certificate_id: str
    public_key_pem: str


@dataclass
class Authenticator:
    account_id: str
    tba: list[TbaCredentials]
    m2m: list[M2mClient]
    clock: Callable[[], float] = time.time
    tokens: dict[str, float] = field(default_factory=dict)
    nonces: set[tuple[str, str]] = field(default_factory=set)

    # --- TBA -------------------------------------------------------------------------------------

    def check(self, method: str, origin: str, path: str, query: str, headers, body: bytes) -> str:
        """Who the caller is (``tba:<consumer key>`` or ``m2m:<client>``), or NetSuiteError 401."""
        auth = headers.get("authorization", "")
        scheme, _, rest = auth.partition(" ")
        if scheme.lower() == "bearer":
            expires = self.tokens.get(rest.strip())
            if expires is None or expires <= self.clock():
                raise invalid_login()
            return "m2m"
        if scheme.lower() != "oauth":
            raise invalid_login()
        params: dict[str, str] = {}
        realm = None
        for item in parse_http_list(rest):
            name, sep, value = item.strip().partition("=")
            if not sep:
                raise invalid_login()
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if name == "realm":
                realm = value
            else:
                params[unquote(name)] = unquote(value)
        if realm != self.account_id:
            raise invalid_login()
        if params.get("oauth_signature_method") != "HMAC-SHA256":
            raise invalid_login()
        creds = next(
            (
                c
                for c in self.tba
                if hmac.compare_digest(c.consumer_key, params.get("oauth_consumer_key", ""))
                and hmac.compare_digest(c.token_id, params.get("oauth_token", ""))
            ),
            None,
        )
        nonce, stamp = params.get("oauth_nonce", ""), params.get("oauth_timestamp", "")
        if creds is None or len(nonce) < 6 or not stamp.isdigit():
            raise invalid_login()
        if abs(int(stamp) - self.clock()) > TIMESTAMP_WINDOW_S:
            raise invalid_login()
        if "oauth_body_hash" in params:
            # the body-hash extension is SHA-1 by definition (not a security choice of ours)
            want = base64.b64encode(hashlib.sha1(body).digest()).decode()  # noqa: S324
            if not hmac.compare_digest(want, params["oauth_body_hash"]):
                raise invalid_login()
        signed = [(k, v) for k, v in params.items() if k != "oauth_signature"]
        signed += parse_qsl(query, keep_blank_values=True)
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            signed += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        normalized = "&".join(f"{k}={v}" for k, v in sorted((pct(k), pct(v)) for k, v in signed))
        base = "&".join((method.upper(), pct(origin.lower() + path), pct(normalized)))
        key = f"{pct(creds.consumer_secret)}&{pct(creds.token_secret)}"
        digest = hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(
            base64.b64encode(digest).decode(), params.get("oauth_signature", "")
        ):
            raise invalid_login()
        if (creds.consumer_key, nonce) in self.nonces:  # a replayed request
            raise invalid_login()
        self.nonces.add((creds.consumer_key, nonce))
        return f"tba:{creds.consumer_key}"

    # --- OAuth 2.0 client credentials --------------------------------------------------------

    def issue_token(self, form: dict[str, str], token_url: str) -> dict[str, object]:
        def refuse(error: str) -> NetSuiteError:
            exc = NetSuiteError(400, error, error)
            exc.oauth_error = error  # type: ignore[attr-defined]
            return exc

        if form.get("grant_type") != "client_credentials":
            raise refuse("unsupported_grant_type")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise refuse("invalid_request")
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise refuse("invalid_request") from None
        client = next((c for c in self.m2m if c.certificate_id == header.get("kid")), None)
        if client is None or header.get("alg") not in JWT_ALGORITHMS:
            raise refuse("invalid_client")
        try:
            claims = jwt.decode(
                assertion,
                client.public_key_pem,
                algorithms=JWT_ALGORITHMS,
                audience=token_url,
                issuer=client.client_id,
                options={"require": ["iss", "aud", "iat", "exp"]},
                leeway=5,
            )
        except jwt.PyJWTError:
            raise refuse("invalid_client") from None
        if int(claims["exp"]) - int(claims["iat"]) > TOKEN_LIFETIME_S:
            raise refuse("invalid_request")
        scope = claims.get("scope", "")
        scopes = scope if isinstance(scope, list) else [s.strip() for s in str(scope).split(",")]
        if "rest_webservices" not in scopes:
            raise refuse("invalid_scope")
        token = secrets.token_urlsafe(32)
        self.tokens[token] = self.clock() + TOKEN_LIFETIME_S
        return {"access_token": token, "expires_in": TOKEN_LIFETIME_S, "token_type": "bearer"}
