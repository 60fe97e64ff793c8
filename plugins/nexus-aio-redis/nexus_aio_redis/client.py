"""The Redis connection shared by the stores, and the one place Redis errors become a 503.

Every store talks to Redis through a ``redis.asyncio`` client with short socket timeouts: an
unreachable Redis must turn a request into a prompt ``StoreUnavailable`` (503), not a hang. The
client reconnects on its own at the next command, so the service recovers without a restart.
"""

from __future__ import annotations

from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from nexus_aio.errors import StoreUnavailable

__all__ = ["UNREACHABLE", "Guard", "connect", "redact"]

# Errors that mean "Redis cannot answer right now" (as opposed to a bug in a command).
UNREACHABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, ""))


def connect(url: str, *, timeout: float = 2.0) -> aioredis.Redis:
    """A client for ``url`` that fails fast: connecting and each reply are bounded by ``timeout``.

    No connection is made here; the pool connects at the first command (and again after a drop).
    """
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry_on_timeout=False,
    )


class Guard:
    """``with guard:`` around Redis calls turns connection errors into ``StoreUnavailable``.

    A plain (sync) context manager works around ``await`` expressions and costs two method calls,
    against a generator-based one's extra frame per request.
    """

    __slots__ = ("_what",)

    def __init__(self, what: str) -> None:
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and isinstance(exc, UNREACHABLE):
            raise StoreUnavailable(
                f"{self._what} is unreachable: {exc}", headers={"Retry-After": "1"}
            ) from exc
