"""``AsyncNexusClient``: the asyncio client, on one ``aiohttp.ClientSession``."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import aiohttp
import orjson

from nexus_aio.client.base import (
    DEFAULT_URL,
    MAX_SERVER_WAIT,
    TERMINAL_STATUSES,
    ClientBase,
    Event,
    Files,
    SSEParser,
    decode,
    execute_body,
    form_fields,
    new_key,
    open_uploads,
)
from nexus_aio.client.errors import error_from_response, wait_timeout
from nexus_aio.client.retry import RetryPolicy, retryable
from nexus_aio.errors import ServiceUnavailable

__all__ = ["AsyncNexusClient"]


class AsyncNexusClient(ClientBase):
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
        data: Any = None,
    ) -> aiohttp.ClientResponse:
        """Send with retries; the (unread) response, or raise the error it carries. ``data``
        (e.g. an ``aiohttp.FormData``) is sent as is, instead of ``json``.

        The caller reads and releases the response.
        """
        url = path if path.startswith("http") else self.base_url + path
        merged = {**self.headers, **(headers or {})}
        retries = self.retry.max_retries if retryable(method, merged) else 0
        if json is not None:
            data = orjson.dumps(json)
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
                decode(raw),
                response.headers.get("X-Request-ID"),
                response.headers,
            )

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        response = await self.request(method, path, **kw)
        async with response:
            return decode(await response.read())

    async def _execute(
        self,
        name: str,
        body: dict[str, Any],
        files: Files | None,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """POST an execute request: JSON with an ``Idempotency-Key`` (so it may be retried), or
        with ``files`` ``multipart/form-data`` streamed from the files (sent once: not retried).
        The caller reads and releases the response."""
        path = f"/workflows/{name}/execute"
        if not files:
            merged = {**new_key(), **(headers or {})}
            return await self.request("POST", path, json=body, headers=merged)
        with contextlib.ExitStack() as stack:
            form = aiohttp.FormData(default_to_multipart=True)
            for field, text, content_type in form_fields(body):
                form.add_field(field, text, content_type=content_type)
            for upload in open_uploads(files, stack):
                content = upload.content
                form.add_field(
                    upload.name,
                    io.BytesIO(content) if isinstance(content, bytes) else content,
                    filename=upload.filename,
                    content_type=upload.content_type,
                )
            return await self.request("POST", path, data=form, headers=headers)

    # -- workflows ------------------------------------------------------------------------------
    async def execute_workflow(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        files: Files | None = None,
    ) -> dict[str, Any]:
        """Run ``name`` and return the success envelope; ``files`` as for
        :meth:`NexusClient.execute_workflow <nexus_aio.client.NexusClient.execute_workflow>`."""
        body = execute_body(inputs, session_id, context, None)
        async with await self._execute(name, body, files) as response:
            envelope: dict[str, Any] = decode(await response.read())
        return envelope

    async def execute(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        files: Files | None = None,
    ) -> Any:
        """Run ``name`` and return its result."""
        return self._result(await self.execute_workflow(name, inputs, session_id, context, files))

    async def stream(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        files: Files | None = None,
    ) -> AsyncIterator[Event]:
        """Run ``name`` in stream mode; an async iterator of its events."""
        body = execute_body(inputs, session_id, context, "stream")
        response = await self._execute(name, body, files, {"Accept": "text/event-stream"})
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
        files: Files | None = None,
    ) -> str:
        """Start ``name`` in async mode; returns the execution id to :meth:`wait` on."""
        body = execute_body(inputs, session_id, context, "async")
        async with await self._execute(name, body, files) as response:
            accepted = decode(await response.read())
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
                raise wait_timeout(execution_id, record, timeout)

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
