"""W3C Trace Context: continue the caller's trace (``traceparent``/``tracestate``) or start one.

The web layer parses the headers once per request and puts the result in :data:`current_trace`
(a context variable, so the execution service, the log filter and plugins see it without being
handed it). Records store the ``trace_id``; the response and SSE ``start`` events carry it.
Parsing follows the W3C recommendation: version ``ff`` and all-zero ids are invalid, a version
``00`` header has exactly four fields, later versions may append fields (ignored).
"""

from __future__ import annotations

import logging
import random
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = [
    "TraceContext",
    "TraceLogFilter",
    "current_trace",
    "new_trace",
    "parse_traceparent",
    "trace_from_headers",
]

_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
MAX_TRACESTATE = 512  # the W3C limit is 32 list members; longer values are not passed on
# Trace and span ids need no secrecy (W3C asks for randomness, not unpredictability), so the
# module's Mersenne Twister serves them without a getrandom() call each; ``random`` reseeds it in
# a forked child (``serve --workers``), so workers never repeat each other's ids.
_bits = random.getrandbits


@dataclass(frozen=True, slots=True)
class TraceContext:
    """One span of a trace: ours (``span_id``) under the caller's (``parent_id``, if any)."""

    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex
    parent_id: str | None = None
    flags: str = "01"  # sampled
    tracestate: str | None = None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        """A new span of the same trace under this one."""
        return TraceContext(self.trace_id, _span_id(), self.span_id, self.flags, self.tracestate)


current_trace: ContextVar[TraceContext | None] = ContextVar("nexus_aio.trace", default=None)


def _span_id() -> str:
    return f"{_bits(64) or 1:016x}"


def new_trace() -> TraceContext:
    return TraceContext(f"{_bits(128) or 1:032x}", _span_id())


def continue_trace(trace_id: str) -> TraceContext:
    """A new span in the trace ``trace_id`` (a run resumed outside the request that started it:
    a queued run, a worker's, a retry)."""
    return TraceContext(trace_id, _span_id())


def _is_hex(value: str, length: int) -> bool:
    return len(value) == length and _HEX.issuperset(value)


def parse_traceparent(header: str | None) -> tuple[str, str, str] | None:
    """``(trace_id, parent_id, flags)`` from a valid ``traceparent``, else None."""
    if not header or len(header) > 512:
        return None
    fields = header.strip().split("-")
    if len(fields) < 4:
        return None
    version, trace_id, parent_id, flags = fields[:4]
    if not _is_hex(version, 2) or version == "ff" or (version == "00" and len(fields) != 4):
        return None
    if not _is_hex(trace_id, 32) or trace_id == _ZERO_TRACE:
        return None
    if not _is_hex(parent_id, 16) or parent_id == _ZERO_SPAN or not _is_hex(flags, 2):
        return None
    return trace_id, parent_id, flags


def trace_from_headers(traceparent: str | None, tracestate: str | None) -> TraceContext:
    """Our span for a request: a child of the caller's span, or the root of a new trace
    (``tracestate`` is passed on only with a valid ``traceparent``, as the W3C rules say)."""
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return new_trace()
    trace_id, parent_id, flags = parsed
    state = tracestate.strip() if tracestate and len(tracestate) <= MAX_TRACESTATE else None
    return TraceContext(trace_id, _span_id(), parent_id, flags, state or None)


class TraceLogFilter(logging.Filter):
    """Adds ``trace_id`` to every log record written while a trace is current (text lines show
    it through ``%(trace_id)s``; JSON lines as a field)."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace = current_trace.get()
        record.trace_id = trace.trace_id if trace is not None else "-"
        return True
