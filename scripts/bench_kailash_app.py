"""Kailash Nexus serving the bench's ``sum`` workflow (run with the ``.bench/`` venv's Python).

Kailash Nexus is a peer from the package index, installed by ``scripts/bench.py --with-kailash``
into ``.bench/kailash-venv`` (an ignored folder); nothing of it is vendored here.

How it is served (read from the installed ``nexus`` package): ``Nexus.handler(name)`` wraps an
async function as a one-node workflow and registers it on every channel; the HTTP channel is a
FastAPI gateway run by uvicorn, answering ``POST /workflows/<name>/execute`` with
``{"inputs": {...}}`` and ``GET /health``. Its defaults are kept except three that would make
the comparison meaningless: the 100 requests/minute rate limit (off, as nexus_aio's is), the MCP
port (moved off 3001 so it cannot collide) and uvicorn's access log (off, as in the other two).

Run: ``.bench/kailash-venv/bin/python scripts/bench_kailash_app.py --port 8002``.
"""

# No ``from __future__ import annotations``: Kailash reads the handler's annotations at runtime,
# and string annotations made it pass ``a``/``b`` as strings (``sum`` answered "12" for 1 + 2).
import argparse
import functools
import logging
import os


def main() -> None:
    parser = argparse.ArgumentParser(description="Kailash Nexus sum server for the bench")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--mcp-port", type=int, default=0, help="default: --port + 1000")
    args = parser.parse_args()
    os.environ.setdefault("NEXUS_ENV", "development")

    from nexus import Nexus

    app = Nexus(
        api_port=args.port,
        mcp_port=args.mcp_port or args.port + 1000,
        rate_limit=None,
    )

    @app.handler("sum", description="Add two integers.")
    async def sum_(a: int, b: int) -> int:
        return a + b

    @app.handler("slow", description="Sleep, then answer (for SSE streams).")
    async def slow(seconds: float = 1.0) -> dict:
        import asyncio

        await asyncio.sleep(seconds)
        return {"slept": seconds}

    import uvicorn

    # The gateway calls ``uvicorn.run(app, host=, port=)``; turn its access log off there.
    uvicorn.run = functools.partial(uvicorn.run, access_log=False, log_level="warning")
    logging.getLogger().setLevel(logging.WARNING)
    app.start()


if __name__ == "__main__":
    main()
