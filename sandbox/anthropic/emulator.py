"""The Anthropic Messages API emulator, scriptable per test.

Facts it follows are in ``shared/docs/reference/crm-llm-apis.md`` §0.3 and §3.

Vendor API:

- ``POST /v1/messages`` — non-streaming. Auth by ``x-api-key`` (the public API and 0.x SDK) or
  ``Authorization: Bearer`` (what the 2.x SDK sends); ``x-api-key`` wins when both are present.
  Any ``anthropic-version``. The body is validated like the API (see :mod:`.validation`);
  ``stream: true`` is refused with a 400 (the SDK's non-streaming path is all RevBridge uses).
  The answer is the next scripted reply (see :mod:`.script`), or a schema-derived default.
- ``POST /v1/messages/count_tokens`` — the same estimate the usage block uses.
- ``GET /v1/models`` and ``GET /v1/models/{id}`` — the Models API over the catalogue
  (:mod:`.models`): only real model IDs are served; any other (or a retired one) is a 404
  ``not_found_error`` ``model: <id>``, and a ``max_tokens`` above the model's limit a 400
  ``invalid_request_error`` in the API's words, as a real account answers.
- Anything else: 404 ``not_found_error``.

Every answer carries ``request-id``; errors use the envelope
``{"type": "error", "error": {"type", "message"}, "request_id"}``. Injected status faults (the
framework's ``/_sandbox/faults``) get the same envelope.

Control plane (besides the framework's): ``GET|POST|DELETE /_sandbox/anthropic/script`` — read,
append to (a JSON list, or ``{"replies": [...]}``) or clear the reply queue; ``POST
/_sandbox/seed`` with ``{"script": [...]}`` appends too. ``POST /_sandbox/reset`` empties the
queue and the prompt cache.
"""

from __future__ import annotations

import hmac
import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..framework import Emulator, WebhookTarget, json_body
from .errors import AnthropicApiError, error_response, new_id, new_request_id
from .models import CATALOGUE, ModelSpec
from .prompt import PromptCache, canonical, estimate_tokens, segments
from .script import DEFAULT_STRING, example_for, normalize
from .validation import MessagesRequest, bad, validate

DEFAULT_API_KEY = "sk-ant-sandbox-key"
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class AnthropicEmulator(Emulator):
    """``api_key``: the one key it accepts. ``models``: the model IDs served (default: the real
    catalogue of :mod:`.models`; an ID the catalogue does not know is served with a 64,000
    output limit); any other model is a 404 ``not_found_error``. ``min_cache_tokens``: the
    shortest prefix the prompt cache keeps (the API's per-model minimum; 0 so tests cache)."""

    name = "anthropic"

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        models: Iterable[str] | None = None,
        min_cache_tokens: int = 0,
        clock: Callable[[], float] | None = None,
        webhook_targets: Iterable[WebhookTarget] = (),
    ) -> None:
        self.api_key = api_key
        if models is None:
            self.catalogue = {k: v for k, v in CATALOGUE.items() if v.served}
        else:
            self.catalogue = {m: CATALOGUE.get(m) or ModelSpec(m, m, 64_000) for m in models}
        self.models = frozenset(self.catalogue)
        self.min_cache_tokens = min_cache_tokens
        self._clock = clock
        super().__init__(webhook_targets)

    # --- state and scripting ----------------------------------------------------------------

    def reset_state(self) -> None:
        self._script: deque[dict[str, Any]] = deque()
        cache = PromptCache(self.min_cache_tokens)
        if self._clock is not None:
            cache.clock = self._clock
        self.cache = cache
        #: every successful Messages answer, in order (the ledger holds the requests)
        self.answers: list[dict[str, Any]] = []

    def script(self, replies: Iterable[Any]) -> int:
        """Append scripted replies (see :mod:`sandbox.anthropic.script`); returns how many are
        pending. All-or-nothing: one bad entry raises ValueError and nothing is queued."""
        checked = [normalize(r) for r in replies]
        with self.lock:
            self._script.extend(checked)
            return len(self._script)

    def clear_script(self) -> None:
        with self.lock:
            self._script.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self._script)

    def seed(self, data: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(data) - {"script"}
        if unknown:
            raise ValueError(f"unknown seed keys: {sorted(unknown)}")
        return {"pending": self.script(data.get("script") or [])}

    # --- the app ------------------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/messages", self._messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self._count_tokens, methods=["POST"]),
            Route("/v1/models", self._list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", self._get_model, methods=["GET"]),
            Route(
                "/_sandbox/anthropic/script", self._script_route, methods=["GET", "POST", "DELETE"]
            ),
            Route("/{path:path}", self._not_found, methods=_ALL_METHODS),
        ]

    def error_response(self, status: int, message: str) -> Response:
        return error_response(status, message)

    async def _not_found(self, request: Request) -> Response:
        return error_response(404, f"Not found: {request.method} {request.url.path}"[:200])

    async def _script_route(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear_script()
        elif request.method == "POST":
            try:
                data = json_body(await request.body())
                if isinstance(data, dict) and set(data) == {"replies"}:
                    data = data["replies"]
                if not isinstance(data, list):
                    raise ValueError("send a JSON list of replies, or {'replies': [...]}")
                self.script(data)
            except ValueError as exc:
                return JSONResponse({"error": f"bad script: {exc}"[:300]}, status_code=400)
        return JSONResponse({"pending": self.pending()})

    def _authenticate(self, request: Request) -> None:
        key = request.headers.get("x-api-key")
        if key is None:
            scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                key = token.strip()
        if key is None:
            raise AnthropicApiError(401, "x-api-key header is required")
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise AnthropicApiError(401, "invalid x-api-key")

    async def _parse(self, request: Request, *, count_tokens: bool) -> MessagesRequest:
        self._authenticate(request)
        try:
            body = json_body(await request.body())
        except ValueError as exc:
            raise bad(f"There was an error parsing the body: {exc}") from None
        req = validate(body, count_tokens=count_tokens)
        spec = self.catalogue.get(req.model)
        if spec is None:
            raise AnthropicApiError(404, f"model: {req.model[:100]}")
        if req.max_tokens is not None and req.max_tokens > spec.max_tokens:
            raise bad(
                f"max_tokens: {req.max_tokens} > {spec.max_tokens}, which is the maximum "
                f"allowed number of output tokens for {req.model}"
            )
        return req

    async def _list_models(self, request: Request) -> Response:
        try:
            self._authenticate(request)
        except AnthropicApiError as err:
            return err.response()
        data = [spec.info() for spec in self.catalogue.values()]
        return JSONResponse(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            },
            headers={"request-id": new_request_id()},
        )

    async def _get_model(self, request: Request) -> Response:
        try:
            self._authenticate(request)
            model_id = request.path_params["model_id"]
            spec = self.catalogue.get(model_id)
            if spec is None:
                raise AnthropicApiError(404, f"model: {model_id[:100]}")
        except AnthropicApiError as err:
            return err.response()
        return JSONResponse(spec.info(), headers={"request-id": new_request_id()})

    async def _count_tokens(self, request: Request) -> Response:
        try:
            req = await self._parse(request, count_tokens=True)
        except AnthropicApiError as err:
            return err.response()
        total = sum(s.tokens for s in segments(req))
        return JSONResponse({"input_tokens": total}, headers={"request-id": new_request_id()})

    async def _messages(self, request: Request) -> Response:
        try:
            req = await self._parse(request, count_tokens=False)
            if req.stream:
                raise bad("stream: streaming is not supported by this sandbox; send stream=false")
            with self.lock:
                reply = self._script.popleft() if self._script else None
                message = self._answer(req, reply)
                self.answers.append(message)
        except AnthropicApiError as err:
            return err.response()
        return JSONResponse(message, headers={"request-id": new_request_id()})

    # --- answering ----------------------------------------------------------------------------

    def _answer(self, req: MessagesRequest, reply: dict[str, Any] | None) -> dict[str, Any]:
        if reply is not None and "error" in reply:
            err = reply["error"]
            raise AnthropicApiError(
                err["status"],
                err.get("message"),
                err.get("type"),
                retry_after=err.get("retry_after"),
                error_code=err.get("error_code"),
            )
        tool = req.forced_tool()
        reply = reply if reply is not None else self._default_reply(req, tool)
        content: list[dict[str, Any]] = []
        stop_reason = "end_turn"
        if "text" in reply:
            content.append({"type": "text", "text": reply["text"]})
        structured = "tool_input" in reply or "malformed" in reply
        if structured:
            value = reply["tool_input"] if "tool_input" in reply else reply["malformed"]
            if tool is not None:
                content.append(
                    {
                        "type": "tool_use",
                        "id": new_id("toolu_01"),
                        "name": tool["name"],
                        "input": value,
                    }
                )
                stop_reason = "tool_use"
            else:
                content.append({"type": "text", "text": json.dumps(value, ensure_ascii=False)})
        output_tokens = sum(
            estimate_tokens(b["text"] if b["type"] == "text" else canonical(b["input"]))
            for b in content
        )
        if not structured and req.max_tokens is not None and output_tokens > req.max_tokens:
            # only plain text is cut at max_tokens; a scripted tool input goes out whole
            keep = req.max_tokens * 4
            content = [{"type": "text", "text": "".join(b["text"] for b in content)[:keep]}]
            output_tokens, stop_reason = req.max_tokens, "max_tokens"
        stop_reason = reply.get("stop_reason", stop_reason)
        cached = self.cache.account(req.model, segments(req))
        usage: dict[str, Any] = {
            "input_tokens": cached.input_tokens,
            "output_tokens": max(1, output_tokens),
            "cache_creation_input_tokens": cached.cache_creation_input_tokens,
            "cache_read_input_tokens": cached.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": cached.creation_by_ttl["5m"],
                "ephemeral_1h_input_tokens": cached.creation_by_ttl["1h"],
            },
            "service_tier": "standard",
        }
        usage.update(reply.get("usage") or {})
        return {
            "id": new_id("msg_01"),
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }

    @staticmethod
    def _default_reply(req: MessagesRequest, tool: dict[str, Any] | None) -> dict[str, Any]:
        if tool is not None:
            return {"tool_input": example_for(tool["input_schema"])}
        if req.output_schema is not None:
            return {"tool_input": example_for(req.output_schema)}
        return {"text": DEFAULT_STRING}
