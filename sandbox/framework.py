"""A small ASGI framework for stateful vendor emulators.

Every emulator is a Starlette app with the same control plane under ``/_sandbox``:

- ``GET /_sandbox/health``                 liveness
- ``GET|DELETE /_sandbox/requests``        the request ledger (method, path, query, headers, body, status)
- ``GET|POST|DELETE /_sandbox/faults``     fault injection (see :class:`Fault`)
- ``POST /_sandbox/reset``                 drop all state, ledger, faults
- ``POST /_sandbox/seed``                  scenario seeding (emulator specific JSON)
- ``GET|POST|DELETE /_sandbox/webhooks``   webhook targets; ``GET /_sandbox/webhooks/deliveries``

The ledger and the faults sit in an ASGI middleware, so they see the exact bytes the official client
sent. Vendor routes never see the control plane's requests and the ledger never records them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

log = logging.getLogger("sandbox")

# Headers whose values never go into the ledger in clear (the ledger is for idempotency keys and bodies).
_SECRET_HEADERS = {"authorization", "x-api-key", "cookie"}
# Form and JSON fields whose values never go into the ledger in clear (OAuth token requests).
_SECRET_FIELDS = re.compile(
    r'(?P<k>(?:client_secret|assertion|password|refresh_token)(?:"\s*:\s*"|=))(?P<v>[^&"]*)'
)

ErrorFactory = Callable[[int, str], Response]
#: per-attempt signature headers for a webhook body sent to a target URL
Signer = Callable[[bytes, str], Mapping[str, str]]


@dataclass
class Fault:
    """One injected fault. Matches requests by method and a regex on the raw path.

    kinds:
      - ``status``: answer ``status`` (vendor-shaped error body unless ``body`` is given) without
        touching state; ``retry_after`` adds a Retry-After header.
      - ``commit_then_timeout``: run the request for real (state is committed), then hold the
        response for ``delay_s`` seconds so the client times out not knowing it succeeded.
      - ``commit_then_error``: run the request for real, then answer ``status`` (default 500).
    ``times`` is how many matching requests it hits (then it is spent); -1 means forever.
    """

    kind: str = "status"
    method: str | None = None
    path: str = ".*"
    status: int = 500
    retry_after: float | None = None
    body: Any = None
    delay_s: float = 30.0
    times: int = 1
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times != -1 and self.hits >= self.times:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return re.fullmatch(self.path, path) is not None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class WebhookTarget:
    url: str
    basic_auth: tuple[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Delivery:
    seq: int
    url: str
    event_id: str | None
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    delivered: bool = False


class Emulator:
    """Base class: subclasses set ``name``, implement :meth:`vendor_routes`, :meth:`error_response`,
    :meth:`reset_state` and optionally :meth:`seed`."""

    name = "emulator"
    #: how many times (and how far apart, seconds) a webhook is retried on a non-2xx answer
    webhook_retry_delays: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)

    def __init__(self, webhook_targets: Iterable[WebhookTarget] = ()) -> None:
        self.lock = threading.RLock()
        self.ledger: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.webhook_targets: list[WebhookTarget] = list(webhook_targets)
        self.deliveries: list[Delivery] = []
        self._delivery_tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._seq = 0
        self.reset_state()
        self._app: Starlette | None = None

    # --- for subclasses -------------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def error_response(self, status: int, message: str) -> Response:
        """A vendor-shaped error body for an injected status fault."""
        return JSONResponse({"error": message}, status_code=status)

    def reset_state(self) -> None:
        """Drop all vendor state."""

    def seed(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Load a scenario; returns a summary of what was created."""
        return {}

    def is_ledgered(self, path: str) -> bool:
        """Whether a request path belongs in the ledger (vendor API calls, not the control plane)."""
        return not path.startswith("/_sandbox")

    # --- helpers for subclasses -----------------------------------------------------------------

    def next_seq(self) -> int:
        with self.lock:
            self._seq += 1
            return self._seq

    async def emit_webhook(
        self,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        event_id: str | None = None,
        sign: Signer | None = None,
    ) -> list[Delivery]:
        """POST ``body`` to every configured target, the way the vendor does: in the background,
        retried on a non-2xx answer or a connection error. ``sign(body, url)`` adds per-attempt
        headers (signature schemes that carry a timestamp sign each attempt anew; some cover the
        target URL)."""
        out = []
        for target in list(self.webhook_targets):
            delivery = Delivery(seq=self.next_seq(), url=target.url, event_id=event_id)
            self.deliveries.append(delivery)
            out.append(delivery)
            task = asyncio.get_running_loop().create_task(
                self._deliver(target, delivery, body, dict(headers or {}), sign)
            )
            self._delivery_tasks.add(task)
            task.add_done_callback(self._delivery_tasks.discard)
        return out

    async def _deliver(
        self,
        target: WebhookTarget,
        delivery: Delivery,
        body: bytes,
        headers: dict[str, str],
        sign: Signer | None,
    ) -> None:
        hdrs = {"Content-Type": "application/json", **target.headers, **headers}
        if target.basic_auth:
            user, password = target.basic_auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            hdrs["Authorization"] = f"Basic {token}"
        delays = (0.0, *self.webhook_retry_delays)
        # One client per emulator: a new one per delivery costs ~35 ms on the server's loop.
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0)
        client = self._http
        for delay in delays:
            if delay:
                await asyncio.sleep(delay)
            delivery.attempts += 1
            try:
                attempt_headers = {**hdrs, **(sign(body, target.url) if sign else {})}
                resp = await client.post(target.url, content=body, headers=attempt_headers)
                delivery.status = resp.status_code
                delivery.error = None if resp.is_success else resp.text[:200]
                if resp.is_success:
                    delivery.delivered = True
                    return
                if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
                    # Vendors retry 4xx too, but a sandbox that hammers a rejecting receiver
                    # only makes tests slow: one attempt shows the rejection.
                    return
            except httpx.HTTPError as exc:
                delivery.error = f"{type(exc).__name__}: {exc}"[:200]

    async def wait_for_deliveries(self, within_s: float = 10.0) -> None:
        tasks = list(self._delivery_tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=within_s)

    # --- the app ---------------------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        if self._app is None:
            routes: list[BaseRoute] = [
                Route("/_sandbox/health", self._health, methods=["GET"]),
                Route("/_sandbox/requests", self._requests, methods=["GET", "DELETE"]),
                Route("/_sandbox/faults", self._faults, methods=["GET", "POST", "DELETE"]),
                Route("/_sandbox/reset", self._reset, methods=["POST"]),
                Route("/_sandbox/seed", self._seed, methods=["POST"]),
                Route("/_sandbox/webhooks", self._webhooks, methods=["GET", "POST", "DELETE"]),
                Route("/_sandbox/webhooks/deliveries", self._deliveries, methods=["GET"]),
                *self.vendor_routes(),
            ]
            inner = Starlette(routes=routes)
            self._app = _LedgerAndFaults(inner, self)  # type: ignore[assignment]
        return self._app  # type: ignore[return-value]

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "emulator": self.name})

    async def _requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            with self.lock:
                self.ledger.clear()
            return JSONResponse({"cleared": True})
        method = request.query_params.get("method")
        prefix = request.query_params.get("path_prefix", "")
        with self.lock:
            rows = [
                r
                for r in self.ledger
                if (not method or r["method"] == method.upper()) and r["path"].startswith(prefix)
            ]
        return JSONResponse({"requests": rows})

    async def _faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            with self.lock:
                self.faults.clear()
            return JSONResponse({"cleared": True})
        if request.method == "POST":
            try:
                spec = await request.json()
                fault = Fault(**{k: v for k, v in spec.items() if k != "hits"})
                re.compile(fault.path)
            except (ValueError, TypeError, re.error) as exc:
                return JSONResponse({"error": f"bad fault: {exc}"}, status_code=400)
            with self.lock:
                self.faults.append(fault)
            return JSONResponse(fault.as_dict(), status_code=201)
        with self.lock:
            return JSONResponse({"faults": [f.as_dict() for f in self.faults]})

    async def _reset(self, request: Request) -> Response:
        with self.lock:
            self.ledger.clear()
            self.faults.clear()
            self.deliveries.clear()
            self.reset_state()
        return JSONResponse({"reset": True})

    async def _seed(self, request: Request) -> Response:
        try:
            data = await request.json()
        except ValueError:
            return JSONResponse({"error": "seed body must be JSON"}, status_code=400)
        try:
            with self.lock:
                return JSONResponse(self.seed(data))
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse(
                {"error": f"bad seed: {type(exc).__name__}: {exc}"[:300]}, status_code=400
            )

    async def _webhooks(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.webhook_targets.clear()
        elif request.method == "POST":
            spec = await request.json()
            auth = spec.get("basic_auth")
            self.webhook_targets.append(
                WebhookTarget(
                    url=spec["url"],
                    basic_auth=tuple(auth) if auth else None,  # type: ignore[arg-type]
                    headers=spec.get("headers", {}),
                )
            )
        return JSONResponse({"targets": [t.url for t in self.webhook_targets]})

    async def _deliveries(self, request: Request) -> Response:
        return JSONResponse({"deliveries": [d.__dict__ for d in self.deliveries]})


class _LedgerAndFaults:
    """ASGI middleware: records every vendor request and applies injected faults."""

    def __init__(self, app: Starlette, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not self.emulator.is_ledgered(scope["path"]):
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw_path.split(b"?", 1)[0].decode("latin-1")
        headers = {}
        for k, v in scope["headers"]:
            name = k.decode("latin-1").lower()
            headers[name] = "<redacted>" if name in _SECRET_HEADERS else v.decode("latin-1")
        entry: dict[str, Any] = {
            "seq": self.emulator.next_seq(),
            "at": time.time(),
            "method": scope["method"],
            "path": raw_path,
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": headers,
            "body": _SECRET_FIELDS.sub(r"\g<k><redacted>", body.decode("utf-8", errors="replace")),
            "status": None,
        }
        with self.emulator.lock:
            self.emulator.ledger.append(entry)
            fault = next(
                (f for f in self.emulator.faults if f.matches(scope["method"], raw_path)), None
            )
            if fault:
                fault.hits += 1

        if fault and fault.kind == "status":
            if fault.body is not None:
                resp: Response = JSONResponse(fault.body, status_code=fault.status)
            else:
                resp = self.emulator.error_response(fault.status, "injected fault")
            if fault.retry_after is not None:
                resp.headers["Retry-After"] = f"{fault.retry_after:g}"
            entry["status"] = fault.status
            entry["fault"] = fault.kind
            await resp(scope, _replay_body(body), send)
            return

        captured: list[dict] = []

        async def capture(message: dict) -> None:
            captured.append(message)

        await self.app(scope, _replay_body(body), capture)
        start = next((m for m in captured if m["type"] == "http.response.start"), None)
        entry["status"] = start["status"] if start else None
        if fault and fault.kind == "commit_then_timeout":
            entry["fault"] = fault.kind
            # State is committed; hold the answer until the client has given up on it.
            await asyncio.sleep(fault.delay_s)
            return
        if fault and fault.kind == "commit_then_error":
            entry["fault"] = fault.kind
            resp = self.emulator.error_response(fault.status, "injected fault after commit")
            entry["status"] = fault.status
            await resp(scope, _replay_body(b""), send)
            return
        for message in captured:
            await send(message)


def _replay_body(body: bytes) -> Callable[[], Awaitable[dict]]:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # a disconnect never comes; the server cancels us
        return {"type": "http.disconnect"}

    return receive


def json_body(request_body: bytes) -> Any:
    """Parse a JSON request body, or raise ValueError with a one-line reason."""
    try:
        return json.loads(request_body or b"null")
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON: {exc.msg} at position {exc.pos}") from None


# --- running emulators ---------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass(eq=False)
class App:
    """Any ASGI app served next to the emulators (e.g. a webhook receiver in tests)."""

    name: str
    app: Any


class ServerThread:
    """Runs one or more emulators under uvicorn in a background thread (tests and the demo).

    ``servers`` maps an emulator to its port (0 picks a free one). ``urls[name]`` is each base URL.
    """

    def __init__(self, emulators: Mapping[Emulator | App, int], host: str = "127.0.0.1") -> None:
        self.host = host
        self.ports = {em: (port or free_port(host)) for em, port in emulators.items()}
        self.urls = {em.name: f"http://{host}:{port}" for em, port in self.ports.items()}
        self._servers = [
            uvicorn.Server(
                uvicorn.Config(em.app, host=host, port=port, log_level="warning", lifespan="off")
            )
            for em, port in self.ports.items()
        ]
        self._thread = threading.Thread(target=self._run, name="sandbox", daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(asyncio.gather(*(s.serve() for s in self._servers)))

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not all(s.started for s in self._servers):
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("sandbox did not start (is a port already in use?)")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        for s in self._servers:
            s.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def serve_forever(
    emulators: Mapping[Emulator, int], stop: asyncio.Event, host: str = "127.0.0.1"
) -> None:
    """Serve emulators on fixed ports until ``stop`` is set (``revbridge sandbox``)."""
    servers = [
        uvicorn.Server(
            uvicorn.Config(em.app, host=host, port=port, log_level="warning", lifespan="off")
        )
        for em, port in emulators.items()
    ]
    for s in servers:
        s.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  # the caller owns signals
    running = asyncio.gather(*(s.serve() for s in servers))
    await asyncio.wait(
        [running, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    for s in servers:
        s.should_exit = True
    await running
