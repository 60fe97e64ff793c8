"""The HTTP layer: the only package that imports aiohttp.

App assembly, middleware, routes, SSE, idempotency, permissions, custom endpoints and serving
(``--workers``). Everything below it (execution, stores, workflows) is plain asyncio.
"""
