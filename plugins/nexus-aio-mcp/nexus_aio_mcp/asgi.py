"""A small bridge from one aiohttp request to an ASGI application and back.

The MCP SDK's streamable HTTP transport is an ASGI application; nexus_aio serves aiohttp. For
one request, :func:`serve_asgi` builds the ASGI ``scope``, feeds the request body through
``receive`` and turns what ``send`` gets into the aiohttp response:

- a response whose whole body comes in one message (JSON answers, errors) becomes a plain
  ``web.Response`` returned to the middlewares (so the core can still add ``X-Request-ID``);
- a response sent in several messages (an SSE stream) is prepared on its first chunk and written
  as it comes, with ``STREAM_RESPONSE`` set so an error after that point ends the stream instead
  of writing a second status line.

After the body, ``receive`` waits until the response is complete (or the exchange ends) and then
answers ``http.disconnect``, which is what ends an ASGI app's "listen for disconnect" task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from nexus_aio.errors import NexusError
from nexus_aio.web.keys import REQUEST_ID, STREAM_RESPONSE

__all__ = ["ASGIApp", "build_scope", "serve_asgi"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

# Hop-by-hop or recomputed by aiohttp: never copied from the ASGI answer.
_DROPPED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


def build_scope(request: web.Request, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ASGI 3 HTTP ``scope`` of an aiohttp request; ``extra`` keys are added as they are."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.split("?", 1)[0].encode("latin-1"),
        "query_string": request.query_string.encode("latin-1"),
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in request.raw_headers],
        "client": tuple(peer[:2]) if isinstance(peer, tuple) else None,
        "server": tuple(sock[:2]) if isinstance(sock, tuple) else None,
        "state": {},
    }
    if extra:
        scope.update(extra)
    return scope


class _Exchange:
    """One request/response pair between aiohttp and the ASGI app."""

    __slots__ = ("body", "chunks", "done", "headers", "request", "response", "sent_body", "status")

    def __init__(self, request: web.Request, body: bytes) -> None:
        self.request = request
        self.body: bytes | None = body
        self.done = asyncio.Event()
        self.status: int | None = None
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.chunks: list[bytes] = []
        self.response: web.StreamResponse | None = None  # set once streaming
        self.sent_body = False  # the final body message arrived

    async def receive(self) -> Message:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self.done.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.status is not None:
                raise RuntimeError("ASGI app sent http.response.start twice")
            self.status = int(message["status"])
            for name, value in message.get("headers", ()):
                key = name.decode("latin-1")
                if key.lower() not in _DROPPED:
                    self.headers.add(key, value.decode("latin-1"))
            return
        if kind != "http.response.body":
            return  # extensions (http.response.trailers, ...) are not offered
        if self.status is None:
            raise RuntimeError("ASGI app sent a body before http.response.start")
        if self.sent_body:
            raise RuntimeError("ASGI app sent a body after its last one")
        chunk = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        if self.response is None and not more:  # the whole answer at once: a plain response
            self.chunks.append(chunk)
            self.sent_body = True
            self.done.set()
            return
        if self.response is None:
            self.response = await self._open_stream()
        if chunk:
            await self.response.write(chunk)
        if not more:
            self.sent_body = True
            await self.response.write_eof()
            self.done.set()

    async def _open_stream(self) -> web.StreamResponse:
        assert self.status is not None
        response = web.StreamResponse(status=self.status, headers=self.headers)
        rid = self.request.get(REQUEST_ID)
        if rid is not None:
            response.headers["X-Request-ID"] = rid
        buffered = b"".join(self.chunks)
        self.chunks.clear()
        await response.prepare(self.request)
        self.request[STREAM_RESPONSE] = response
        if buffered:
            await response.write(buffered)
        return response

    def result(self) -> web.StreamResponse:
        if self.response is not None:
            return self.response
        if self.status is None:
            raise NexusError("The MCP transport sent no response")
        return web.Response(status=self.status, headers=self.headers, body=b"".join(self.chunks))


async def serve_asgi(
    app: ASGIApp, request: web.Request, extra: dict[str, Any] | None = None
) -> web.StreamResponse:
    """Run ``app`` for ``request`` and return the aiohttp response it produced.

    The request body is read first (aiohttp's ``client_max_size`` applies). A stream the app
    leaves open when it returns is closed here.
    """
    exchange = _Exchange(request, await request.read())
    try:
        await app(build_scope(request, extra), exchange.receive, exchange.send)
    finally:
        exchange.done.set()
    response = exchange.result()
    if response.prepared and not exchange.sent_body:
        await response.write_eof()
    return response
