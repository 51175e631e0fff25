"""OAuth 2.0 token endpoint (reference §1.10): client credentials and the JWT bearer flow.

``POST /services/oauth2/token`` (form-encoded):

- ``grant_type=client_credentials`` with the client id/secret in a Basic header or in the body
  (``client_id``, ``client_secret``); runs as the integration user.
- ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<RS256 JWT>`` with
  ``iss`` = client id, ``sub`` = an active user's Username, ``aud`` = a salesforce.com login URL
  or this server, ``exp`` at most ~5 minutes ahead. The signature is verified when the emulator
  was given ``jwt_public_key_pem``.

Answers 200 ``{access_token, signature, scope, instance_url, id, token_type, issued_at}`` with
``instance_url = https://<the host:port the request was sent to>``, or 400 ``{error,
error_description}`` (``invalid_client``, ``invalid_grant``, ``unsupported_grant_type``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_JWT_LIFETIME_S = 300


@dataclass
class Session:
    token: str
    user_id: str
    expires_at: float


class Tokens:
    """Issued access tokens (opaque ``00D...!AQ...`` strings) and their expiry."""

    def __init__(self, org_id: str, ttl_s: float) -> None:
        self.org_id = org_id
        self.ttl_s = ttl_s
        self.sessions: dict[str, Session] = {}

    def issue(self, user_id: str) -> Session:
        token = f"{self.org_id[:15]}!AQ{secrets.token_urlsafe(48)}"
        session = Session(token, user_id, time.time() + self.ttl_s)
        self.sessions[token] = session
        return session

    def validate(self, token: str) -> Session | None:
        session = self.sessions.get(token)
        if session is None or session.expires_at <= time.time():
            return None
        return session

    def expire_all(self) -> int:
        n = len(self.sessions)
        for session in self.sessions.values():
            session.expires_at = 0.0
        return n


class OAuthError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


class TokenEndpoint:
    def __init__(
        self,
        tokens: Tokens,
        client_id: str,
        client_secret: str,
        jwt_public_key_pem: str | None,
        user_by_username: Callable[[str], str | None],
        integration_user: Callable[[], str],
    ) -> None:
        self.tokens = tokens
        self.client_id = client_id
        self.client_secret = client_secret
        self.jwt_public_key_pem = jwt_public_key_pem
        self.user_by_username = user_by_username
        self.integration_user = integration_user

    async def handle(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        try:
            grant = form.get("grant_type")
            if grant == "client_credentials":
                user_id = self._client_credentials(request, form)
            elif grant == JWT_GRANT:
                user_id = self._jwt_bearer(request, form.get("assertion", ""))
            else:
                raise OAuthError("unsupported_grant_type", "grant type not supported")
        except OAuthError as exc:
            return JSONResponse(
                {"error": exc.error, "error_description": exc.description}, status_code=400
            )
        session = self.tokens.issue(user_id)
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        issued_at = str(int(time.time() * 1000))
        identity = f"https://login.salesforce.com/id/{self.tokens.org_id}/{user_id}"
        mac = hmac.new(self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256)
        body: dict[str, Any] = {
            "access_token": session.token,
            "signature": base64.b64encode(mac.digest()).decode(),
            "scope": "api",
            "instance_url": f"https://{host}",
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }
        return JSONResponse(body, headers={"Cache-Control": "no-cache, no-store"})

    def _client_credentials(self, request: Request, form: dict[str, str]) -> str:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:].strip()).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            client_id, _, secret = decoded.partition(":")
        if client_id != self.client_id or not hmac.compare_digest(
            (secret or "").encode(), self.client_secret.encode()
        ):
            raise OAuthError("invalid_client", "invalid client credentials")
        return self.integration_user()

    def _jwt_bearer(self, request: Request, assertion: str) -> str:
        try:
            if self.jwt_public_key_pem:
                claims = jwt.decode(
                    assertion,
                    self.jwt_public_key_pem,
                    algorithms=["RS256"],
                    options={"verify_aud": False, "require": ["iss", "sub", "exp"]},
                )
            else:
                claims = jwt.decode(
                    assertion,
                    options={"verify_signature": False, "verify_aud": False},
                    algorithms=["RS256"],
                )
        except jwt.ExpiredSignatureError:
            raise OAuthError("invalid_grant", "expired authorization code") from None
        except jwt.InvalidTokenError as exc:
            raise OAuthError("invalid_grant", f"invalid assertion: {exc}") from None
        if claims.get("iss") != self.client_id:
            raise OAuthError("invalid_client", "client identifier invalid")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= time.time():
            raise OAuthError("invalid_grant", "expired authorization code")
        if exp > time.time() + MAX_JWT_LIFETIME_S:
            raise OAuthError("invalid_grant", "invalid assertion: exp is too far in the future")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        own = {f"https://{request.headers.get('host')}", f"http://{request.headers.get('host')}"}
        if not any(
            isinstance(a, str)
            and (a.rstrip("/").endswith("salesforce.com") or a.rstrip("/") in own)
            for a in auds
        ):
            raise OAuthError("invalid_grant", "audience is invalid")
        user_id = self.user_by_username(str(claims.get("sub", "")))
        if user_id is None:
            raise OAuthError("invalid_grant", "user hasn't approved this consumer")
        return user_id
