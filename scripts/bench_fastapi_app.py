"""The hand-written FastAPI peer for ``scripts/bench.py`` (run with the ``.bench/`` venv's Python).

What a user who cares about overhead would write by hand: FastAPI on uvicorn with uvloop and
httptools, no access log, the request validated by a pydantic model (strict ints, so ``"1"`` is a
422 as it is a 400 in nexus_aio), the answer serialised with orjson, and the same route and the
same success envelope fields as nexus_aio (``success, result, workflow_id, execution_time,
timestamp``). No middleware, no store. ``scripts/bench.py --with-fastapi`` installs FastAPI,
``uvicorn[standard]`` and orjson into ``.bench/fastapi-venv`` (an ignored folder).

Also serves ``GET /health`` and ``POST /sse`` (one ``start`` event, then holds the stream open)
like the bare aiohttp floor, so the health and SSE cases have this peer too.

Run: ``.bench/fastapi-venv/bin/python scripts/bench_fastapi_app.py --port 8003``.

:func:`envelope` and :func:`timestamp` import nothing from FastAPI, so the smoke test checks the
envelope from the project's own venv.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations at runtime.
import argparse
import asyncio
import os
import time
from typing import Any


def timestamp() -> str:
    t = time.time()
    ms = int((t - int(t)) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


def envelope(result: Any, started: float) -> dict[str, Any]:
    """nexus_aio's success envelope for ``result`` (``started``: ``time.perf_counter()``)."""
    return {
        "success": True,
        "result": result,
        "workflow_id": "wf-" + os.urandom(12).hex(),
        "execution_time": time.perf_counter() - started,
        "timestamp": timestamp(),
    }


def build_app() -> Any:
    from fastapi import FastAPI, Request
    from fastapi.responses import ORJSONResponse, StreamingResponse
    from pydantic import BaseModel, StrictInt

    class SumInputs(BaseModel):
        a: StrictInt
        b: StrictInt

    class SumRequest(BaseModel):
        inputs: SumInputs

    app = FastAPI(default_response_class=ORJSONResponse, docs_url=None, redoc_url=None)

    @app.post("/workflows/sum/execute")
    async def execute_sum(body: SumRequest) -> ORJSONResponse:
        started = time.perf_counter()
        return ORJSONResponse(envelope(body.inputs.a + body.inputs.b, started))

    @app.get("/health")
    async def health() -> ORJSONResponse:
        return ORJSONResponse({"status": "healthy"})

    @app.post("/sse")
    async def sse(request: Request, seconds: float = 60.0) -> StreamingResponse:
        import orjson

        async def events() -> Any:
            data = orjson.dumps(
                {"workflow_id": "wf-" + os.urandom(12).hex(), "timestamp": timestamp()}
            )
            yield b"id: 1\nevent: start\ndata: " + data + b"\n\n"
            await asyncio.sleep(seconds)

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="hand-written FastAPI sum server for the bench")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(
        build_app(),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
