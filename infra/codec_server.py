"""The codec server the Temporal Web UI calls, and the signed-in approver's proof.

``POST {CODEC_PATH}/decode`` and ``/encode`` speak the Web UI's remote-codec protocol
(``{"payloads": [{"metadata": {...}, "data": "<base64>"}]}``, proto JSON) with the same keys as
every RevBridge process (infra/codec.py), so the UI shows inputs, results, current details and
summaries in clear to people allowed to see them — and only to them: with an identity provider
configured, both routes need a valid ID token (``Authorization: Bearer``, the UI's "pass access
token", or the session cookie set by ``/_revbridge/login``).

On ``/encode`` (what the UI calls for "Send a Signal"/"Send an Update" input) the payload is
stamped with the signed-in user's verified email: an ``approver`` field in the JSON is set to
that email, and :func:`infra.codec.stamp_approver` signs (email, exact payload bytes) with the
identity key. The worker's codec verifies the signature when it decodes, so the workflow sees
who approved without I/O, and a signal sent by anyone else (typed email, no stamp, a stamp for
other bytes) proves nothing.

The local stack serves this app in front of the Web UI (``ui_upstream``: every other path is
proxied to the dev server's UI), so the codec endpoint is same-origin with the UI and the browser
sends the session cookie with no UI setting; production puts the UI behind its own OIDC login
and TLS, with ``passAccessToken`` (docs/approvals.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx
import jwt
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

from infra.codec import EncryptionCodec, KeyError_, stamp_approver

log = logging.getLogger("revbridge.codec")

CODEC_PATH = "/_revbridge/codec"
LOGIN_PATH = "/_revbridge/login"
LOGOUT_PATH = "/_revbridge/logout"
COOKIE = "revbridge_id"
#: the CLI's route to a verified approval: the person's ID token and the codec server's URL
ENV_ID_TOKEN = "REVBRIDGE_ID_TOKEN"  # noqa: S105 - the variable's name, not a token
ENV_CODEC_URL = "REVBRIDGE_CODEC_URL"
MAX_BODY = 4 * 1024 * 1024  # bytes: the UI decodes a history page at a time
_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}


class Unverified(Exception):
    """Why a token proves nothing (one line, never the token)."""


@dataclass
class OidcVerifier:
    """ID tokens of one issuer for one client: signature (the issuer's JWKS), ``iss``, ``aud``,
    ``exp``, and a verified email."""

    issuer: str
    audience: str
    token_endpoint: str = ""
    _jwks: jwt.PyJWKClient | None = field(default=None, repr=False)

    def discover(self) -> OidcVerifier:
        config = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=5).json()
        self.token_endpoint = config.get("token_endpoint", "")
        self._jwks = jwt.PyJWKClient(config["jwks_uri"], cache_keys=True)
        return self

    def verify(self, token: str) -> str:
        if self._jwks is None:
            self.discover()
        assert self._jwks is not None
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256", "ES256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unverified("the sign-in has expired: sign in again") from None
        except (jwt.PyJWTError, httpx.HTTPError) as exc:
            raise Unverified(f"not a valid sign-in ({type(exc).__name__})") from None
        email = str(claims.get("email") or "").strip().lower()
        if not email or claims.get("email_verified") is False:
            raise Unverified("the sign-in carries no verified email")
        return email

    async def password_login(self, username: str, password: str) -> str:
        """The local provider's password grant (the dev stack's login page): an ID token."""
        if not self.token_endpoint:
            self.discover()
        async with httpx.AsyncClient(timeout=5) as http:
            resp = await http.post(
                self.token_endpoint,
                data={
                    "grant_type": "password",
                    "username": username,
                    "password": password,
                    "client_id": self.audience,
                },
            )
        if resp.status_code != 200:
            raise Unverified(str(resp.json().get("error_description", "sign-in refused"))[:200])
        return str(resp.json()["id_token"])


def _token_of(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.cookies.get(COOKIE)


def _stamped(payload: Payload, who: str, identity_keys: Mapping[str, bytes]) -> Payload:
    out = Payload()
    out.CopyFrom(payload)
    if payload.metadata.get("encoding") == b"json/plain":
        try:
            data = json.loads(payload.data)
        except ValueError:
            data = None
        # the person a message names (an approval's approver, a quote-to-cash pick's or fix's
        # ``by``) is the signed-in person, whatever was typed
        named = [f for f in ("approver", "by") if isinstance(data, dict) and f in data]
        if named and isinstance(data, dict):
            for name in named:
                data[name] = who
            out.data = json.dumps(data, separators=(",", ":")).encode()
    stamp_approver(out, who, identity_keys)
    return out


def build_app(
    codec: EncryptionCodec,
    identity_keys: Mapping[str, bytes],
    verifier: OidcVerifier | None,
    ui_upstream: str | None = None,
    cors_origins: list[str] | None = None,
) -> Starlette:
    """The codec routes, the login page, and (``ui_upstream``) the Web UI behind them."""

    async def identify(request: Request) -> str | None:
        token = _token_of(request)
        if verifier is None or token is None:
            return None
        return verifier.verify(token)

    async def codec_route(request: Request) -> Response:
        op = request.path_params["op"]
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"message": "payloads too large"}, status_code=413)
        try:
            who = await identify(request)
        except Unverified as exc:
            return JSONResponse({"message": str(exc)}, status_code=401)
        if verifier is not None and who is None:
            return JSONResponse({"message": "sign in first"}, status_code=401)
        try:
            payloads = json_format.Parse(body or b"{}", Payloads(), ignore_unknown_fields=True)
        except json_format.ParseError:
            return JSONResponse({"message": "not a payloads JSON object"}, status_code=400)
        try:
            if op == "decode":
                out = [codec.open(p) for p in payloads.payloads]
            else:
                if who and identity_keys:
                    stamped = [_stamped(p, who, identity_keys) for p in payloads.payloads]
                else:
                    stamped = list(payloads.payloads)
                out = [codec.encrypt(p) for p in stamped]
        except KeyError_ as exc:
            return JSONResponse({"message": str(exc)}, status_code=400)
        return JSONResponse(json_format.MessageToDict(Payloads(payloads=out)))

    async def login_page(request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(
                _LOGIN_FORM.format(next=_safe_next(request.query_params.get("next")), error="")
            )
        form = {
            k: v[0]
            for k, v in urllib.parse.parse_qs(
                (await request.body()).decode(errors="replace")
            ).items()
        }
        nxt = _safe_next(str(form.get("next") or "/"))
        if verifier is None:
            return HTMLResponse("no identity provider is configured", status_code=404)
        try:
            token = await verifier.password_login(
                str(form.get("email") or ""), str(form.get("password") or "")
            )
            who = verifier.verify(token)
        except Unverified as exc:
            return HTMLResponse(
                _LOGIN_FORM.format(next=nxt, error=f"<p role='alert'>{_esc(str(exc))}</p>"),
                status_code=401,
            )
        log.info("signed in: %s", who)
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=3600)
        return resp

    async def logout(request: Request) -> Response:
        resp = RedirectResponse(LOGIN_PATH, status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "identity": verifier is not None})

    http = httpx.AsyncClient(base_url=ui_upstream, timeout=30) if ui_upstream else None

    async def proxy(request: Request) -> Response:
        if http is None:
            return JSONResponse({"message": "not found"}, status_code=404)
        if verifier is not None:  # the UI itself needs a signed-in person
            try:
                who = await identify(request)
            except Unverified:
                who = None
            if who is None:
                if request.method == "GET" and not request.url.path.startswith("/api/"):
                    nxt = urllib.parse.quote(
                        str(request.url.path)
                        + ("?" + request.url.query if request.url.query else "")
                    )
                    return RedirectResponse(f"{LOGIN_PATH}?next={nxt}", status_code=303)
                return JSONResponse({"message": "sign in first"}, status_code=401)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        upstream_origin = str(http.base_url).rstrip("/")
        if "origin" in headers:
            headers["origin"] = upstream_origin
        if "referer" in headers:
            headers["referer"] = upstream_origin + "/"
        upstream = await http.request(
            request.method,
            request.url.path,
            params=request.url.query,
            headers=headers,
            content=await request.body(),
        )
        out_headers = [
            (k, v)
            for k, v in upstream.headers.multi_items()
            if k.lower() not in _HOP | {"content-encoding"}
        ]
        resp = Response(upstream.content, status_code=upstream.status_code)
        resp.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers] + [
            (b"content-length", str(len(upstream.content)).encode())
        ]
        return resp

    routes = [
        Route(CODEC_PATH + "/{op:str}", codec_route, methods=["POST"]),
        Route(LOGIN_PATH, login_page, methods=["GET", "POST"]),
        Route(LOGOUT_PATH, logout),
        Route("/_revbridge/health", health),
        Route("/{path:path}", proxy, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
    ]
    middleware = []
    if cors_origins:  # a UI on another origin (production: the UI's URL), credentials included
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=cors_origins,
                allow_methods=["POST", "OPTIONS"],
                allow_headers=["content-type", "x-namespace", "authorization", "caller-type"],
                allow_credentials=True,
                max_age=600,
            )
        )
    app = Starlette(routes=routes, middleware=middleware)
    app.state.started = time.time()
    return app


def _safe_next(value: str | None) -> str:
    """Only a local path: the login never redirects to another site."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/"
    return value


def _esc(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


_LOGIN_FORM = """<!doctype html>
<html><head><title>RevBridge sign-in</title></head><body>
<h1>Sign in to approve</h1>
{error}
<form method="post" action="/_revbridge/login">
<input type="hidden" name="next" value="{next}">
<label>Email <input name="email" type="email" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<button type="submit">Sign in</button>
</form></body></html>
"""


def app_from_env(env: Mapping[str, str], ui_upstream: str | None = None) -> Starlette:
    """``revbridge codec-server``: keys as every process reads them; the provider from
    ``REVBRIDGE_OIDC_ISSUER`` + ``REVBRIDGE_OIDC_CLIENT_ID``; ``REVBRIDGE_CODEC_CORS_ORIGINS``."""
    from infra.codec import load_identity_keys, load_payload_keys

    issuer = env.get("REVBRIDGE_OIDC_ISSUER")
    verifier = (
        OidcVerifier(issuer.rstrip("/"), env.get("REVBRIDGE_OIDC_CLIENT_ID", "revbridge"))
        if issuer
        else None
    )
    identity = load_identity_keys(env)
    origins = [
        o.strip() for o in env.get("REVBRIDGE_CODEC_CORS_ORIGINS", "").split(",") if o.strip()
    ]
    return build_app(
        EncryptionCodec(load_payload_keys(env)), identity, verifier, ui_upstream, origins
    )


class StampingCodec(PayloadCodec):
    """The CLI's codec where approvers are verified: encoding goes through the codec server with
    the person's ID token (so the update carries the stamp of who signed in); decoding is local."""

    def __init__(self, url: str, token: str, local: EncryptionCodec) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._local = local

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        body = json_format.MessageToDict(Payloads(payloads=list(payloads)))
        async with httpx.AsyncClient(timeout=10) as http:
            resp = await http.post(
                f"{self.url}{CODEC_PATH}/encode",
                json=body,
                headers={"Authorization": f"Bearer {self._token}"},
            )
        if resp.status_code != 200:
            raise Unverified(
                f"the codec server refused: {resp.json().get('message', resp.status_code)}"
            )
        return list(json_format.ParseDict(resp.json(), Payloads()).payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self._local.decode(payloads)


def stamping_converter(env: Mapping[str, str]) -> DataConverter:
    from infra.codec import payload_codec

    codec = StampingCodec(env[ENV_CODEC_URL], env[ENV_ID_TOKEN], payload_codec(env))
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)
