"""Where state lives: executions, sessions and rate limits.

Each kind has its interface, data and in-memory store in one module (``executions``, ``sessions``,
``ratelimit``); the embedded SQLite stores (``sqlite_executions``, ``sqlite_sessions``) share one
thread and connection per database file (``sqlite_worker``). Plugins add stores for the same
interfaces, and ``nexus_aio.testing`` holds the contract suites every store passes.
"""
