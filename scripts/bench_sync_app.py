"""A bench-only nexus_aio app whose ``sum`` is a plain ``def`` (it runs in the thread pool).

``scripts/bench.py`` serves it as ``python -m nexus_aio serve --app bench_sync_app:app`` (with
``scripts/`` on ``PYTHONPATH``) next to the bundled examples' ``async def sum``, so both workflow
kinds are measured on the same route with the same settings and every installed plugin. ``slow``
is the bundled example's, for the SSE case.
"""

from __future__ import annotations

from nexus_aio import Nexus
from nexus_aio.examples.basics import slow

app = Nexus()


@app.workflow("sum")
def sum_(a: int, b: int) -> int:
    """Add two integers (a sync function: it runs in a worker thread, off the event loop)."""
    return a + b


app.register("slow", slow)
