"""File uploads: ``nexus_aio.File`` inputs sent as ``multipart/form-data`` over real HTTP.

Files are streamed to temporary files (hashed on the way), bounded by ``max_upload_size`` (413
before the rest is read) and a count of parts, deleted when the run ends (sync, stream and async
alike), and recorded only as their metadata.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from openapi_spec_validator import validate

from nexus_aio import Context, File, Nexus
from nexus_aio.client import AsyncNexusClient, NexusClient, ValidationError
from nexus_aio.web.request import MAX_UPLOAD_PARTS, READ_CHUNK

CONTENT = os.urandom(3 * 1024 * 1024 + 123)  # crosses the server's write buffer several times
DIGEST = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture(autouse=True)
def upload_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The server runs in this process: its temporary files go here, where tests can look."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def exists(path: str | Path) -> bool:
    return Path(path).exists()


def leftovers(directory: Path) -> list[Path]:
    return list(directory.iterdir())


class Gate:
    """Holds a workflow at a point until the test releases it (no sleeping)."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.seen: list[File] = []


def upload_app(gate: Gate | None = None, **settings: Any) -> Nexus:
    app = Nexus(database=":memory:", **settings)

    async def digest(doc: File, label: str = "") -> dict[str, Any]:
        content = await doc.read()
        return {
            "sha256": hashlib.sha256(content).hexdigest(),
            "reported": doc.sha256,
            "size": doc.size,
            "filename": doc.filename,
            "content_type": doc.content_type,
            "label": label,
            "path": str(doc.path),
            "exists": doc.path.exists(),
        }

    def count_lines(doc: File) -> int:  # sync: runs in a thread, reads with open()
        with doc.open() as fh:
            return sum(1 for _ in fh)

    async def many(docs: list[File], note: File | None = None) -> dict[str, Any]:
        return {"names": [d.filename for d in docs], "note": note and note.filename}

    async def held(doc: File, ctx: Context) -> str:
        assert gate is not None
        gate.seen.append(doc)
        gate.reached.set()
        await gate.release.wait()
        return doc.sha256

    def plain(x: int) -> int:
        return x

    app.register("digest", digest)
    app.register("count_lines", count_lines)
    app.register("many", many)
    app.register("held", held)
    app.register("plain", plain)
    return app


def form(*files: tuple[str, str, bytes], **fields: Any) -> aiohttp.FormData:
    data = aiohttp.FormData(default_to_multipart=True)
    for name, filename, content in files:
        data.add_field(name, io.BytesIO(content), filename=filename, content_type="application/pdf")
    for name, value in fields.items():
        data.add_field(name, value if isinstance(value, str) else json.dumps(value))
    return data


async def post_form(http: aiohttp.ClientSession, url: str, data: Any, **kw: Any) -> tuple[int, Any]:
    async with http.post(url, data=data, **kw) as resp:
        return resp.status, await resp.json()


# -- the happy path ----------------------------------------------------------------------------
async def test_multipart_upload_reaches_the_workflow_with_its_sha256(
    nexus_server, http, upload_dir
):
    url = await nexus_server(upload_app())
    status, body = await post_form(
        http,
        f"{url}/workflows/digest/execute",
        form(("doc", "report.pdf", CONTENT), inputs={"label": "q3"}),
    )
    assert status == 200, body
    result = body["result"]
    assert result["sha256"] == result["reported"] == DIGEST
    assert result["size"] == len(CONTENT)
    assert (result["filename"], result["content_type"]) == ("report.pdf", "application/pdf")
    assert result["label"] == "q3"
    assert result["exists"] is True
    assert result["path"].endswith(".pdf")
    assert not exists(result["path"])  # the sync run ended: its file is gone
    assert leftovers(upload_dir) == []
    async with http.get(f"{url}/executions/{body['workflow_id']}") as resp:
        record = await resp.json()
    assert record["inputs"] == {
        "doc": {
            "filename": "report.pdf",
            "content_type": "application/pdf",
            "size": len(CONTENT),
            "sha256": DIGEST,
        },
        "label": "q3",
    }


def test_requests_multipart_upload_and_a_sync_workflow_reading_with_open(
    nexus_thread_server, upload_dir
):
    url = nexus_thread_server(upload_app())
    response = requests.post(
        f"{url}/workflows/digest/execute",
        files={"doc": ("notes.txt", CONTENT, "text/plain")},
        data={"inputs": json.dumps({"label": "from requests"})},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert (result["sha256"], result["label"]) == (DIGEST, "from requests")
    response = requests.post(
        f"{url}/workflows/count_lines/execute",
        files={"doc": ("lines.txt", b"a\nb\nc\n")},
        timeout=30,
    )
    assert response.json()["result"] == 3
    assert leftovers(upload_dir) == []


async def test_list_of_files_and_an_optional_file(nexus_server, http):
    url = await nexus_server(upload_app())
    data = form(("docs", "a.txt", b"a"), ("docs", "b.txt", b"b"), ("note", "n.txt", b"n"))
    status, body = await post_form(http, f"{url}/workflows/many/execute", data)
    assert status == 200, body
    assert body["result"] == {"names": ["a.txt", "b.txt"], "note": "n.txt"}
    # A form's empty file picker (no file name, no content) counts as not sent.
    data = form(("docs", "a.txt", b"a"), ("note", "", b""))
    status, body = await post_form(http, f"{url}/workflows/many/execute", data)
    assert (status, body["result"]) == (200, {"names": ["a.txt"], "note": None})


async def test_stream_mode_upload_deletes_the_file_when_the_run_ends(
    nexus_server, http, upload_dir
):
    url = await nexus_server(upload_app())
    data = form(("doc", "r.pdf", b"streamed"), mode="stream")
    async with http.post(f"{url}/workflows/digest/execute", data=data) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        text = await resp.text()
    assert "event: complete" in text
    assert hashlib.sha256(b"streamed").hexdigest() in text
    assert leftovers(upload_dir) == []


async def test_async_run_keeps_its_file_until_the_run_ends_and_records_only_metadata(
    nexus_server, http, upload_dir
):
    gate = Gate()
    url = await nexus_server(upload_app(gate))
    status, accepted = await post_form(
        http, f"{url}/workflows/held/execute", form(("doc", "big.bin", CONTENT), mode="async")
    )
    assert status == 202, accepted
    await asyncio.wait_for(gate.reached.wait(), 10)
    # The HTTP request is over; the run is still going and its file is still there.
    (doc,) = gate.seen
    assert doc.path.exists() and doc.path.read_bytes() == CONTENT
    gate.release.set()
    async with http.get(f"{url}/executions/{accepted['workflow_id']}?wait=10") as resp:
        record = await resp.json()
    assert (record["status"], record["result"]) == ("succeeded", DIGEST)
    assert not doc.path.exists()
    assert leftovers(upload_dir) == []
    assert record["inputs"] == {
        "doc": {
            "filename": "big.bin",
            "content_type": "application/pdf",
            "size": len(CONTENT),
            "sha256": DIGEST,
        }
    }
    assert str(doc.path) not in json.dumps(record)


async def test_multipart_bodies_are_exempt_from_max_request_size(nexus_server, http):
    url = await nexus_server(upload_app(max_request_size=1000))
    status, body = await post_form(
        http, f"{url}/workflows/digest/execute", form(("doc", "r.pdf", CONTENT))
    )
    assert (status, body["result"]["sha256"]) == (200, DIGEST)
    # JSON bodies keep the limit.
    async with http.post(
        f"{url}/workflows/plain/execute", json={"inputs": {"x": 1}, "pad": "x" * 2000}
    ) as resp:
        assert resp.status == 413


# -- limits --------------------------------------------------------------------------------------
async def _raw_request(port: int, head: bytes, first_bytes: bytes) -> bytes:
    """Send a request head and the start of a body, never the rest; the response the server
    answers with (it must not wait for the body it refused)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + first_bytes)
        await writer.drain()
        async with asyncio.timeout(10):
            response = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":", 1)[1]
                    for line in response.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
            )
            return response + await reader.readexactly(length)
    finally:
        writer.close()


BOUNDARY = "nexus-test-boundary"


def _part_head(name: str, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()


async def test_declared_upload_over_max_upload_size_is_a_413_before_the_body_is_read(
    nexus_server,
):
    url = await nexus_server(upload_app(max_upload_size=1024 * 1024))
    port = int(url.rsplit(":", 1)[1])
    head = (
        "POST /workflows/digest/execute HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
    ).encode()
    response = await _raw_request(port, head, _part_head("doc", "big.bin") + b"x" * 1000)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    error = json.loads(response.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["type"] == "PayloadTooLarge"
    assert error["details"]["max_upload_size"] == 1024 * 1024


async def test_streamed_upload_crossing_max_upload_size_is_a_413_without_reading_the_rest(
    nexus_server, upload_dir
):
    limit = 256 * 1024
    url = await nexus_server(upload_app(max_upload_size=limit))
    port = int(url.rsplit(":", 1)[1])
    head = (
        "POST /workflows/digest/execute HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    # The part reader looks one read ahead for the boundary: send a few reads past the limit.
    body = _part_head("doc", "big.bin") + b"x" * (limit + 4 * READ_CHUNK)
    # One HTTP chunk over the limit, then nothing more: no final chunk, no closing boundary.
    chunk = f"{len(body):x}\r\n".encode() + body + b"\r\n"
    response = await _raw_request(port, head, chunk)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b"connection: close" in response.lower()
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "PayloadTooLarge"
    assert leftovers(upload_dir) == []  # the partial file was deleted


async def test_too_many_parts_is_a_413(nexus_server, http):
    url = await nexus_server(upload_app())
    data = form(*[("docs", f"{i}.txt", b"x") for i in range(MAX_UPLOAD_PARTS + 1)])
    status, body = await post_form(http, f"{url}/workflows/many/execute", data)
    assert (status, body["error"]["type"]) == (413, "PayloadTooLarge")
    assert body["error"]["details"]["max_parts"] == MAX_UPLOAD_PARTS


# -- 400s ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("workflow", "data", "field", "received"),
    [
        ("digest", lambda: form(inputs={"label": "q3"}), "doc", "missing"),
        ("digest", lambda: form(doc="not a file"), "doc", "string"),
        ("digest", lambda: form(("doc", "a", b"a"), ("label", "l.txt", b"l")), "label", "file"),
        ("digest", lambda: form(("doc", "a", b"a"), label="q3"), "label", "string"),
        ("digest", lambda: form(("doc", "a", b"a"), ("other", "o", b"o")), "other", "file"),
        ("digest", lambda: form(("doc", "a", b"a"), other="x"), "other", "string"),
        ("digest", lambda: form(("doc", "a", b"a"), ("doc", "b", b"b")), "doc", "files"),
        ("digest", lambda: form(("doc", "a", b"a"), inputs="{no"), "inputs", "malformed JSON"),
        ("digest", lambda: form(("doc", "a", b"a"), inputs=[1]), "inputs", "array"),
        ("digest", lambda: form(("doc", "a", b"a"), inputs={"nope": 1}), "nope", "number"),
        ("plain", lambda: form(("x", "x.txt", b"1")), "x", "file"),
    ],
    ids=[
        "missing-file",
        "text-for-a-file",
        "file-for-a-json-input",
        "form-field-for-a-json-input",
        "unknown-file-part",
        "unknown-text-part",
        "two-files-for-one",
        "malformed-inputs",
        "inputs-not-an-object",
        "unknown-input",
        "file-for-a-workflow-without-files",
    ],
)
async def test_multipart_mistakes_are_400_validation_errors_naming_the_field(
    nexus_server, http, upload_dir, workflow, data, field, received
):
    url = await nexus_server(upload_app())
    status, body = await post_form(http, f"{url}/workflows/{workflow}/execute", data())
    assert status == 400, body
    error = body["error"]
    assert error["type"] == "ValidationError"
    assert (error["details"]["field"], error["details"]["received"]) == (field, received)
    assert leftovers(upload_dir) == []
    async with http.get(f"{url}/executions/{body['workflow_id']}") as resp:
        assert (await resp.json())["status"] == "failed"  # refused requests are recorded


async def test_json_for_a_file_input_is_a_400(nexus_server, http):
    url = await nexus_server(upload_app())
    async with http.post(
        f"{url}/workflows/digest/execute", json={"inputs": {"doc": "cmVwb3J0"}}
    ) as resp:
        body = await resp.json()
    assert resp.status == 400
    details = body["error"]["details"]
    assert (details["field"], details["expected"], details["received"]) == (
        "doc",
        "file",
        "string",
    )


async def test_idempotency_key_with_an_upload_is_a_400(nexus_server, http, upload_dir):
    url = await nexus_server(upload_app())
    status, body = await post_form(
        http,
        f"{url}/workflows/digest/execute",
        form(("doc", "a", b"a")),
        headers={"Idempotency-Key": "k1"},
    )
    assert (status, body["error"]["details"]["field"]) == (400, "Idempotency-Key")
    assert leftovers(upload_dir) == []


# -- documents -----------------------------------------------------------------------------------
async def test_schema_and_openapi_document_file_inputs_as_binary_parts(nexus_server, http):
    url = await nexus_server(upload_app())
    async with http.get(f"{url}/workflows/many/schema") as resp:
        schema = await resp.json()
    assert schema["inputs"]["docs"] == {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "required": True,
    }
    async with http.get(f"{url}/openapi.json") as resp:
        doc = await resp.json()
    validate(doc)
    body = doc["paths"]["/workflows/digest/execute"]["post"]["requestBody"]
    assert list(body["content"]) == ["multipart/form-data"]  # its file input is required
    upload = doc["components"]["schemas"]["DigestUpload"]
    assert upload["properties"]["doc"] == {"type": "string", "format": "binary"}
    assert upload["required"] == ["doc"]
    inputs = doc["components"]["schemas"]["DigestInputs"]
    assert list(inputs["properties"]) == ["label"]  # files are parts, never JSON
    many = doc["paths"]["/workflows/many/execute"]["post"]["requestBody"]["content"]
    assert doc["components"]["schemas"]["ManyUpload"]["properties"]["docs"] == {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
    }
    assert set(many) == {"multipart/form-data"}
    plain = doc["paths"]["/workflows/plain/execute"]["post"]["requestBody"]["content"]
    assert list(plain) == ["application/json"]


# -- the Python clients --------------------------------------------------------------------------
def test_sync_client_files(nexus_thread_server, tmp_path, upload_dir):
    url = nexus_thread_server(upload_app())
    report = tmp_path / "report.pdf"
    report.write_bytes(CONTENT)
    with NexusClient(url) as client:
        result = client.execute("digest", {"label": "q3"}, files={"doc": report})
        assert (result["sha256"], result["filename"], result["label"]) == (
            DIGEST,
            "report.pdf",
            "q3",
        )
        assert result["content_type"] == "application/pdf"
        with report.open("rb") as fh:
            assert client.execute("digest", files={"doc": fh})["sha256"] == DIGEST
        result = client.execute("digest", files={"doc": ("a.csv", b"1,2\n", "text/csv")})
        assert (result["filename"], result["content_type"]) == ("a.csv", "text/csv")
        result = client.execute("many", files={"docs": [("a", b"a"), ("b", b"b")]})
        assert result["names"] == ["a", "b"]
        events = list(client.stream("digest", files={"doc": ("s.txt", b"s")}))
        assert events[-1].event == "complete"
        execution_id = client.submit("digest", files={"doc": report})
        record = client.wait(execution_id, timeout=10)
        assert (record["status"], record["result"]["sha256"]) == ("succeeded", DIGEST)
        with pytest.raises(ValidationError) as caught:
            client.execute("digest", {"label": "no file"}, files={})
        assert caught.value.details["field"] == "doc"
    assert leftovers(upload_dir) == []


async def test_async_client_files(nexus_server, tmp_path, upload_dir):
    url = await nexus_server(upload_app())
    report = tmp_path / "report.pdf"
    report.write_bytes(CONTENT)
    async with AsyncNexusClient(url) as client:
        result = await client.execute("digest", {"label": "q3"}, files={"doc": report})
        assert (result["sha256"], result["filename"], result["label"]) == (
            DIGEST,
            "report.pdf",
            "q3",
        )
        result = await client.execute("digest", files={"doc": ("b.bin", b"bytes")})
        assert result["sha256"] == hashlib.sha256(b"bytes").hexdigest()
        result = await client.execute("many", files={"docs": [report, ("n", b"n")]})
        assert result["names"] == ["report.pdf", "n"]
        events = [e async for e in client.stream("digest", files={"doc": ("s.txt", b"s")})]
        assert events[-1].event == "complete"
        execution_id = await client.submit("digest", files={"doc": report})
        record = await client.wait(execution_id, timeout=10)
        assert (record["status"], record["result"]["sha256"]) == ("succeeded", DIGEST)
    assert leftovers(upload_dir) == []
