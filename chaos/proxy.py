"""A tiny round-robin HTTP proxy on loopback, in front of several webhook services (scale-out).

Each request goes to the next upstream in turn; an upstream that refuses the connection is
skipped for that request (as a load balancer's health check would), one that dies mid-request
makes the proxy answer 502 (the vendor retries, as it does any 5xx).
"""

from __future__ import annotations

import itertools
from collections import Counter

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.framework import App

_HOP = {"host", "content-length", "connection", "transfer-encoding"}


class RoundRobin:
    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = upstreams
        self._next = itertools.cycle(range(len(upstreams)))
        self.served: Counter[str] = Counter()
        self._http: httpx.AsyncClient | None = None

        async def forward(request: Request) -> Response:
            if self._http is None:
                self._http = httpx.AsyncClient(timeout=15.0)
            body = await request.body()
            headers = {k: v for k, v in request.headers.items() if k not in _HOP}
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            for _ in range(len(self.upstreams)):
                upstream = self.upstreams[next(self._next)]
                try:
                    resp = await self._http.request(
                        request.method, upstream + path, content=body, headers=headers
                    )
                except httpx.ConnectError:
                    continue  # down: the next one
                except httpx.HTTPError:
                    return Response(b'{"error": "upstream failed mid-request"}', status_code=502)
                self.served[upstream] += 1
                out = {k: v for k, v in resp.headers.items() if k not in _HOP}
                return Response(resp.content, status_code=resp.status_code, headers=out)
            return Response(b'{"error": "no upstream"}', status_code=502)

        self.app = App(
            "proxy",
            Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])]),
        )
