"""Guarding request bodies that are still arriving: ``body_timeout``, malformed chunked bodies,
undecodable ``Content-Encoding`` and clients that leave mid-upload.

The core middleware calls :func:`watch_body` once per request; it costs nothing when the body has
already fully arrived (most requests: the body came with the head). Otherwise it arms one timer:
when ``body_timeout`` passes before the body ends, the body's stream is failed with
:class:`BodyTimedOut`, so whatever is reading it (execute, batch, multipart, a custom endpoint's
own ``await request.text()``) stops at once. A chunked body also gets its chunk framing watched:
aiohttp's C parser drops a body whose chunk framing breaks without telling its reader (which then
waits forever), so the watch fails the body with ``RequestPayloadError`` as the parser refuses it.

:func:`body_error` turns the exception a body read raised into the envelope error: 408
``RequestTimeout``, 400 ``BadRequest`` (undecodable gzip/deflate, malformed chunks) or 499
``ClientClosedRequest`` (the client went away: not a server error, nobody sees the answer). The
connection then closes (:func:`answer_and_close`): the rest of a broken body is never read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from nexus_aio.errors import BadRequest, ClientClosedRequest, NexusError, RequestTimeout
from nexus_aio.web.keys import nexus_of

__all__ = [
    "BODY_FAILED",
    "BodyTimedOut",
    "QuietClientErrors",
    "answer_and_close",
    "body_error",
    "quiet_client_errors",
    "watch_body",
]

# Set on a request whose body failed (timed out, malformed, client gone): answer, then close.
BODY_FAILED = web.RequestKey("nexus_aio.body_failed", bool)


class BodyTimedOut(TimeoutError):
    """Raised by every read of a body that did not fully arrive within ``body_timeout``."""


def watch_body(request: web.Request, timeout: float) -> Callable[[], None] | None:
    """Arm the body timeout (and the chunk watch) for a body still arriving; returns the function
    that disarms them when the request is done, or None when there is nothing to watch."""
    content = request.content
    if content.is_eof() or not request.body_exists:
        return None
    handle = asyncio.get_running_loop().call_later(timeout, _expire, content)
    unwatch = _watch_chunks(request) if request.headers.get("Transfer-Encoding") else None

    def disarm() -> None:
        handle.cancel()
        if unwatch is not None:
            unwatch()

    return disarm


def _expire(content: Any) -> None:
    if not content.is_eof() and content.exception() is None:
        content.set_exception(BodyTimedOut())


class _ChunkWatch:
    """Stands in for a connection's HTTP parser while one chunked body arrives: a framing error
    fails that body (its reader answers 400 at once) before aiohttp handles the error its way."""

    __slots__ = ("content", "parser")

    def __init__(self, parser: Any, content: Any) -> None:
        self.parser = parser
        self.content = content

    def feed_data(self, data: bytes) -> Any:
        try:
            return self.parser.feed_data(data)
        except HttpProcessingError as exc:
            content = self.content
            if not content.is_eof() and content.exception() is None:
                content.set_exception(RequestPayloadError(exc.message or "malformed body"))
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)


def _watch_chunks(request: web.Request) -> Callable[[], None] | None:
    protocol = request.protocol
    parser = getattr(protocol, "_parser", None)
    if parser is None or isinstance(parser, _ChunkWatch):  # not aiohttp's usual protocol
        return None
    watch = _ChunkWatch(parser, request.content)
    setattr(protocol, "_parser", watch)  # noqa: B010 - a private slot, on purpose

    def unwatch() -> None:
        if getattr(protocol, "_parser", None) is watch:
            setattr(protocol, "_parser", parser)  # noqa: B010

    return unwatch


class QuietClientErrors(logging.Filter):
    """On ``aiohttp.server``: a request aiohttp's parser refuses (malformed head or chunks, bad
    characters) is the client's error, answered 400; log it as one INFO line, not an ERROR with a
    traceback (a stream of broken clients must not flood the log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and (exc.code or 400) < 500:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.getMessage()}: {_reason(exc)}"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


QUIET_CLIENT_ERRORS = QuietClientErrors()


def quiet_client_errors() -> None:
    """Install :class:`QuietClientErrors` on ``aiohttp.server`` (once per process)."""
    logger = logging.getLogger("aiohttp.server")
    if QUIET_CLIENT_ERRORS not in logger.filters:
        logger.addFilter(QUIET_CLIENT_ERRORS)


def body_error(request: web.Request, exc: BaseException) -> NexusError | None:
    """The envelope error for an exception a body read raised; None if it is not one."""
    if isinstance(exc, BodyTimedOut):
        timeout = nexus_of(request).settings.body_timeout
        error: NexusError = RequestTimeout(
            f"The request body did not fully arrive within {timeout:g} s",
            details={"body_timeout": timeout},
            headers={"Connection": "close"},
        )
    elif isinstance(exc, RequestPayloadError):
        error = BadRequest(
            f"Malformed request body: {_reason(exc)}",
            details={"field": "body", "expected": _expected(request), "received": "malformed"},
            headers={"Connection": "close"},
        )
    elif isinstance(exc, ConnectionResetError) and request.content.exception() is exc:
        error = ClientClosedRequest("The client closed the connection before its body arrived")
    else:
        return None
    request[BODY_FAILED] = True
    return error


def _reason(exc: BaseException) -> str:
    """The first line of aiohttp's message ("400, message:" prefixes aside)."""
    for line in str(exc).splitlines():
        line = line.strip().removeprefix("400, message:").strip().rstrip(":")
        if line:
            return line
    return "it cannot be read"


def _expected(request: web.Request) -> str:
    encoding = request.headers.get("Content-Encoding")
    if encoding:
        return f"a body encoded as {encoding}"
    return "a well-formed body"


async def answer_and_close(request: web.Request, response: web.StreamResponse) -> None:
    """Send ``response`` now and close the connection (the rest of the body is never read)."""
    response.force_close()
    if request.transport is None or request.transport.is_closing():
        return  # the client is gone: aiohttp drops the answer quietly
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
