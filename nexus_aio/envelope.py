"""Success and error envelopes, exactly as the spec writes them, and the ids they carry."""

from __future__ import annotations

import os
import time
from typing import Any

from nexus_aio.errors import NexusError

_last_second = -1
_last_prefix = ""


def iso_timestamp(t: float | None = None) -> str:
    """ISO 8601 UTC with milliseconds, ending in ``Z``; the second-level prefix is cached."""
    global _last_second, _last_prefix
    if t is None:
        t = time.time()
    second = int(t)
    if second != _last_second:
        _last_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = second
    return f"{_last_prefix}.{int((t - second) * 1000):03d}Z"


def iso_or_none(t: float | None) -> str | None:
    return None if t is None else iso_timestamp(t)


class _RandomHex:
    """Random hex strings from a pooled ``os.urandom`` read.

    Ids are needed twice per request; one getrandom() call per 4 KiB keeps them unpredictable
    (same source as ``secrets``) without a system call on every request.
    """

    __slots__ = ("_pool", "_pos")
    POOL_BYTES = 4096

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0

    def take(self, nbytes: int) -> str:
        pos = self._pos
        end = pos + nbytes
        if end > len(self._pool):
            self._pool = os.urandom(self.POOL_BYTES)
            pos, end = 0, nbytes
        self._pos = end
        return self._pool[pos:end].hex()

    def reset(self) -> None:
        """Forget the pool (a forked child must not hand out its parent's ids)."""
        self._pool = b""
        self._pos = 0


_random_hex = _RandomHex()
_MS_MASK = (1 << 44) - 1
os.register_at_fork(after_in_child=_random_hex.reset)


def new_execution_id() -> str:
    """``wf-`` + 24 hex characters: the time in milliseconds (11, modulo 2**44: 557 years), then
    52 random bits (13). Ids made later sort later, so a store's index on ids grows at its end
    instead of taking a write at a random page per run (in SQLite, half the pages a sync run
    wrote). Unique and URL-safe; not a secret (every read of an execution checks the caller)."""
    ms = int(time.time() * 1000) & _MS_MASK
    return f"wf-{ms:011x}{_random_hex.take(7)[:13]}"


def new_request_id() -> str:
    return "req-" + _random_hex.take(8)


def success_envelope(
    result: Any, workflow_id: str, execution_time: float, at: float | None = None
) -> dict[str, Any]:
    """The spec's success envelope; ``at`` (epoch seconds) fixes the timestamp (default now)."""
    return {
        "success": True,
        "result": result,
        "workflow_id": workflow_id,
        "execution_time": execution_time,
        "timestamp": iso_timestamp(at),
    }


def error_envelope(
    error: NexusError | dict[str, Any], workflow_id: str | None = None, at: float | None = None
) -> dict[str, Any]:
    """The spec's error envelope, from an error or from its stored ``{"type", "message",
    "details"}`` form; ``at`` (epoch seconds) fixes the timestamp (default now)."""
    if isinstance(error, NexusError):
        if at is None:
            at = error.at
        error = error.to_dict()
    return {
        "success": False,
        "error": error,
        "workflow_id": workflow_id,
        "timestamp": iso_timestamp(at),
    }
