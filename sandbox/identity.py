"""A local OpenID Connect identity provider for the dev stack and the tests: the people of
``policies/approvers.yaml`` sign in with a password and get an RS256-signed ID token.

Only what the codec server needs of a real provider (Okta, Entra ID, Google, Keycloak):

- ``GET /.well-known/openid-configuration`` → ``{issuer, jwks_uri, token_endpoint}``;
- ``GET /jwks`` → the public signing key (a fresh RSA key per process: tokens die with it);
- ``POST /token`` (form: ``grant_type=password``, ``username``, ``password``, ``client_id``) →
  ``{id_token, access_token, token_type, expires_in}``; a wrong password is a 401 with a one-line
  ``error_description``. Claims: ``iss``, ``aud`` (the client ID), ``sub`` and ``email`` (the
  user's email), ``email_verified``, ``iat``, ``exp``.

The password grant stands in for the browser login of a real provider; nothing else of OIDC is
emulated. Passwords are a constructor argument (the stack's config), never logged.
"""

from __future__ import annotations

import base64
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TOKEN_TTL_S = 3600
KEY_ID = "sandbox-1"


def approvers_from(path: Path) -> list[str]:
    """Every email in the roles of an approvers.yaml."""
    data = yaml.safe_load(path.read_text()) or {}
    people = {p.strip().lower() for members in (data.get("roles") or {}).values() for p in members}
    return sorted(people)


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class IdentityProvider:
    name = "identity"

    def __init__(self, users: Iterable[str], password: str, ttl_s: int = TOKEN_TTL_S) -> None:
        self.users = {u.strip().lower() for u in users}
        self._password = password
        self.ttl_s = ttl_s
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        pub = self._key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": KEY_ID,
            "n": _b64(pub.n),
            "e": _b64(pub.e),
        }

    def issue(self, issuer: str, email: str, audience: str, ttl_s: int | None = None) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience,
            "sub": email,
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + (self.ttl_s if ttl_s is None else ttl_s),
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": KEY_ID})

    @staticmethod
    def _issuer(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def _config(self, request: Request) -> JSONResponse:
        issuer = self._issuer(request)
        return JSONResponse(
            {
                "issuer": issuer,
                "jwks_uri": f"{issuer}/jwks",
                "token_endpoint": f"{issuer}/token",
                "id_token_signing_alg_values_supported": ["RS256"],
                "grant_types_supported": ["password"],
            }
        )

    async def _jwks(self, request: Request) -> JSONResponse:
        return JSONResponse({"keys": [self.jwk()]})

    async def _token(self, request: Request) -> JSONResponse:
        form = _form(await request.body())
        if form.get("grant_type") != "password":
            return _error(400, "unsupported_grant_type", "only the password grant is emulated")
        user = str(form.get("username") or "").strip().lower()
        audience = str(form.get("client_id") or "")
        if not audience:
            return _error(400, "invalid_request", "client_id is required")
        if user not in self.users or form.get("password") != self._password:
            return _error(401, "invalid_grant", "unknown user or wrong password")
        token = self.issue(self._issuer(request), user, audience)
        return JSONResponse(
            {
                "id_token": token,
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.ttl_s,
            }
        )

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._config),
                Route("/jwks", self._jwks),
                Route("/token", self._token, methods=["POST"]),
                Route("/_sandbox/health", _health),
            ]
        )


def _form(body: bytes) -> dict[str, str]:
    """An urlencoded form (no multipart: the token endpoint takes only these)."""
    return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(errors="replace")).items()}


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def _error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status_code=status)


__all__ = ["IdentityProvider", "approvers_from"]
