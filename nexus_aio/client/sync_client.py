"""``NexusClient``: the blocking client, on a ``requests.Session``."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import orjson
import requests

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
    multipart_chunks,
    new_key,
    open_uploads,
)
from nexus_aio.client.errors import error_from_response, wait_timeout
from nexus_aio.client.retry import RetryPolicy, retryable
from nexus_aio.errors import NexusError, ServiceUnavailable

__all__ = ["NexusClient"]


class NexusClient(ClientBase):
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
        data: Any = None,
    ) -> requests.Response:
        """Send with retries; return the response, or raise the error it carries. ``data``
        (a body already encoded, e.g. multipart chunks) is sent as is, instead of ``json``."""
        url = path if path.startswith("http") else self.base_url + path
        merged = {**self.headers, **(headers or {})}
        retries = self.retry.max_retries if retryable(method, merged) else 0
        if json is not None:
            data = orjson.dumps(json)
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
                decode(response.content),
                response.headers.get("X-Request-ID"),
                response.headers,
            )

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return decode(self.request(method, path, **kw).content)

    def _execute(
        self,
        name: str,
        body: dict[str, Any],
        files: Files | None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """POST an execute request: JSON with an ``Idempotency-Key`` (so it may be retried), or
        with ``files`` ``multipart/form-data`` streamed from the files (sent once: not retried)."""
        path = f"/workflows/{name}/execute"
        if not files:
            merged = {**new_key(), **(headers or {})}
            return self.request("POST", path, json=body, headers=merged, stream=stream)
        boundary = uuid.uuid4().hex
        merged = {**(headers or {}), "Content-Type": f"multipart/form-data; boundary={boundary}"}
        with contextlib.ExitStack() as stack:
            chunks = multipart_chunks(boundary, form_fields(body), open_uploads(files, stack))
            return self.request("POST", path, data=chunks, headers=merged, stream=stream)

    # -- workflows ------------------------------------------------------------------------------
    def execute_workflow(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        files: Files | None = None,
    ) -> dict[str, Any]:
        """Run ``name`` and return the success envelope (result, workflow_id, timing).

        ``files``: the file inputs, ``{"doc": Path("report.pdf")}`` (a path, bytes, a binary
        file, or ``(filename, source[, content_type])``; a list for ``list[File]``)."""
        body = execute_body(inputs, session_id, context, None)
        envelope: dict[str, Any] = decode(self._execute(name, body, files).content)
        return envelope

    def execute(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        files: Files | None = None,
    ) -> Any:
        """Run ``name`` and return its result."""
        return self._result(self.execute_workflow(name, inputs, session_id, context, files))

    def stream(
        self,
        name: str,
        inputs: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        context: Mapping[str, Any] | None = None,
        files: Files | None = None,
    ) -> Iterator[Event]:
        """Run ``name`` in stream mode and yield its events (start, chunks, complete/error)."""
        body = execute_body(inputs, session_id, context, "stream")
        headers = {"Accept": "text/event-stream"}
        yield from self._events(self._execute(name, body, files, headers, stream=True))

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
        files: Files | None = None,
    ) -> str:
        """Start ``name`` in async mode; returns the execution id to :meth:`wait` on."""
        body = execute_body(inputs, session_id, context, "async")
        accepted = decode(self._execute(name, body, files).content)
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
                raise wait_timeout(execution_id, record, timeout)

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
