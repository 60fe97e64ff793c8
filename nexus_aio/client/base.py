"""What both clients share: URLs, headers, the retry policy, request bodies, the ``X-RateLimit-*``
headers of the latest response, and the ``text/event-stream`` parser."""

from __future__ import annotations

import contextlib
import io
import mimetypes
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeAlias

import orjson

from nexus_aio.client.retry import RetryPolicy

__all__ = [
    "DEFAULT_URL",
    "MAX_SERVER_WAIT",
    "TERMINAL_STATUSES",
    "ClientBase",
    "Event",
    "FileSpec",
    "Files",
    "RateLimit",
    "SSEParser",
    "Upload",
    "decode",
    "execute_body",
    "form_fields",
    "multipart_chunks",
    "new_key",
    "open_uploads",
]

FileSource: TypeAlias = "str | os.PathLike[str] | bytes | IO[bytes]"
FileSpec: TypeAlias = "FileSource | tuple[str, FileSource] | tuple[str, FileSource, str]"
"""A file to upload: a path, bytes or a binary file object, optionally as ``(filename, source)``
or ``(filename, source, content_type)``."""
Files: TypeAlias = "Mapping[str, FileSpec | Sequence[FileSpec]]"
"""``files=`` of the execute methods: input name -> a file, or a list of files (``list[File]``)."""
UPLOAD_CHUNK = 64 * 1024

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


@dataclass(frozen=True, slots=True)
class Upload:
    """One file part, ready to send: ``content`` is bytes or an open binary file."""

    name: str
    filename: str
    content_type: str
    content: bytes | IO[bytes]


def _upload(name: str, spec: Any, stack: contextlib.ExitStack) -> Upload:
    filename: str | None = None
    content_type: str | None = None
    source = spec
    if isinstance(spec, tuple):
        filename, source = spec[0], spec[1]
        content_type = spec[2] if len(spec) > 2 else None
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        content: bytes | IO[bytes] = stack.enter_context(path.open("rb"))
        filename = filename or path.name
    elif isinstance(source, bytes | bytearray):
        content = bytes(source)
    else:  # a binary file object
        content = source
        given = getattr(source, "name", None)
        if filename is None and isinstance(given, str):
            filename = os.path.basename(given)
    filename = filename or name
    if content_type is None:
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return Upload(name, filename, content_type, content)


def open_uploads(files: Files, stack: contextlib.ExitStack) -> list[Upload]:
    """The parts of ``files=``; paths are opened on ``stack`` (closed when it closes)."""
    uploads: list[Upload] = []
    for name, spec in files.items():
        specs = spec if isinstance(spec, list) else [spec]
        uploads.extend(_upload(name, one, stack) for one in specs)
    return uploads


def form_fields(body: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """An execute body as multipart text parts: (name, text, content type)."""
    fields = []
    for key, value in body.items():
        if key in ("inputs", "context"):
            fields.append((key, orjson.dumps(value).decode(), "application/json"))
        else:
            fields.append((key, str(value), "text/plain; charset=utf-8"))
    return fields


def _quote(value: str) -> str:
    """A name or file name in a ``Content-Disposition`` header, escaped as browsers do."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def multipart_chunks(
    boundary: str, fields: list[tuple[str, str, str]], uploads: list[Upload]
) -> Iterator[bytes]:
    """A ``multipart/form-data`` body as chunks of at least ``UPLOAD_CHUNK`` bytes (but the
    last), files read a piece at a time (never whole)."""
    pending = bytearray()
    for name, text, content_type in fields:
        pending += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n{text}\r\n"
        ).encode()
    for upload in uploads:
        pending += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(upload.name)}"; '
            f'filename="{_quote(upload.filename)}"\r\n'
            f"Content-Type: {upload.content_type}\r\n\r\n"
        ).encode()
        source = upload.content
        reader = io.BytesIO(source) if isinstance(source, bytes) else source
        while chunk := reader.read(UPLOAD_CHUNK):
            pending += chunk
            if len(pending) >= UPLOAD_CHUNK:
                yield bytes(pending)
                pending.clear()
        pending += b"\r\n"
    pending += f"--{boundary}--\r\n".encode()
    yield bytes(pending)


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
            seq = value.rpartition(":")[2]  # execute streams send <workflow_id>:<n>
            self._id = int(seq) if seq.isascii() and seq.isdigit() else None
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
