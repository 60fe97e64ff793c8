"""Fuzzing the execute endpoint over real HTTP: hostile JSON never yields a 500 and never runs code.

Unit-level properties of the filter and the schema live in test_security.py and test_schema.py;
these drive the whole request path (parsing, the security filter, schema validation, the runtime)
through a real socket and count how often the workflow actually ran.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexus_aio import Nexus
from nexus_aio.security import DANGEROUS_KEYS

MAX_DEPTH = 16
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# What orjson also writes: finite floats, 64-bit integers, no lone surrogates. Refusal tests use
# it so that the refusal under test is not pre-empted by a malformed-JSON 400.
clean_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=["Cs"]))
)
clean_json = st.recursive(
    clean_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(st.characters(blacklist_categories=["Cs"]), max_size=8), inner, max_size=4
        )
    ),
    max_leaves=20,
)
not_ints = json_values.filter(lambda v: not isinstance(v, int) or isinstance(v, bool))
dangerous_keys = st.sampled_from(sorted(DANGEROUS_KEYS)) | st.sampled_from(
    ["__PROTO__", "__Class__", "__GLOBALS__"]
)


class Probe:
    """A workflow that records every call, so a test can prove a refused request never ran."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, a: int, tags: list[str] | None = None, meta: Any = None) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        return {"a": a, "tags": tags, "meta": meta}


def encode(body: Any) -> bytes:
    """The stdlib encoder: it writes what orjson refuses to (64-bit overflow, lone surrogates)."""
    return json.dumps(body).encode()


class Client:
    def __init__(self, url: str, probe: Probe) -> None:
        self.url = f"{url}/workflows/probe/execute"
        self.probe = probe
        self.http = requests.Session()

    def post(self, body: bytes, **kw: Any) -> tuple[int, dict[str, Any]]:
        resp = self.http.post(self.url, data=body, **kw)
        return resp.status_code, resp.json()

    def refused(self, body: Any) -> dict[str, Any]:
        """Post ``body``; assert a 400 envelope and that the workflow did not run."""
        before = self.probe.calls
        status, data = self.post(encode(body))
        assert status == 400, data
        assert data["success"] is False and data["error"]["type"] in (
            "ValidationError",
            "SecurityError",
        )
        assert self.probe.calls == before
        return data


@pytest.fixture
def client(nexus_thread_server) -> Iterator[Client]:
    probe = Probe()
    app = Nexus(database=":memory:", max_depth=MAX_DEPTH, max_request_size=64 * 1024 * 1024)
    app.register("probe", probe)
    c = Client(nexus_thread_server(app), probe)
    yield c
    c.http.close()


def nest(value: Any, depth: int, keys: list[bool]) -> Any:
    for i in range(depth):
        value = {"k": value} if keys[i % len(keys)] else [value]
    return value


# -- properties ----------------------------------------------------------------------------------
@FUZZ
@given(body=json_values)
def test_arbitrary_json_bodies_never_give_a_500(client, body):
    if isinstance(body, dict):
        body.pop("mode", None)  # async mode would run the workflow after the response
    before = client.probe.calls
    status, data = client.post(encode(body))
    assert status in (200, 400), data
    assert client.probe.calls == before + (status == 200)
    if status == 400:
        assert data["success"] is False and data["error"]["message"]


@FUZZ
@given(inputs=json_values, a=json_values, tags=json_values, meta=json_values)
def test_arbitrary_inputs_run_the_workflow_only_when_valid(client, inputs, a, tags, meta):
    if isinstance(inputs, dict):
        inputs.update({"a": a, "tags": tags, "meta": meta})
    before = client.probe.calls
    status, data = client.post(encode({"inputs": inputs}))
    assert status in (200, 400), data
    assert client.probe.calls == before + (status == 200)
    if status == 200:
        assert type(a) is int
        assert tags is None or (isinstance(tags, list) and all(type(t) is str for t in tags))
        assert data["result"] == {"a": a, "tags": tags, "meta": meta}


@FUZZ
@given(a=not_ints)
def test_wrong_types_are_refused_before_the_workflow(client, a):
    data = client.refused({"inputs": {"a": a}})
    field = data["error"]["details"]["field"]
    # "body": Infinity is not JSON; "inputs.a.<key>": a dangerous key inside the wrong value
    assert field in ("a", "body") or field.startswith("inputs.a"), field


@FUZZ
@given(
    meta=clean_json,
    key=dangerous_keys,
    depth=st.integers(0, 5),
    keys=st.lists(st.booleans(), min_size=1),
)
def test_dangerous_keys_anywhere_are_refused_before_the_workflow(client, meta, key, depth, keys):
    planted = nest({key: meta}, depth, keys)
    data = client.refused({"inputs": {"a": 1, "meta": planted}})
    assert data["error"]["type"] == "SecurityError"
    assert data["error"]["details"]["reason"] == "dangerous_key"


@FUZZ
@given(
    depth=st.integers(MAX_DEPTH + 1, 900),
    keys=st.lists(st.booleans(), min_size=1, max_size=8),
    leaf=clean_scalars,
)
def test_nesting_past_max_depth_is_refused_before_the_workflow(client, depth, keys, leaf):
    data = client.refused({"inputs": {"a": 1, "meta": nest(leaf, depth, keys)}})
    assert data["error"]["details"]["reason"] == "too_deep"


# -- pathological sizes ----------------------------------------------------------------------------
def peak_rss_kib() -> int:
    """This process's peak RSS since the last :func:`reset_peak_rss` (the server runs in it)."""
    with open("/proc/self/status") as status:
        return int(re.search(r"VmHWM:\s+(\d+)", status.read()).group(1))  # type: ignore[union-attr]


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def test_ten_thousand_deep_nesting_is_refused_and_the_server_keeps_serving(client):
    for opener, closer in ((b"[", b"]"), (b'{"k":', b"}")):
        body = b'{"inputs":{"a":1,"meta":' + opener * 10_000 + b"0" + closer * 10_000 + b"}}"
        before = client.probe.calls
        status, data = client.post(body)
        assert status == 400 and data["error"]["type"] in ("ValidationError", "SecurityError")
        assert client.probe.calls == before
    assert client.post(encode({"inputs": {"a": 7}}))[1]["result"]["a"] == 7


def million_keys() -> bytes:
    return orjson.dumps({"inputs": {"a": 1, "meta": {f"k{i}": i for i in range(1_000_000)}}})


def status_of_upload(url: str, head: bytes, body: bytes) -> int:
    """Send ``head`` and as much of ``body`` as the server takes before answering; the status.

    A raw socket, closed right after the answer: a client that keeps its connection open after an
    early 413 holds the server's graceful shutdown for aiohttp's ``lingering_time`` (10 s).
    """
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        try:
            for i in range(0, len(body), 65536):
                sock.sendall(body[i : i + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed mid-upload
        answer = sock.recv(64)
    return int(answer.split()[1])


def test_a_million_key_object_over_the_size_limit_is_refused_413_unread(nexus_thread_server):
    probe = Probe()
    app = Nexus(database=":memory:")  # the default 10 MiB limit
    app.register("probe", probe)
    url = nexus_thread_server(app)
    body = million_keys()
    assert len(body) > app.settings.max_request_size
    request = b"POST /workflows/probe/execute HTTP/1.1\r\nHost: x\r\n"
    sized = request + b"Content-Length: %d\r\n\r\n" % len(body)
    assert status_of_upload(url, sized, body[:65536]) == 413  # refused from the header alone
    chunked = request + b"Transfer-Encoding: chunked\r\n\r\n"
    framed = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 65536]), body[i : i + 65536])
        for i in range(0, len(body), 65536)
    )
    assert status_of_upload(url, chunked, framed + b"0\r\n\r\n") == 413  # cut at the limit
    assert probe.calls == 0


def test_a_million_key_object_within_the_size_limit_is_refused_with_bounded_memory(client):
    body = million_keys()  # ~15 MB, under this app's 64 MiB limit: it is parsed, then refused
    reset_peak_rss()
    baseline = peak_rss_kib()
    status, data = client.post(body)
    growth_mib = (peak_rss_kib() - baseline) / 1024
    assert status == 400 and data["error"]["details"]["reason"] == "too_many_items"
    assert client.probe.calls == 0
    # Decoding a million keys costs memory once; it must stay a bounded, small multiple of the body.
    print(f"peak RSS growth {growth_mib:.0f} MiB for a {len(body) / 2**20:.0f} MiB body")
    assert growth_mib < 20 * len(body) / 2**20, growth_mib
    assert client.post(encode({"inputs": {"a": 2}}))[0] == 200
