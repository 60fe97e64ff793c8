"""Logging: text or JSON lines (``configure_logging``). The access line per request is written
by :mod:`nexus_aio.web.access_log` to the ``nexus_aio.access`` logger."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Final

import orjson

from nexus_aio.tracing import TraceLogFilter

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
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
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
        if trace_id != "-" and record.name != "nexus_aio.access":
            line += f" trace={trace_id}"
        return line


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once for the CLI (libraries embedding us keep their own)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TraceLogFilter())
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
