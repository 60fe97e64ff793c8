"""``Query``: constraints on a custom endpoint's query parameter, declared as its default."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Query:
    """``def search(q: str = Query(..., max_length=100), limit: int = Query(10, ge=1, le=100))``.

    ``default=...`` (Ellipsis), or no default at all, makes the parameter required.
    """

    default: Any = ...
    pattern: str | None = None
    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    lt: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    description: str | None = None
    alias: str | None = None
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.pattern is not None:
            object.__setattr__(self, "_regex", re.compile(self.pattern))

    @property
    def required(self) -> bool:
        return self.default is Ellipsis

    def check(self, name: str, value: Any) -> list[str]:
        """Problems with ``value`` (already coerced), as messages; empty when it is fine."""
        problems = []
        if isinstance(value, str):
            if self._regex is not None and not self._regex.fullmatch(value):
                problems.append(f"must match pattern {self.pattern!r}")
            if self.max_length is not None and len(value) > self.max_length:
                problems.append(f"must be at most {self.max_length} characters")
            if self.min_length is not None and len(value) < self.min_length:
                problems.append(f"must be at least {self.min_length} characters")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if self.ge is not None and value < self.ge:
                problems.append(f"must be >= {self.ge:g}")
            if self.le is not None and value > self.le:
                problems.append(f"must be <= {self.le:g}")
            if self.gt is not None and value <= self.gt:
                problems.append(f"must be > {self.gt:g}")
            if self.lt is not None and value >= self.lt:
                problems.append(f"must be < {self.lt:g}")
        return problems
