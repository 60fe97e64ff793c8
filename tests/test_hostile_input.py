"""Hostile and broken input over real HTTP (issue 12, "bad input never becomes a 5xx, a hang or a
corrupted response"): out-of-range integers, unencodable results, undecodable bodies, malformed
chunks, clients leaving mid-upload, slow bodies (``body_timeout``), custom endpoints' own body
reads, forged log lines, request ids, ``Vary`` and query parameters as inputs.

Cases below HTTP (chunk framing, trickled bodies, disconnects, raw bytes) use raw sockets.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
import zlib
from collections.abc import Iterable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from nexus_aio import Nexus
from nexus_aio.settings import Settings
from nexus_aio.testing import make_app, plugin_installed, read_sse

INT64_MAX = 2**63 - 1


class Unencodable:
    """An object no JSON encoder knows."""


def hostile_app(**settings: Any) -> Nexus:
    app = make_app(**settings)

    @app.workflow
    async def produce(kind: str = "ok") -> Any:
        if kind == "bigint":
            return {"value": 2**70}
        if kind == "object":
            return {"value": Unencodable()}
        if kind == "cycle":
            cycle: list[Any] = []
            cycle.append(cycle)
            return cycle
        if kind == "u64":
            return 2**64 - 1  # beyond int64 but JSON numbers carry it: encodable
        return {"value": kind}

    @app.workflow
    async def search(query: str, limit: int = 20, offset: int = 0) -> dict:
        return {"query": query, "limit": limit, "offset": offset}

    @app.workflow
    async def anything(value: Any = None) -> Any:
        return value

    @app.endpoint("/items/{item_id}", methods=["GET", "POST"])
    async def item(item_id: int, count: int = 1) -> dict:
        return {"item_id": item_id, "count": count}

    @app.endpoint("/items", methods=["POST"])
    async def create_item(payload: dict) -> dict:
        return {"keys": sorted(payload)}

    @app.endpoint("/raw/text", methods=["POST"])
    async def raw_text(request: web.Request) -> dict:
        return {"length": len(await request.text())}

    @app.endpoint("/raw/json", methods=["POST"])
    async def raw_json(request: web.Request) -> dict:
        return {"type": type(await request.json()).__name__}

    return app


@pytest.fixture
async def url(nexus_server: Any) -> str:
    return str(await nexus_server(hostile_app()))


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    return host, int(port)


async def post(
    http: aiohttp.ClientSession, url: str, body: Any = None, **kw: Any
) -> tuple[int, dict[str, Any]]:
    if body is not None and not isinstance(body, bytes):
        kw["data"] = orjson.dumps(body)
    elif body is not None:
        kw["data"] = body
    async with http.post(url, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    async with http.get(url, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


class Raw:
    """One raw connection: send pieces (optionally spaced out), read until the server closes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> Raw:
        return cls(*await asyncio.open_connection(*address(url)))

    async def send(self, *pieces: bytes, pause: float = 0.0) -> None:
        try:
            for piece in pieces:
                self.writer.write(piece)
                await self.writer.drain()
                if pause:
                    await asyncio.sleep(pause)
        except ConnectionError:
            pass  # the server answered and closed

    async def response(self, within: float) -> tuple[bytes, bool]:
        """Everything the server sends ``within`` seconds; True when it closed the connection."""
        data = b""
        deadline = time.monotonic() + within
        try:
            while (left := deadline - time.monotonic()) > 0:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
                if not chunk:
                    return data, True
                data += chunk
        except ConnectionError:  # closed while our trickle was still being sent: a reset
            return data, True
        except TimeoutError:
            pass
        return data, False

    def close(self) -> None:
        self.writer.close()


def parse(data: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert data.count(b"HTTP/1.") == 1, data  # never a second status line
    return int(lines[0].split()[1]), headers, orjson.loads(body)


# -- 1. 64-bit integers in, JSON-encodable results out ------------------------------------------


@pytest.mark.parametrize(
    "literal", [b"9223372036854775808", b"-9223372036854775809", b"1180591620717411303424"]
)
async def test_integers_outside_signed_64_bit_in_a_json_body_are_400(
    url: str, http: aiohttp.ClientSession, literal: bytes
) -> None:
    for workflow in ("sum", "anything"):
        field = b"a" if workflow == "sum" else b"value"
        body = b'{"inputs":{"%s":%s,"b":1}}' % (field, literal)
        if workflow == "anything":
            body = b'{"inputs":{"value":[1,{"deep":%s}]}}' % literal
        status, data = await post(http, f"{url}/workflows/{workflow}/execute", body)
        assert status == 400, data
        assert data["error"]["type"] == "ValidationError"
    status, data = await post(http, f"{url}/workflows/sum/execute", {"inputs": {"a": INT64_MAX}})
    assert status == 400  # b missing: the limit itself is accepted
    assert data["error"]["details"]["field"] == "b"


async def test_integers_outside_signed_64_bit_in_query_and_path_values_are_400(
    url: str, http: aiohttp.ClientSession
) -> None:
    big = str(2**63)
    huge = "9" * 5000
    for target in (
        f"/workflows/sum/execute?a={big}&b=1",
        f"/workflows/sum/execute?mode=sync&a=1&b={huge}",
        f"/items/{big}",
        f"/items/1?count=-{big}1",
        f"/items/{huge}",
    ):
        for method in ("GET", "POST"):
            async with http.request(method, url + target) as resp:
                data = await resp.json()
                assert resp.status == 400, (method, target, data)
                assert data["error"]["type"] == "ValidationError"
    status, data = await get(http, f"{url}/items/{INT64_MAX}?count=-{2**63}")
    assert status == 200 and data == {"item_id": INT64_MAX, "count": -(2**63)}


@pytest.mark.parametrize("kind", ["bigint", "object", "cycle"])
async def test_a_result_that_cannot_be_encoded_is_a_500_and_the_record_reads_failed(
    url: str, http: aiohttp.ClientSession, kind: str
) -> None:
    status, data = await post(http, f"{url}/workflows/produce/execute", {"inputs": {"kind": kind}})
    assert status == 500 and data["error"]["type"] == "WorkflowExecutionError"
    status, record = await get(http, f"{url}/executions/{data['workflow_id']}")
    assert status == 200 and record["status"] == "failed"
    assert record["error"]["type"] == "WorkflowExecutionError"

    status, accepted = await post(
        http, f"{url}/workflows/produce/execute", {"inputs": {"kind": kind}, "mode": "async"}
    )
    assert status == 202
    status, record = await get(http, f"{url}/executions/{accepted['workflow_id']}?wait=10")
    assert record["status"] == "failed"
    assert record["error"]["type"] == "WorkflowExecutionError"

    async with http.get(f"{url}/workflows/produce/execute?mode=stream&kind={kind}") as resp:
        events = await read_sse(resp)
    assert [event for _, event, _ in events] == ["start", "error"]
    assert events[-1][2]["error"]["type"] == "WorkflowExecutionError"


async def test_a_result_beyond_int64_that_json_still_carries_succeeds(
    url: str, http: aiohttp.ClientSession
) -> None:
    status, data = await post(http, f"{url}/workflows/produce/execute", {"inputs": {"kind": "u64"}})
    assert status == 200 and data["result"] == 2**64 - 1


@pytest.mark.skipif(not plugin_installed("batch"), reason="needs nexus-aio-batch")
async def test_a_batch_with_one_unencodable_item_still_returns_the_other_items(
    url: str, http: aiohttp.ClientSession
) -> None:
    batch = {
        "workflows": [
            {"name": "sum", "inputs": {"a": 1, "b": 2}},
            {"name": "produce", "inputs": {"kind": "bigint"}},
            {"name": "sum", "inputs": {"a": 2**63, "b": 1}},
            {"name": "produce", "inputs": {"kind": "fine"}},
        ]
    }
    status, data = await post(http, f"{url}/workflows/batch", batch)
    assert status == 200, data
    codes = [
        (r["status_code"], r.get("result"), r.get("error", {}).get("type")) for r in data["results"]
    ]
    assert codes == [
        (200, 3, None),
        (500, None, "WorkflowExecutionError"),
        (400, None, "ValidationError"),
        (200, {"value": "fine"}, None),
    ]


# -- 2. undecodable Content-Encoding; Idempotency-Key never turns a 400 into a 500 --------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_whose_content_encoding_does_not_decode_is_400(
    url: str, http: aiohttp.ClientSession, encoding: str
) -> None:
    good = orjson.dumps({"inputs": {"a": 1, "b": 2}})
    packed = gzip.compress(good) if encoding == "gzip" else zlib.compress(good)
    headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
    status, data = await post(http, f"{url}/workflows/sum/execute", packed, headers=headers)
    assert status == 200 and data["result"] == 3  # a body that decodes is read as usual
    for broken in (b"not compressed at all", packed[: len(packed) // 2] + b"\x00" * 8):
        raw = await Raw.open(url)
        head = (
            b"POST /workflows/sum/execute HTTP/1.1\r\nHost: x\r\nContent-Encoding: %s\r\n"
            b"Content-Length: %d\r\n\r\n" % (encoding.encode(), len(broken))
        )
        await raw.send(head + broken)
        answer, _ = await raw.response(within=5)
        raw.close()
        code, _, body = parse(answer)
        assert code == 400, answer
        assert body["error"]["type"] == "BadRequest"


async def test_an_idempotency_key_never_turns_a_400_into_a_500(
    url: str, http: aiohttp.ClientSession
) -> None:
    deep = b'{"inputs":{"a":1,"b":' + b"[" * 500 + b"]" * 500 + b"}}"
    without = await post(http, f"{url}/workflows/sum/execute", deep)
    with_key = await post(
        http, f"{url}/workflows/sum/execute", deep, headers={"Idempotency-Key": "deep-1"}
    )
    assert without[0] == with_key[0] == 400
    assert without[1]["error"]["type"] == with_key[1]["error"]["type"] == "SecurityError"
    assert without[1]["error"]["details"] == with_key[1]["error"]["details"]
    for i, (body, headers) in enumerate(
        [
            (b"{not json", {}),
            (b"garbage", {"Content-Encoding": "gzip"}),
            (b'{"inputs":{"a":9223372036854775808,"b":1}}', {}),
            (b'{"inputs":{"__proto__":{"x":1}}}', {}),
        ]
    ):
        status, data = await post(
            http,
            f"{url}/workflows/sum/execute",
            body,
            headers={"Idempotency-Key": f"bad-{i}", **headers},
        )
        assert status == 400, (body, data)


# -- 3. malformed chunked bodies; clients leaving mid-upload -------------------------------------


async def test_a_malformed_chunked_body_is_answered_400_at_once(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    head = b"POST /workflows/sum/execute HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    for pieces in (
        [head + b"zz\r\n{}\r\n"],  # broken with the head
        [head, b'5\r\n{"inp\r\n', b"not-a-size\r\nxx\r\n"],  # broken after the handler started
        [head, b"3\r\nabcdef\r\n"],  # a chunk longer than its size
    ):
        raw = await Raw.open(url)
        started = time.monotonic()
        await raw.send(*pieces, pause=0.05)
        answer, closed = await raw.response(within=5)
        raw.close()
        assert time.monotonic() - started < 3  # at once: not after body_timeout (60 s)
        assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0], answer
        assert closed
        assert answer.count(b"HTTP/1.") == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]  # the client's error, not the server's


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="nexus_aio")
    return caplog


async def wait_for(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def access_statuses(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [
        r.fields["status"]  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "nexus_aio.access"
    ]


async def test_a_client_that_disconnects_mid_upload_is_not_counted_as_a_500(
    nexus_server: Any, server_log: pytest.LogCaptureFixture
) -> None:
    url = await nexus_server(hostile_app())
    uploads = [
        b"POST /workflows/sum/execute HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        b'{"inputs":',
        b"POST /workflows/sum/execute HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"inp\r\n',
        b"POST /raw/text HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nsome text",
        b"POST /workflows/sum/execute HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=XX\r\nContent-Length: 5000\r\n\r\n"
        b'--XX\r\nContent-Disposition: form-data; name="inputs"\r\n\r\n{"a":',
    ]
    for upload in uploads:
        raw = await Raw.open(url)
        await raw.send(upload)
        await asyncio.sleep(0.1)  # the handler is reading the body
        raw.writer.transport.abort()  # gone, mid-body
    await wait_for(lambda: len(access_statuses(server_log)) == len(uploads))
    statuses = access_statuses(server_log)
    assert all(s < 500 for s in statuses), statuses
    errors = [r for r in server_log.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    if plugin_installed("metrics"):  # nor metered as one
        async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
            text = await resp.text()
        served = [x for x in text.splitlines() if x.startswith("nexus_requests_total{")]
        assert any('status="499"' in x for x in served), served
        assert not any('status="5' in x for x in served), served


# -- 4. body_timeout -------------------------------------------------------------------------


def test_body_timeout_defaults_to_60_seconds_and_reads_its_environment_variable() -> None:
    assert Settings.build().body_timeout == 60
    assert Settings.build(environ={"NEXUS_BODY_TIMEOUT": "2.5"}).body_timeout == 2.5
    with pytest.raises(Exception, match="body_timeout"):
        Settings.build(body_timeout=0)


def trickled(target: bytes, body: bytes, extra: bytes = b"") -> tuple[bytes, list[bytes]]:
    head = (
        b"POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n"
        % (target, extra, len(body) + 100)  # announces more than it will ever send
    )
    return head, [bytes([b]) for b in body]


def trickle_cases() -> Iterable[tuple[str, bytes, list[bytes]]]:
    yield "execute", *trickled(b"/workflows/sum/execute", b'{"inputs":{"a":1,"b":2}}')
    yield "batch", *trickled(b"/workflows/batch", b'{"workflows":[{"name":"sum"}]}')
    yield "endpoint text()", *trickled(b"/raw/text", b"hello there, slowly")
    yield "endpoint body", *trickled(b"/items", b'{"x":1}')
    yield (
        "multipart",
        *trickled(
            b"/workflows/sum/execute",
            b'--XX\r\nContent-Disposition: form-data; name="inputs"\r\n\r\n{"a":1,"b":2}',
            b"Content-Type: multipart/form-data; boundary=XX\r\n",
        ),
    )
    chunked = (
        b"POST /workflows/sum/execute HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    yield "chunked", chunked, [b"1\r\n%s\r\n" % bytes([b]) for b in b'{"inputs":{}}']


@pytest.mark.parametrize("case", list(trickle_cases()), ids=lambda c: c[0])
async def test_a_body_trickling_past_body_timeout_gets_408_and_the_connection_closes(
    nexus_server: Any, case: tuple[str, bytes, list[bytes]]
) -> None:
    name, head, drips = case
    if name == "batch" and not plugin_installed("batch"):
        pytest.skip("needs nexus-aio-batch")
    url = await nexus_server(hostile_app(body_timeout=0.6))
    raw = await Raw.open(url)
    await raw.send(head)
    started = time.monotonic()
    sender = asyncio.create_task(raw.send(*drips, pause=0.1))  # one byte every 100 ms, ~2-5 s
    answer, closed = await raw.response(within=5)
    elapsed = time.monotonic() - started
    sender.cancel()
    raw.close()
    code, headers, body = parse(answer)
    assert code == 408, answer
    assert body["success"] is False and body["error"]["type"] == "RequestTimeout"
    assert headers.get("Connection") == "close"
    assert closed
    assert 0.5 < elapsed < 4, elapsed


async def test_a_body_that_arrives_within_body_timeout_is_read_as_usual(
    nexus_server: Any,
) -> None:
    url = await nexus_server(hostile_app(body_timeout=2))
    body = b'{"inputs":{"a":1,"b":2}}'
    raw = await Raw.open(url)
    head = b"POST /workflows/sum/execute HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
    await raw.send(head % len(body), *[bytes([b]) for b in body], pause=0.02)
    answer, _ = await raw.response(within=1.5)
    raw.close()
    code, _, data = parse(answer)
    assert code == 200 and data["result"] == 3


# -- 5. custom endpoints' own body reads ---------------------------------------------------------


async def test_a_custom_endpoints_request_json_is_filtered_whatever_the_content_type(
    url: str, http: aiohttp.ClientSession
) -> None:
    for content_type in ("text/plain", "application/octet-stream", "application/json", None):
        headers = {"Content-Type": content_type} if content_type else {}
        ok = await post(http, f"{url}/raw/json", b'{"a":[1,2]}', headers=headers)
        assert ok == (200, {"type": "dict"})
        for hostile, kind in [
            (b'{"__proto__":{"polluted":true}}', "SecurityError"),
            (b'{"a":' + b"[" * 200 + b"]" * 200 + b"}", "SecurityError"),
            (b'{"n":9223372036854775808}', "ValidationError"),
            (b"{not json", "ValidationError"),
        ]:
            status, data = await post(http, f"{url}/raw/json", hostile, headers=headers)
            assert status == 400, (content_type, hostile, data)
            assert data["error"]["type"] == kind


async def test_a_custom_endpoints_request_text_is_size_limited_and_undecodable_text_is_400(
    nexus_server: Any, http: aiohttp.ClientSession
) -> None:
    url = await nexus_server(hostile_app(max_request_size=1024))
    assert await post(http, f"{url}/raw/text", "héllo".encode()) == (200, {"length": 5})
    for body, content_type in [
        (b"\xff\xfe\xfa not utf-8", "text/plain"),
        (b"\xff\xfe\xfa", "text/plain; charset=utf-8"),
        (b"abc", "text/plain; charset=no-such-charset"),
        (b"\xff\xfe\xfa", None),
    ]:
        headers = {"Content-Type": content_type} if content_type else {}
        status, data = await post(http, f"{url}/raw/text", body, headers=headers)
        assert status == 400, (body, content_type, data)
        assert data["error"]["type"] == "ValidationError"
    status, data = await post(http, f"{url}/raw/text", b"x" * 2048)
    assert status == 413 and data["error"]["type"] == "PayloadTooLarge"
    status, data = await post(http, f"{url}/raw/json", b'{"a":"' + b"x" * 2048 + b'"}')
    assert status == 413


# -- 6. log lines and request ids ----------------------------------------------------------------


def test_text_access_log_lines_escape_control_characters(server_process: Any) -> None:
    import socket

    server = server_process(["serve", "--log-format", "text"])
    forged = [
        b"/health%0d%0a2026-01-01%20INFO%20nexus_aio.access:%20forged",
        b"/workflows/%1b[31mred%0a/schema",
        b"/x%ff%fe%E2%80%A8y%0b%0c",
    ]
    for path in forged:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path)
            while sock.recv(65536):
                pass
    deadline = time.monotonic() + 5
    while sum("nexus_aio.access" in x for x in server.read_output().splitlines()) < len(forged):
        assert time.monotonic() < deadline, server.read_output()
        time.sleep(0.05)
    output = server.stop()
    lines = output.splitlines()
    access = [x for x in lines if "nexus_aio.access" in x]
    assert len(access) == len(forged), output
    assert not any(x.startswith("2026-01-01") for x in lines), output  # no forged line
    assert "\x1b" not in output and "\u2028" not in output and "\x0b" not in output
    joined = "\n".join(access)
    assert "/health\\r\\n2026-01-01 INFO nexus_aio.access: forged" in joined
    assert "\\x1b[31mred\\n" in joined
    assert "\\u2028y\\x0b\\x0c" in joined


async def test_x_request_id_keeps_only_printable_ascii_without_spaces(
    url: str, http: aiohttp.ClientSession
) -> None:
    kept = ["abc-123_x.y:z/1", "A" * 128, "req~!#$%&'*+^`|"]
    replaced = ["a b", "tab\tbed", "é-accent", "A" * 129, "nul\x00", "del\x7f", "ctl\x1b"]
    for rid in kept:
        async with http.get(f"{url}/health", headers={"X-Request-ID": rid}) as resp:
            assert resp.headers["X-Request-ID"] == rid
    for rid in replaced:
        raw = await Raw.open(url)
        await raw.send(
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: "
            + rid.encode("utf-8")
            + b"\r\nConnection: close\r\n\r\n"
        )
        answer, _ = await raw.response(within=5)
        raw.close()
        if answer.startswith(b"HTTP/1.0 400"):
            continue  # aiohttp's parser refuses control characters in headers outright
        code, headers, _ = parse(answer)
        assert code == 200
        assert headers["X-Request-ID"] != rid
        assert headers["X-Request-ID"].startswith("req-")


# -- 7. Vary ----------------------------------------------------------------------------------


async def test_compressed_responses_carry_vary_accept_encoding(
    nexus_server: Any, http: aiohttp.ClientSession
) -> None:
    url = await nexus_server(hostile_app(response_compression=True))
    async with http.get(f"{url}/openapi.json", headers={"Accept-Encoding": "gzip"}) as resp:
        assert resp.headers.get("Content-Encoding") == "gzip"
        assert "accept-encoding" in resp.headers.get("Vary", "").lower()
        await resp.read()
    async with http.get(f"{url}/health", headers={"Accept-Encoding": "gzip"}) as resp:
        assert "Content-Encoding" not in resp.headers  # small: not compressed, no Vary needed
        await resp.read()


# -- 8. query parameters on POST execute are inputs ---------------------------------------------


async def test_query_parameters_on_post_execute_are_inputs(
    url: str, http: aiohttp.ClientSession
) -> None:
    target = f"{url}/workflows/search/execute"
    status, data = await post(
        http, f"{target}?limit=10&offset=0", {"inputs": {"query": "search term"}}
    )
    assert status == 200, data  # the spec's example
    assert data["result"] == {"query": "search term", "limit": 10, "offset": 0}
    status, data = await post(http, f"{target}?query=q&mode=sync", None)
    assert status == 200 and data["result"]["query"] == "q"

    status, data = await post(http, f"{target}?limit=5", {"inputs": {"query": "q", "limit": 6}})
    assert status == 400 and data["error"]["details"]["field"] == "limit"  # in both
    status, data = await post(http, f"{target}?bogus=1", {"inputs": {"query": "q"}})
    assert status == 400 and data["error"]["details"]["field"] == "bogus"  # unknown
    status, data = await post(http, f"{target}?limit=ten", {"inputs": {"query": "q"}})
    assert status == 400 and data["error"]["details"]["field"] == "limit"  # coerced from text
    status, data = await post(http, f"{target}?inputs=%7B%7D", {"inputs": {"query": "q"}})
    assert status == 400  # inputs= is the GET form only

    status, data = await get(http, f"{target}?query=q&limit=3")
    assert status == 200 and data["result"]["limit"] == 3
    status, data = await get(http, f"{target}?inputs=%7B%22query%22%3A%22q%22%7D&limit=3")
    assert status == 200 and data["result"] == {"query": "q", "limit": 3, "offset": 0}
    status, data = await get(http, f"{target}?inputs=%7B%22query%22%3A%22q%22%7D&query=r")
    assert status == 400
    status, data = await get(http, f"{target}?query=q&bogus=1")
    assert status == 400 and data["error"]["details"]["field"] == "bogus"
