"""Reading requests: the JSON body within the size limit, the execute request's fields, and
multipart (file upload) execute requests streamed to temporary files."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Final

import orjson
from aiohttp import BodyPartReader, web

from nexus_aio.errors import BadRequest, PayloadTooLarge, ValidationError
from nexus_aio.execution.runtime import Cleanup
from nexus_aio.web.body import body_error
from nexus_aio.web.keys import nexus_of
from nexus_aio.workflows.coerce import coerce_text
from nexus_aio.workflows.files import File
from nexus_aio.workflows.intrange import check_json_ints
from nexus_aio.workflows.problems import Problem, validation_error

if TYPE_CHECKING:
    from nexus_aio.workflows.workflow import CompiledWorkflow

EXECUTE_FIELDS = frozenset({"inputs", "session_id", "context", "mode", "webhook"})
# Query parameters of an execute request that are not inputs.
QUERY_FIELDS = frozenset({"mode", "session_id"})
QUERY_FIELDS_GET = QUERY_FIELDS | {"inputs"}
MULTIPART = "multipart/form-data"
# At most this many parts in one multipart request (files and fields together): beyond it 413.
MAX_UPLOAD_PARTS: Final = 64
READ_CHUNK: Final = 64 * 1024  # bytes asked of a part at a time (the stream buffers about that)
WRITE_BUFFER: Final = 1024 * 1024  # bytes gathered before one write (and hash) in a thread


async def read_body(request: web.Request) -> bytes:
    """The raw body within ``max_request_size``: a declared ``Content-Length`` over the limit is
    refused before reading anything; a chunked body as soon as it crosses it (aiohttp's
    ``client_max_size``, which the app sets to ``max_request_size``)."""
    limit = request.client_max_size
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(
            f"Request body exceeds the limit of {limit} bytes",
            details={"max_request_size": limit, "content_length": length},
            headers={"Connection": "close"},
        )
    if not request.body_exists:
        return b""
    try:
        return await request.read()
    except Exception as exc:  # a body that timed out, does not decode, or whose client left
        error = body_error(request, exc)
        if error is None:
            raise
        raise error from None


def parse_json(
    raw: str | bytes,
    field: str,
    where: str,
    *,
    check_ints: bool = True,
    loads: Callable[[Any], Any] = orjson.loads,
) -> Any:
    """``raw`` parsed as JSON; malformed JSON (or, unless ``check_ints`` is false, an integer
    outside the signed 64-bit range) is a 400 naming ``field`` ("Malformed JSON {where}")."""
    try:
        value = loads(raw)
    except (ValueError, RecursionError) as exc:  # orjson's JSONDecodeError is a ValueError
        raise ValidationError(
            f"Malformed JSON {where}: {exc}",
            details={"field": field, "expected": "JSON", "received": "malformed JSON"},
        ) from None
    if check_ints:
        check_json_ints(raw, "" if field == "body" else field)
    return value


async def read_json(request: web.Request, *, empty: Any = None, check_ints: bool = True) -> Any:
    """The body parsed as JSON (any content type); ``empty`` when there is no body. An integer
    outside the signed 64-bit range is a 400 unless ``check_ints`` is false (the caller checks
    parts of the body on its own: a batch fails only the item holding one)."""
    raw = await read_body(request)
    if not raw or raw.isspace():
        return empty
    return parse_json(raw, "body", "body", check_ints=check_ints)


@dataclass(slots=True)
class ExecuteRequest:
    inputs: Any
    mode: str
    session_id: str | None
    context: dict[str, Any] | None
    # For the execution service to run when the run ends (delete the uploaded files).
    cleanups: list[Cleanup] = field(default_factory=list)
    webhook: str | None = None


def _field_error(field: str, expected: str, value: Any) -> ValidationError:
    from nexus_aio.workflows.jsontypes import json_type_name

    received = json_type_name(value)
    return ValidationError(
        f"Invalid parameter: {field}",
        details={
            "field": field,
            "expected": expected,
            "received": received,
            "errors": [
                {
                    "field": field,
                    "expected": expected,
                    "received": received,
                    "message": f"{field} must be {expected}",
                }
            ],
        },
    )


def _query_body(request: web.Request) -> dict[str, Any]:
    """GET execute (browser ``EventSource``): the body is the optional ``inputs=<JSON object>``;
    the other parameters are merged by :func:`_merge_query`."""
    text = request.query.get("inputs")
    if text is None:
        return {}
    return {"inputs": parse_json(text, "inputs", "in the inputs query parameter")}


def _merge_query(request: web.Request, workflow: CompiledWorkflow, body: Any) -> Any:
    """Query parameters of an execute request are inputs (the spec's ``?limit=10&offset=0``),
    each coerced from text to its input's type; ``mode`` and ``session_id`` are the request's
    own (``inputs`` too on GET). An input given both in the query and the body, a query
    parameter naming no input, and a file input in the query are refused together (400)."""
    if not isinstance(body, dict):
        return body  # _execute_request refuses it
    reserved = QUERY_FIELDS_GET if request.method == "GET" else QUERY_FIELDS
    schema = workflow.schema
    inputs: dict[str, Any] | None = None
    sent: frozenset[str] = frozenset()
    problems: list[Problem] = []
    for key, text in request.query.items():
        if key in reserved:
            if key == "session_id":
                _query_session(body, text)
            continue
        if inputs is None:
            given = body.get("inputs", {})
            if not isinstance(given, dict):
                raise _field_error("inputs", "object", given)
            sent = frozenset(given)
            inputs = body["inputs"] = dict(given)
        field = schema.fields.get(key)
        if field is None:
            problems.append(Problem("unknown", "nothing", "query parameter", None, key))
        elif key in schema.file_inputs:
            problems.append(
                Problem("invalid", "file", "query parameter", "send files as multipart parts", key)
            )
        elif key in sent or key in inputs:
            problems.append(
                Problem("invalid", "one value", "two", "sent both in the query and the body", key)
            )
        else:
            try:
                inputs[key] = coerce_text(field.annotation, text, key)
            except ValidationError as exc:
                problems.extend(
                    Problem("type", e["expected"], e["received"], e["message"], e["field"])
                    for e in exc.details.get("errors", ())
                )
    if problems:
        raise validation_error(problems)
    return body


def _query_session(body: dict[str, Any], text: str) -> None:
    given = body.get("session_id")
    if given is not None and given != text:
        raise BadRequest(
            "session_id in the query and in the body differ",
            details={"field": "session_id", "query": text, "body": given},
        )
    body["session_id"] = text


async def read_execute_request(request: web.Request, workflow: CompiledWorkflow) -> ExecuteRequest:
    """Read ``{"inputs", "session_id", "context", "mode"}`` from the body (GET: from
    ``inputs=<JSON>``) and the query parameters as inputs, with the shape checks of the wire
    format; the execution service checks the rest."""
    if request.method == "GET":
        body: Any = _query_body(request)
    elif request.content_type == MULTIPART:
        return await _read_multipart_request(request, workflow)
    else:
        body = await read_json(request, empty={})
    if request.query_string:
        body = _merge_query(request, workflow, body)
    return _execute_request(request, body)


def _execute_request(request: web.Request, body: Any) -> ExecuteRequest:
    if not isinstance(body, dict):
        raise _field_error("body", "object", body)
    unknown = body.keys() - EXECUTE_FIELDS
    if unknown:
        field = sorted(unknown)[0]
        raise ValidationError(
            f"Unknown request field: {field} (allowed: inputs, session_id, context, mode, webhook)",
            details={
                "field": field,
                "expected": "nothing",
                "received": "unknown field",
                "errors": [
                    {
                        "field": f,
                        "expected": "nothing",
                        "received": "unknown field",
                        "message": f"Unknown request field: {f}",
                    }
                    for f in sorted(unknown)
                ],
            },
        )
    inputs = body.get("inputs", {})
    query_mode = request.query.get("mode") if request.query_string else None
    mode = query_mode if query_mode is not None else body.get("mode", "sync")  # "" is a 400
    context = body.get("context")
    if context is not None and not isinstance(context, dict):
        raise _field_error("context", "object", context)
    session_id = body.get("session_id")
    if session_id is not None and not isinstance(session_id, str):
        raise _field_error("session_id", "string", session_id)
    header_sid = request.headers.get("X-Session-ID")
    if header_sid is not None:
        if session_id is not None and session_id != header_sid:
            raise BadRequest(
                "X-Session-ID header and body session_id differ",
                details={"field": "session_id", "header": header_sid, "body": session_id},
            )
        session_id = header_sid
    webhook = body.get("webhook")
    if webhook is not None and not isinstance(webhook, str):
        raise _field_error("webhook", "string", webhook)
    return ExecuteRequest(inputs, mode, session_id, context, webhook=webhook)


# -- multipart/form-data ---------------------------------------------------------------------------
async def _read_multipart_request(
    request: web.Request, workflow: CompiledWorkflow
) -> ExecuteRequest:
    """A multipart execute request: one part per file input (named after it), and the optional
    ``inputs`` (JSON object), ``mode``, ``session_id`` and ``context`` (JSON object) parts."""
    upload = _Upload(request, workflow)
    try:
        body, files = await upload.read()
        if request.query_string:
            body = _merge_query(request, workflow, body)
        parsed = _execute_request(request, body)
        inputs = parsed.inputs
        if not isinstance(inputs, dict):
            raise _field_error("inputs", "object", inputs)
        both = sorted(inputs.keys() & files.keys())
        if both:
            raise validation_error(
                [Problem("invalid", "file", "file", "sent both as a file and in inputs", both[0])]
            )
        kinds = workflow.schema.file_inputs
        parsed.inputs = {
            **inputs,
            **{name: got if kinds[name] == "list" else got[0] for name, got in files.items()},
        }
        parsed.cleanups = upload.cleanups()
        return parsed
    except BaseException:
        upload.discard()
        raise


def _write(fh: IO[bytes], digest: Any, data: bytes | bytearray) -> None:
    digest.update(data)
    fh.write(data)


def _malformed(exc: BaseException) -> BadRequest:
    return BadRequest(
        f"Malformed multipart body: {exc}",
        details={"field": "body", "expected": MULTIPART, "received": "malformed multipart"},
    )


class _Upload:
    """Reads one multipart request: files streamed to a temporary directory (hashed as they are
    written, never held whole in memory), text fields read within ``max_request_size``, the
    whole body within ``max_upload_size`` and ``MAX_UPLOAD_PARTS``."""

    def __init__(self, request: web.Request, workflow: CompiledWorkflow) -> None:
        settings = nexus_of(request).settings
        self.request = request
        self.schema = workflow.schema
        self.limit: int = settings.max_upload_size
        self.text_limit: int = settings.max_request_size
        self.received = 0  # bytes of part content read so far
        self.text_received = 0
        self.directory: Path | None = None

    def cleanups(self) -> list[Cleanup]:
        directory, self.directory = self.directory, None
        if directory is None:
            return []
        return [functools.partial(shutil.rmtree, directory, ignore_errors=True)]

    def discard(self) -> None:
        for cleanup in self.cleanups():
            cleanup()

    def too_large(self, length: int | None = None) -> PayloadTooLarge:
        details: dict[str, Any] = {"max_upload_size": self.limit}
        if length is not None:
            details["content_length"] = length
        return PayloadTooLarge(
            f"Upload exceeds the limit of {self.limit} bytes",
            details=details,
            headers={"Connection": "close"},
        )

    async def read(self) -> tuple[dict[str, Any], dict[str, list[File]]]:
        length = self.request.content_length
        if length is not None and length > self.limit:
            raise self.too_large(length)  # before reading anything
        body: dict[str, Any] = {}
        files: dict[str, list[File]] = {}
        try:
            reader = await self.request.multipart()
            count = 0
            while (part := await reader.next()) is not None:
                count += 1
                if count > MAX_UPLOAD_PARTS:
                    raise PayloadTooLarge(
                        f"Too many multipart parts (at most {MAX_UPLOAD_PARTS})",
                        details={"max_parts": MAX_UPLOAD_PARTS},
                        headers={"Connection": "close"},
                    )
                if not isinstance(part, BodyPartReader):
                    raise _malformed(ValueError("nested multipart bodies are not accepted"))
                await self.read_part(part, count, body, files)
        except (ValueError, KeyError, RuntimeError, AssertionError) as exc:
            raise _malformed(exc) from None
        return body, files

    async def read_part(
        self,
        part: BodyPartReader,
        index: int,
        body: dict[str, Any],
        files: dict[str, list[File]],
    ) -> None:
        name = part.name
        is_file = part.filename is not None
        received = "file" if is_file else "string"
        if name is None:
            raise _malformed(ValueError("a part has no name"))
        kind = self.schema.file_inputs.get(name)
        if kind is not None:
            if not is_file:
                raise validation_error([Problem("type", "file", received, None, name)])
            upload = await self.spool(part, index)
            if upload is None:  # a form's empty file picker: not sent
                return
            got = files.setdefault(name, [])
            got.append(upload)
            if kind == "one" and len(got) > 1:
                raise validation_error(
                    [Problem("invalid", "file", "files", "expected one file, received more", name)]
                )
            return
        if name in EXECUTE_FIELDS:
            if name in body:
                raise validation_error(
                    [Problem("invalid", "one part", "parts", "sent more than once", name)]
                )
            body[name] = self.field_value(name, await self.text(part, name))
            return
        if name in self.schema.fields:  # a JSON input: it belongs in the inputs part
            raise validation_error(
                [
                    Problem(
                        "invalid",
                        "JSON in the inputs part",
                        received,
                        f"expected JSON in the inputs part, received a {received} part",
                        name,
                    )
                ]
            )
        raise validation_error([Problem("unknown", "nothing", received, None, name)])

    async def text(self, part: BodyPartReader, name: str) -> str:
        data = bytearray()
        while chunk := await part.read_chunk(READ_CHUNK):
            self.count(len(chunk))
            self.text_received += len(chunk)
            if self.text_received > self.text_limit:
                raise PayloadTooLarge(
                    f"Multipart fields exceed the limit of {self.text_limit} bytes",
                    details={"max_request_size": self.text_limit, "field": name},
                    headers={"Connection": "close"},
                )
            data += chunk
        try:
            return data.decode(part.get_charset("utf-8"))
        except (UnicodeDecodeError, LookupError):
            raise ValidationError(
                f"Invalid parameter: {name} (not valid text)",
                details={"field": name, "expected": "UTF-8 text", "received": "bytes"},
            ) from None

    @staticmethod
    def field_value(name: str, text: str) -> Any:
        if name in ("mode", "session_id", "webhook"):
            return text
        return parse_json(text, name, f"in the {name} part")

    def count(self, size: int) -> None:
        self.received += size
        if self.received > self.limit:
            raise self.too_large()

    async def spool(self, part: BodyPartReader, index: int) -> File | None:
        """Stream a file part to the temporary directory; its ``File`` (None for an empty part
        without a file name: a form's empty file picker)."""
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="nexus-upload-"))
        filename = PurePosixPath((part.filename or "").replace("\\", "/")).name
        suffix = PurePosixPath(filename).suffix
        if not (len(suffix) <= 16 and suffix[1:].isalnum()):
            suffix = ""
        path = self.directory / f"{index}{suffix}"
        digest = hashlib.sha256()
        size = 0
        pending = bytearray()
        with path.open("xb") as fh:
            while chunk := await part.read_chunk(READ_CHUNK):
                self.count(len(chunk))
                size += len(chunk)
                pending += chunk
                if len(pending) >= WRITE_BUFFER:
                    data, pending = pending, bytearray()
                    await asyncio.to_thread(_write, fh, digest, data)
            if pending:
                await asyncio.to_thread(_write, fh, digest, pending)
        if size == 0 and not filename:
            path.unlink()
            return None
        content_type = part.headers.get("Content-Type") or "application/octet-stream"
        return File(filename, content_type, size, path, digest.hexdigest())
