"""Python clients for a nexus_aio server: :class:`NexusClient` (sync, requests) and
:class:`AsyncNexusClient` (aiohttp).

Both speak the same API and share the decisions that matter:

* ``execute`` returns the workflow's **result** and raises on failure; ``execute_workflow`` and
  ``execute_many`` return success **envelopes** (as the spec's example clients do), so code
  written against those examples runs unchanged.
* Errors raise the server's own ``NexusError`` subclasses (``ValidationError``,
  ``WorkflowNotFound``, ``RateLimitExceeded``...), chosen by the envelope's ``type``, carrying
  ``type``, ``status``, ``message``, ``details`` and ``request_id``.
* Retries: 429, 503 and connection errors are retried with exponential backoff and full jitter,
  waiting at least what ``Retry-After`` asks. A request is retried only if repeating it is
  harmless: GET/DELETE, or a POST carrying an ``Idempotency-Key``. The clients put a fresh key on
  every execute POST (kept across its retries), so the server replays instead of re-running.
  ``batch`` gets no key by default (the batch route does not de-duplicate), so it is not retried.
* ``rate_limit`` holds the ``X-RateLimit-*`` headers of the latest response.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import requests

from nexus_aio import errors
from nexus_aio.errors import (
    BadRequest,
    Conflict,
    ExecutionNotFound,
    Forbidden,
    IdempotencyConflict,
    MethodNotAllowed,
    NexusError,
    NotFound,
    PayloadTooLarge,
    RateLimitExceeded,
    SecurityError,
    ServiceUnavailable,
    SessionNotFound,
    StoreUnavailable,
    Timeout,
    Unauthorized,
    UnsupportedMediaType,
    ValidationError,
    WorkflowExecutionError,
    WorkflowNotFound,
)

__all__ = [
    "AsyncNexusClient",
    "BadRequest",
    "Conflict",
    "Event",
    "ExecutionNotFound",
    "Forbidden",
    "IdempotencyConflict",
    "MethodNotAllowed",
    "NexusClient",
    "NexusError",
    "NotFound",
    "PayloadTooLarge",
    "RateLimit",
    "RateLimitExceeded",
    "RetryPolicy",
    "SecurityError",
    "ServiceUnavailable",
    "SessionNotFound",
    "StoreUnavailable",
    "Timeout",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationError",
    "WorkflowExecutionError",
    "WorkflowNotFound",
    "error_from_response",
]

DEFAULT_URL = "http://localhost:8000"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT"})
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "timed_out", "cancelled", "interrupted"})
MAX_SERVER_WAIT = 60.0


def _error_classes() -> dict[str, type[NexusError]]:
    found: dict[str, type[NexusError]] = {}
    pending: list[type[NexusError]] = [NexusError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.type, cls)
        pending.extend(cls.__subclasses__())
    return found


ERRORS_BY_TYPE = _error_classes()
ERRORS_BY_STATUS: dict[int, type[NexusError]] = {
    **errors.ERRORS_BY_STATUS,
    500: errors.WorkflowExecutionError,
}


def error_from_response(
    status: int, body: Any, request_id: str | None = None, headers: Mapping[str, str] | None = None
) -> NexusError:
    """The ``NexusError`` an error response stands for (by envelope ``type``, else by status)."""
    info = body.get("error") if isinstance(body, dict) else None
    if not isinstance(info, dict):
        info = {}
    kind = info.get("type")
    cls = ERRORS_BY_TYPE.get(kind) if isinstance(kind, str) else None
    if cls is None:
        cls = ERRORS_BY_STATUS.get(status, NexusError)
    message = info.get("message") or f"HTTP {status}"
    err = cls(str(message), details=info.get("details"), headers=dict(headers or {}))
    err.status = status
    if isinstance(kind, str) and kind != cls.type:
        err.type = kind
    err.request_id = request_id
    return err


# -- small value types ---------------------------------------------------------------------------
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


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt ``n`` waits up to ``base * 2**n`` seconds
    (capped at ``max_delay``), and never less than the server's ``Retry-After``."""

    max_retries: int = 3
    base: float = 0.25
    max_delay: float = 30.0
    statuses: frozenset[int] = frozenset({429, 503})

    def delay(
        self,
        attempt: int,
        retry_after: str | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        backoff = min(self.max_delay, self.base * (2**attempt)) * rand()
        hinted = _parse_retry_after(retry_after)
        return min(self.max_delay, max(backoff, hinted))


NO_RETRY = RetryPolicy(max_retries=0)


def _parse_retry_after(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return 0.0


def _retryable(method: str, headers: Mapping[str, str]) -> bool:
    return method in IDEMPOTENT_METHODS or "Idempotency-Key" in headers


def _execute_body(
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


def _new_key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


def _decode(raw: bytes) -> Any:
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
        event = Event(self._id, self._event, _decode(text.encode()))
        self._event, self._data = "message", []
        return None if event.event == "keepalive" else event


class _Base:
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

    def _execute_url(self, name: str) -> str:
        return f"{self.base_url}/workflows/{name}/execute"

    @staticmethod
    def _result(envelope: Any) -> Any:
        return envelope["result"] if isinstance(envelope, dict) else envelope


# -- sync ---------------------------------------------------------------------------------------
class NexusClient(_Base):
    """Blocking client on a ``requests.Session`` (connection reuse); use it as a context manager
    or call :meth:`close`."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        headers: Mapping[str, str] | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(base_url, headers=headers, api_key=api_key, timeout=timeout, retry=retry)
        self.session = session or requests.Session()
        self._sleep = sleep

    def __enter__(self) -> NexusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Send with retries; return the response, or raise the error it carries."""
        url = path if path.startswith("http") else self.base_url + path
        merged = {**self.headers, **(headers or {})}
        retries = self.retry.max_retries if _retryable(method, merged) else 0
        data = orjson.dumps(json) if json is not None else None
        if data is not None:
            merged["Content-Type"] = "application/json"
        attempt = 0
        while True:
            try:
                response = self.session.request(
                    method,
                    url,
                    data=data,
                    params=params,
                    headers=merged,
                    timeout=self.timeout,
                    stream=stream,
                )
            except requests.ConnectionError as exc:
                if attempt >= retries:
                    raise ServiceUnavailable(
                        f"Cannot reach {url}: {exc}", details={"url": url}
                    ) from exc
                self._sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            self._note(response.headers)
            if response.status_code < 400:
                return response
            if response.status_code in self.retry.statuses and attempt < retries:
                self._sleep(self.retry.delay(attempt, response.headers.get("Retry-After")))
                response.close()
                attempt += 1
                continue
            raise error_from_response(
                response.status_code,
                _decode(response.content),
                response.headers.get("X-Request-ID"),
                response.headers,
            )

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return _decode(self.request(method, path, **kw).content)

    # -- workflows ------------------------------------------------------------------------------
    def execute_workflow(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run ``name`` and return the success envelope (result, workflow_id, timing)."""
        body = _execute_body(inputs, session_id, context, None)
        envelope: dict[str, Any] = self._json(
            "POST", f"/workflows/{name}/execute", json=body, headers=_new_key()
        )
        return envelope

    def execute(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run ``name`` and return its result."""
        return self._result(self.execute_workflow(name, inputs, session_id, context))

    def stream(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Iterator[Event]:
        """Run ``name`` in stream mode and yield its events (start, chunks, complete/error)."""
        body = _execute_body(inputs, session_id, context, "stream")
        headers = {**_new_key(), "Accept": "text/event-stream"}
        response = self.request(
            "POST", f"/workflows/{name}/execute", json=body, headers=headers, stream=True
        )
        yield from self._events(response)

    def follow(self, execution_id: str, last_event_id: int | None = None) -> Iterator[Event]:
        """The events of an execution (replayed, then live), resuming after ``last_event_id``."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        response = self.request(
            "GET", f"/executions/{execution_id}/events", headers=headers, stream=True
        )
        yield from self._events(response)

    @staticmethod
    def _events(response: requests.Response) -> Iterator[Event]:
        parser = SSEParser()
        with response:
            for line in response.iter_lines(decode_unicode=True):
                text = line.decode() if isinstance(line, bytes) else line
                event = parser.feed(text or "")
                if event is not None:
                    yield event
            tail = parser.feed("")
            if tail is not None:
                yield tail

    def submit(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> str:
        """Start ``name`` in async mode; returns the execution id to :meth:`wait` on."""
        body = _execute_body(inputs, session_id, context, "async")
        accepted = self._json("POST", f"/workflows/{name}/execute", json=body, headers=_new_key())
        return str(accepted["workflow_id"])

    def get_execution(self, execution_id: str, wait: float = 0) -> dict[str, Any]:
        params = {"wait": f"{wait:g}"} if wait > 0 else None
        record: dict[str, Any] = self._json("GET", f"/executions/{execution_id}", params=params)
        return record

    def wait(self, execution_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Long-poll until the execution finishes; its record. Raises ``Timeout`` when it does
        not finish within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            record = self.get_execution(
                execution_id, wait=max(0.0, min(remaining, MAX_SERVER_WAIT))
            )
            if record.get("status") in TERMINAL_STATUSES:
                return record
            if deadline - time.monotonic() <= 0:
                raise _wait_timeout(execution_id, record, timeout)

    def cancel(self, execution_id: str) -> dict[str, Any]:
        record: dict[str, Any] = self._json("DELETE", f"/executions/{execution_id}")
        return record

    def execute_many(
        self, workflows: Iterable[Mapping[str, Any]], *, return_exceptions: bool = False
    ) -> list[Any]:
        """Run each ``{"name", "inputs", "session_id"?, "context"?}`` in order; their success
        envelopes, as the spec's example client returns (errors in place with
        ``return_exceptions``, else the first one raises)."""
        results: list[Any] = []
        for item in workflows:
            try:
                results.append(
                    self.execute_workflow(
                        item["name"],
                        item.get("inputs"),
                        item.get("session_id"),
                        item.get("context"),
                    )
                )
            except NexusError as exc:
                if not return_exceptions:
                    raise
                results.append(exc)
        return results

    def batch(
        self, workflows: Iterable[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """``POST /workflows/batch``: one envelope per item, in order."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = {"workflows": [dict(item) for item in workflows]}
        result: dict[str, Any] = self._json("POST", "/workflows/batch", json=body, headers=headers)
        return result

    # -- discovery -----------------------------------------------------------------------------
    def get_schema(self, name: str) -> dict[str, Any]:
        schema: dict[str, Any] = self._json("GET", f"/workflows/{name}/schema")
        return schema

    def list_workflows(self) -> dict[str, Any]:
        listing: dict[str, Any] = self._json("GET", "/workflows")
        return listing

    def health(self, detailed: bool = False) -> dict[str, Any]:
        status: dict[str, Any] = self._json("GET", "/health/detailed" if detailed else "/health")
        return status

    def get_session(self, session_id: str) -> dict[str, Any]:
        session: dict[str, Any] = self._json("GET", f"/sessions/{session_id}")
        return session

    def delete_session(self, session_id: str) -> None:
        self.request("DELETE", f"/sessions/{session_id}")


def _wait_timeout(execution_id: str, record: Mapping[str, Any], timeout: float) -> Timeout:
    return Timeout(
        f"Execution {execution_id!r} did not finish within {timeout:g} s",
        details={"execution_id": execution_id, "status": record.get("status")},
    )


# -- async --------------------------------------------------------------------------------------
class AsyncNexusClient(_Base):
    """Asynchronous client on one ``aiohttp.ClientSession`` (created on first use); use
    ``async with`` or call :meth:`aclose`. ``execute_many`` runs its items concurrently."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        headers: Mapping[str, str] | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        concurrency: int = 10,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        super().__init__(base_url, headers=headers, api_key=api_key, timeout=timeout, retry=retry)
        self.concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None
        self._sleep = sleep

    async def __aenter__(self) -> AsyncNexusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_read=self.timeout)
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """Send with retries; the (unread) response, or raise the error it carries.

        The caller reads and releases the response.
        """
        url = path if path.startswith("http") else self.base_url + path
        merged = {**self.headers, **(headers or {})}
        retries = self.retry.max_retries if _retryable(method, merged) else 0
        data = orjson.dumps(json) if json is not None else None
        if data is not None:
            merged["Content-Type"] = "application/json"
        session = self._client()
        attempt = 0
        while True:
            try:
                response = await session.request(
                    method, url, data=data, params=params, headers=merged
                )
            except aiohttp.ClientConnectionError as exc:
                if attempt >= retries:
                    raise ServiceUnavailable(
                        f"Cannot reach {url}: {exc}", details={"url": url}
                    ) from exc
                await self._sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            self._note(response.headers)
            if response.status < 400:
                return response
            raw = await response.read()
            response.release()
            if response.status in self.retry.statuses and attempt < retries:
                await self._sleep(self.retry.delay(attempt, response.headers.get("Retry-After")))
                attempt += 1
                continue
            raise error_from_response(
                response.status,
                _decode(raw),
                response.headers.get("X-Request-ID"),
                response.headers,
            )

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        response = await self.request(method, path, **kw)
        async with response:
            return _decode(await response.read())

    # -- workflows ------------------------------------------------------------------------------
    async def execute_workflow(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run ``name`` and return the success envelope."""
        body = _execute_body(inputs, session_id, context, None)
        envelope: dict[str, Any] = await self._json(
            "POST", f"/workflows/{name}/execute", json=body, headers=_new_key()
        )
        return envelope

    async def execute(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run ``name`` and return its result."""
        return self._result(await self.execute_workflow(name, inputs, session_id, context))

    async def stream(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Event]:
        """Run ``name`` in stream mode; an async iterator of its events."""
        body = _execute_body(inputs, session_id, context, "stream")
        headers = {**_new_key(), "Accept": "text/event-stream"}
        response = await self.request(
            "POST", f"/workflows/{name}/execute", json=body, headers=headers
        )
        async for event in self._events(response):
            yield event

    async def follow(
        self, execution_id: str, last_event_id: int | None = None
    ) -> AsyncIterator[Event]:
        """The events of an execution (replayed, then live), resuming after ``last_event_id``."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        response = await self.request("GET", f"/executions/{execution_id}/events", headers=headers)
        async for event in self._events(response):
            yield event

    @staticmethod
    async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
        parser = SSEParser()
        async with response:
            async for raw in response.content:
                event = parser.feed(raw.decode("utf-8", "replace"))
                if event is not None:
                    yield event
            tail = parser.feed("")
            if tail is not None:
                yield tail

    async def submit(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> str:
        """Start ``name`` in async mode; returns the execution id to :meth:`wait` on."""
        body = _execute_body(inputs, session_id, context, "async")
        accepted = await self._json(
            "POST", f"/workflows/{name}/execute", json=body, headers=_new_key()
        )
        return str(accepted["workflow_id"])

    async def get_execution(self, execution_id: str, wait: float = 0) -> dict[str, Any]:
        params = {"wait": f"{wait:g}"} if wait > 0 else None
        record: dict[str, Any] = await self._json(
            "GET", f"/executions/{execution_id}", params=params
        )
        return record

    # The server long-polls; the contract names the parameter ``timeout``.
    async def wait(
        self,
        execution_id: str,
        timeout: float = 60.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Long-poll until the execution finishes; its record (``Timeout`` if it does not)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            record = await self.get_execution(
                execution_id, wait=max(0.0, min(remaining, MAX_SERVER_WAIT))
            )
            if record.get("status") in TERMINAL_STATUSES:
                return record
            if deadline - loop.time() <= 0:
                raise _wait_timeout(execution_id, record, timeout)

    async def cancel(self, execution_id: str) -> dict[str, Any]:
        record: dict[str, Any] = await self._json("DELETE", f"/executions/{execution_id}")
        return record

    async def execute_many(
        self, workflows: Iterable[Mapping[str, Any]], *, return_exceptions: bool = False
    ) -> list[Any]:
        """Run the items concurrently (at most ``concurrency`` at a time); their success
        envelopes in order, as the spec's example client returns."""
        limit = asyncio.Semaphore(self.concurrency)

        async def one(item: Mapping[str, Any]) -> Any:
            async with limit:
                return await self.execute_workflow(
                    item["name"], item.get("inputs"), item.get("session_id"), item.get("context")
                )

        return list(
            await asyncio.gather(*(one(i) for i in workflows), return_exceptions=return_exceptions)
        )

    async def batch(
        self, workflows: Iterable[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """``POST /workflows/batch``: one envelope per item, in order."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = {"workflows": [dict(item) for item in workflows]}
        result: dict[str, Any] = await self._json(
            "POST", "/workflows/batch", json=body, headers=headers
        )
        return result

    # -- discovery -----------------------------------------------------------------------------
    async def get_schema(self, name: str) -> dict[str, Any]:
        schema: dict[str, Any] = await self._json("GET", f"/workflows/{name}/schema")
        return schema

    async def list_workflows(self) -> dict[str, Any]:
        listing: dict[str, Any] = await self._json("GET", "/workflows")
        return listing

    async def health(self, detailed: bool = False) -> dict[str, Any]:
        path = "/health/detailed" if detailed else "/health"
        status: dict[str, Any] = await self._json("GET", path)
        return status

    async def get_session(self, session_id: str) -> dict[str, Any]:
        session: dict[str, Any] = await self._json("GET", f"/sessions/{session_id}")
        return session

    async def delete_session(self, session_id: str) -> None:
        response = await self.request("DELETE", f"/sessions/{session_id}")
        response.release()
