"""What is wrong with a request's inputs, and the one ``ValidationError`` that reports it all.

Every problem is reported at once, each with the path of the offending value (``items[2]``,
``config.name``), so a client can fix its request in one round trip.
"""

from __future__ import annotations

from typing import Any, Final

from nexus_aio.errors import ValidationError
from nexus_aio.workflows.jsontypes import received_type_name

__all__ = ["MAX_REPORTED_ERRORS", "Problem", "add_segment", "type_problem", "validation_error"]

# At most this many problems are listed in ``details["errors"]``: a 100,000-item list of wrong
# values must not turn into a multi-megabyte error response. The message still gives the count.
MAX_REPORTED_ERRORS: Final = 100
_MAX_FIELDS_IN_MESSAGE: Final = 10


class Problem:
    """One thing wrong with the inputs. ``segments`` grows leaf-first as checks return upwards,
    so a path string is only built when there is something to report."""

    __slots__ = ("detail", "expected", "kind", "received", "segments")

    def __init__(
        self, kind: str, expected: str, received: str, detail: str | None = None, *segments: str
    ) -> None:
        self.kind = kind  # "type" | "missing" | "unknown" | "invalid"
        self.expected = expected
        self.received = received
        self.detail = detail
        self.segments = list(segments)

    @property
    def field(self) -> str:
        return "".join(reversed(self.segments))

    def message(self) -> str:
        field = self.field
        if self.kind == "missing":
            return f"Missing required input: {field}"
        if self.kind == "unknown":
            return f"Unknown input: {field}"
        if self.kind == "invalid":
            return f"{field}: {self.detail}"
        return f"{field}: expected {self.expected}, received {self.received}"

    def to_dict(self) -> dict[str, str]:
        return {
            "field": self.field,
            "expected": self.expected,
            "received": self.received,
            "message": self.message(),
        }


def type_problem(expected: str, value: Any) -> Problem:
    return Problem("type", expected, received_type_name(value))


def add_segment(problems: list[Problem], start: int, segment: str) -> None:
    for problem in problems[start:]:
        problem.segments.append(segment)


def validation_error(problems: list[Problem]) -> ValidationError:
    """The documented error: the first problem at the top of ``details``, all in ``errors``."""
    first = problems[0]
    fields = [p.field for p in problems]
    if len(problems) == 1:
        message = f"Invalid parameter: {fields[0]}"
    else:
        shown = ", ".join(fields[:_MAX_FIELDS_IN_MESSAGE])
        more = ", ..." if len(fields) > _MAX_FIELDS_IN_MESSAGE else ""
        message = f"{len(problems)} invalid inputs: {shown}{more}"
    details: dict[str, Any] = {
        "field": first.field,
        "expected": first.expected,
        "received": first.received,
        "errors": [p.to_dict() for p in problems[:MAX_REPORTED_ERRORS]],
    }
    if len(problems) > MAX_REPORTED_ERRORS:
        details["error_count"] = len(problems)
    return ValidationError(message, details=details)
