"""What both clients share: URLs, headers, the retry policy, request bodies, the ``X-RateLimit-*``
headers of the latest response, and the ``text/event-stream`` parser."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from nexus_aio.client.retry import RetryPolicy

__all__ = [
    "DEFAULT_URL",
    "MAX_SERVER_WAIT",
    "TERMINAL_STATUSES",
    "ClientBase",
    "Event",
    "RateLimit",
    "SSEParser",
    "decode",
    "execute_body",
    "new_key",
]

DEFAULT_URL = "http://localhost:8000"
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "timed_out", "cancelled", "interrupted"})
MAX_SERVER_WAIT = 60.0


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event: ``id`` (for resuming), ``event`` type, ``data`` parsed from JSON."""

    id: int | None
    event: str
    data: Any


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The ``X-RateLimit-*`` headers of a response."""

    limit: int
    remaining: int
    reset: int

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit | None:
        try:
            return cls(
                int(headers["X-RateLimit-Limit"]),
                int(headers["X-RateLimit-Remaining"]),
                int(headers["X-RateLimit-Reset"]),
            )
        except (KeyError, ValueError):
            return None


def execute_body(
    inputs: Mapping[str, Any] | None,
    session_id: str | None,
    context: Mapping[str, Any] | None,
    mode: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": dict(inputs or {})}
    if session_id is not None:
        body["session_id"] = session_id
    if context is not None:
        body["context"] = dict(context)
    if mode is not None:
        body["mode"] = mode
    return body


def new_key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


class SSEParser:
    """Incremental ``text/event-stream`` parser: feed lines, get :class:`Event` s.

    Keepalive events are dropped: they carry no data for the caller.
    """

    def __init__(self) -> None:
        self._id: int | None = None
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = int(value) if value.isdigit() else None
        return None

    def _dispatch(self) -> Event | None:
        if not self._data:
            self._event = "message"
            return None
        text = "\n".join(self._data)
        event = Event(self._id, self._event, decode(text.encode()))
        self._event, self._data = "message", []
        return None if event.event == "keepalive" else event


class ClientBase:
    """What both clients share: URLs, headers, retry policy and envelope handling."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None,
        api_key: str | None,
        timeout: float,
        retry: RetryPolicy | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Accept": "application/json", **(headers or {})}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.rate_limit: RateLimit | None = None
        self.last_request_id: str | None = None

    def _note(self, headers: Mapping[str, str]) -> None:
        self.rate_limit = RateLimit.from_headers(headers) or self.rate_limit
        self.last_request_id = headers.get("X-Request-ID")

    @staticmethod
    def _result(envelope: Any) -> Any:
        return envelope["result"] if isinstance(envelope, dict) else envelope
