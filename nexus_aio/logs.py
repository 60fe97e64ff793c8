"""Logging: text or JSON lines (``configure_logging``). The access line per request is written
by :mod:`nexus_aio.web.access_log` to the ``nexus_aio.access`` logger."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from nexus_aio.envelope import iso_timestamp
from nexus_aio.tracing import TraceLogFilter

ACCESS_LOGGER: Final = "nexus_aio.access"
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_NAMED_ESCAPES: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_char(char: str) -> str:
    if char.isprintable():
        return char
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


def escape_controls(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\r``, ``\\n``, ``\\x1b``,
    ``\\u2028``, lone surrogates): a client's text (a path with ``%0d%0a``, a header) never starts
    a forged line in a text log. Printable text is returned as it is (one C-level check)."""
    if text.isprintable():
        return text
    return "".join(map(_escape_char, text))


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": iso_timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", "-")
        if trace_id != "-":
            data["trace_id"] = trace_id
        fields = getattr(record, "fields", None)
        if fields:
            data.update(fields)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


class TextFormatter(logging.Formatter):
    """The text line, with `` trace=<id>`` when written under a trace (not the access line,
    which names its trace itself)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace_id = getattr(record, "trace_id", "-")
        if trace_id != "-" and record.name != ACCESS_LOGGER:
            line += f" trace={trace_id}"
        return line


class LineHandler(logging.StreamHandler):
    """The CLI's handler (stderr), which also takes ready-made lines: the access log's fast path.

    Going through ``logging`` cost the access line ~50 us a request (a ``LogRecord``, the caller's
    frame lookup, the filter, the formatter, a write and a flush); :meth:`line_writer` formats the
    same line directly and the lines written during one pass of the event loop go out in one write
    at the end of it. Every other record is written after the buffered lines (order is kept), and
    ``flush`` (``logging.shutdown`` at exit) writes them too.
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self._lines:
            self._write_lines()
        super().emit(record)

    def flush(self) -> None:
        if self._lines:
            self._write_lines()
        super().flush()

    def _write_lines(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines, self._lines = self._lines, []
            if not lines:
                return
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:  # as ``emit`` does: a broken stderr must not fail a request
                self.handleError(logging.makeLogRecord({"msg": "access log lines"}))

    def _add_line(self, line: str) -> None:
        lines = self._lines
        lines.append(line)
        if len(lines) == 1:  # the first of this loop pass: write them all at its end
            try:
                asyncio.get_running_loop().call_soon(self._write_lines)
            except RuntimeError:  # no loop (a thread): write now
                self._write_lines()

    def line_writer(self, name: str) -> Callable[[str, str, Mapping[str, Any]], None] | None:
        """``write(message, trace_id, fields)`` printing what an INFO record of logger ``name``
        with those ``fields`` would, or None when this handler's formatter is not one of ours
        (or a filter of its own, or a level above INFO, could change the line)."""
        if self.level > logging.INFO or any(
            not isinstance(f, TraceLogFilter) for f in self.filters
        ):
            return None
        formatter = self.formatter
        add = self._add_line
        if type(formatter) is JSONFormatter:
            dumps = orjson.dumps

            def write_json(message: str, trace_id: str, fields: Mapping[str, Any]) -> None:
                now = time.time()
                data: dict[str, Any] = {
                    "ts": iso_timestamp(now),
                    "level": "info",
                    "logger": name,
                    "message": message,
                }
                if trace_id != "-":
                    data["trace_id"] = trace_id
                data.update(fields)
                add(dumps(data, default=str).decode() + "\n")

            return write_json
        if type(formatter) is TextFormatter and formatter._fmt == TEXT_FORMAT:
            prefix = f" INFO {name}: "

            names_trace = name != ACCESS_LOGGER  # as TextFormatter does

            def write_text(message: str, trace_id: str, fields: Mapping[str, Any]) -> None:
                now = time.time()
                second = int(now)
                stamp = _asctime_second
                if second != stamp[0]:
                    stamp = _local_second(second)
                line = f"{stamp[1]},{int((now - second) * 1000):03d}{prefix}{message}"
                if names_trace and trace_id != "-":
                    line += f" trace={trace_id}"
                add(line + "\n")

            return write_text
        return None


_asctime_second: tuple[int, str] = (-1, "")


def _local_second(second: int) -> tuple[int, str]:
    """logging's ``asctime`` to the second (local time), kept for the rest of that second."""
    global _asctime_second
    _asctime_second = (second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))
    return _asctime_second


def line_writer_for(logger: logging.Logger) -> Callable[[str, str, Mapping[str, Any]], None] | None:
    """The fast writer for ``logger``'s INFO lines when a :class:`LineHandler` is the one place
    they go (no handler or filter of their own on the way to it), else None: then they go through
    ``logging`` as usual, so a user's own logging setup sees every line."""
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        if current.handlers:
            handlers = current.handlers
            if len(handlers) == 1 and isinstance(handlers[0], LineHandler):
                return handlers[0].line_writer(logger.name)
            return None
        if not current.propagate:
            return None
        current = current.parent
    return None


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once for the CLI (libraries embedding us keep their own)."""
    handler = LineHandler(sys.stderr)
    handler.addFilter(TraceLogFilter())
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
