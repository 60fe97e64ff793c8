"""The floor for ``scripts/bench.py``: a bare aiohttp app answering nexus_aio's ``sum`` route.

It does the least a hand-written handler must do to give the same answer: parse JSON with orjson,
check two ints, add them, make a random id and a timestamp, and return the same success envelope
fields (``success, result, workflow_id, execution_time, timestamp``) with orjson. No middleware,
no store, no request id, and aiohttp's access log OFF: the least a server must do (nexus_aio runs
in the bench with its defaults, its access log on).

Also serves ``GET /health`` and ``POST /sse`` (one ``start`` event, then holds the stream open) so
the health and SSE cases have a floor too.

Run: ``python scripts/bench_bare_aiohttp.py --port 8001``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import orjson
from aiohttp import web

JSON = {"Content-Type": "application/json"}


def _timestamp() -> str:
    t = time.time()
    ms = int((t - int(t)) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


def _error(status: int, message: str) -> web.Response:
    body = {
        "success": False,
        "error": {"type": "ValidationError", "message": message, "details": {}},
        "workflow_id": None,
        "timestamp": _timestamp(),
    }
    return web.Response(body=orjson.dumps(body), status=status, headers=JSON)


async def execute_sum(request: web.Request) -> web.Response:
    started = time.perf_counter()
    try:
        inputs = orjson.loads(await request.read())["inputs"]
        a, b = inputs["a"], inputs["b"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _error(400, "expected {'inputs': {'a': int, 'b': int}}")
    if type(a) is not int or type(b) is not int:
        return _error(400, "a and b must be integers")
    result = a + b
    body = {
        "success": True,
        "result": result,
        "workflow_id": "wf-" + os.urandom(12).hex(),
        "execution_time": time.perf_counter() - started,
        "timestamp": _timestamp(),
    }
    return web.Response(body=orjson.dumps(body), headers=JSON)


async def health(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps({"status": "healthy"}), headers=JSON)


async def sse(request: web.Request) -> web.StreamResponse:
    """One ``start`` event, then hold the stream until the client leaves (SSE floor)."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    data = orjson.dumps({"workflow_id": "wf-" + os.urandom(12).hex(), "timestamp": _timestamp()})
    await resp.write(b"id: 1\nevent: start\ndata: " + data + b"\n\n")
    seconds = float(request.query.get("seconds", "60"))
    await asyncio.sleep(seconds)
    return resp


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/workflows/sum/execute", execute_sum)
    app.router.add_get("/health", health)
    app.router.add_post("/sse", sse)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    web.run_app(build_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
