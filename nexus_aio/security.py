"""Input security filter: refuse payloads built to attack the server or the code behind it.

Runs on every decoded JSON body before any workflow sees it. It refuses keys that are attack
vectors for prototype pollution (JavaScript clients and services that forward the payload) and
for Python attribute walking (``__class__``, ``__globals__``: the usual template-injection chain),
overlong keys, deep nesting and huge collections that would make later processing costly.

The walk is iterative, so a 10,000-deep document cannot exhaust the interpreter's stack, and it
stops at the first problem. A dict of scalars (most requests) takes a single cheap loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, NoReturn
from urllib.parse import urlsplit

from nexus_aio.errors import ConfigurationError, SecurityError

__all__ = [
    "DANGEROUS_KEYS",
    "DEFAULT_LIMITS",
    "SecurityLimits",
    "check_payload",
    "is_dangerous_key",
    "normalize_origin",
]


def normalize_origin(origin: str, setting: str = "trusted origin") -> str:
    """``scheme://host[:port]`` in lower case, as browsers send it; ``*`` stays ``*``. Anything
    else is a configuration error naming ``setting`` (origins come from settings)."""
    if origin == "*":
        return origin
    parts = urlsplit(origin.strip().rstrip("/"))
    if not parts.scheme or not parts.netloc or parts.path or parts.query or parts.fragment:
        raise ConfigurationError(
            f"{setting}: {origin!r} is not an origin (expected scheme://host[:port] or '*')"
        )
    return f"{parts.scheme}://{parts.netloc}".lower()


DANGEROUS_KEYS: Final[frozenset[str]] = frozenset(
    {
        # JavaScript prototype pollution
        "__proto__",
        "constructor",
        "prototype",
        "__defineGetter__",
        "__defineSetter__",
        "__lookupGetter__",
        "__lookupSetter__",
        # Python object internals: the steps of an attribute-walking exploit
        "__class__",
        "__dict__",
        "__globals__",
        "__builtins__",
        "__import__",
        "__init__",
        "__new__",
        "__call__",
        "__subclasses__",
        "__bases__",
        "__base__",
        "__mro__",
        "__code__",
        "__closure__",
        "__func__",
        "__self__",
        "__wrapped__",
        "__module__",
        "__loader__",
        "__spec__",
        "__reduce__",
        "__reduce_ex__",
        "__getstate__",
        "__setstate__",
        "__getattribute__",
        "__getattr__",
        "__setattr__",
        "__delattr__",
        "__defaults__",
        "__kwdefaults__",
        "__annotations__",
        "f_globals",
        "f_locals",
        "f_builtins",
        "gi_frame",
        "cr_frame",
        "ag_frame",
        "tb_frame",
    }
)
# Dunder names are refused in any letter case (``__PROTO__``); the others only exactly.
_DANGEROUS_DUNDERS_LOWER: Final = frozenset(k.lower() for k in DANGEROUS_KEYS if k[:2] == "__")

_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_CONTAINERS: Final = (dict, list, tuple)


@dataclass(frozen=True, slots=True)
class SecurityLimits:
    """Bounds on one payload; depth counts containers (``{"a": 1}`` is depth 1)."""

    max_depth: int = 64
    max_key_length: int = 256
    max_items: int = 100_000  # total keys + array items in one payload


DEFAULT_LIMITS: Final = SecurityLimits()


def limits_from(settings: Any) -> SecurityLimits:
    """The limits the settings ``max_depth``, ``max_key_length`` and ``max_items`` set."""
    return SecurityLimits(
        max_depth=settings.max_depth,
        max_key_length=settings.max_key_length,
        max_items=settings.max_items,
    )


def is_dangerous_key(key: str) -> bool:
    """True for a key the filter refuses by name."""
    return key in DANGEROUS_KEYS or (key[:2] == "__" and key.lower() in _DANGEROUS_DUNDERS_LOWER)


def check_payload(value: Any, limits: SecurityLimits = DEFAULT_LIMITS, *, path: str = "") -> None:
    """Raise ``SecurityError`` (400) if ``value`` breaks ``limits`` or holds a dangerous key.

    ``path`` names ``value`` in the error's ``details["field"]`` (e.g. ``"inputs"``).
    """
    cls = value.__class__
    if cls in _SCALARS:
        return
    if cls is dict and _is_flat_and_clean(value, limits):
        return
    if isinstance(value, _CONTAINERS):
        _walk(value, limits, path)


def _is_flat_and_clean(value: dict[Any, Any], limits: SecurityLimits) -> bool:
    """The fast path: a small dict of scalars whose keys need no second look."""
    if len(value) > limits.max_items or limits.max_depth < 1:
        return False
    max_key_length = limits.max_key_length
    for key, item in value.items():
        if (
            item.__class__ not in _SCALARS
            or key.__class__ is not str
            or len(key) > max_key_length
            or key in DANGEROUS_KEYS
            or key[:1] == "_"
        ):
            return False
    return True


# A location is built only as a linked pair (parent, key-or-index) while walking; the field
# path string is produced only when something is refused.
_Location = tuple[Any, str | int] | None


def _walk(root: Any, limits: SecurityLimits, path: str) -> None:
    max_depth = limits.max_depth
    max_key_length = limits.max_key_length
    max_items = limits.max_items
    items = 0
    stack: list[tuple[Any, int, _Location]] = [(root, 1, None)]
    while stack:
        value, depth, where = stack.pop()
        if depth > max_depth:
            _refuse(path, where, "too_deep", max_depth, f"Input nested deeper than {max_depth}")
        items += len(value)
        if items > max_items:
            _refuse(path, where, "too_many_items", max_items,
                    f"Input has more than {max_items} keys and items")  # fmt: skip
        if isinstance(value, dict):
            for key, item in value.items():
                # Cheap screen first (a 1-char slice is a cached string: no allocation); the
                # exact rules run only for keys that look suspicious.
                if key.__class__ is str:
                    if len(key) > max_key_length or key[:1] == "_" or key in DANGEROUS_KEYS:
                        _check_key(key, limits, path, where)
                elif isinstance(key, str):
                    _check_key(key, limits, path, where)
                if item.__class__ not in _SCALARS and isinstance(item, _CONTAINERS):
                    stack.append((item, depth + 1, (where, key)))
        else:
            for index, item in enumerate(value):
                if item.__class__ not in _SCALARS and isinstance(item, _CONTAINERS):
                    stack.append((item, depth + 1, (where, index)))


def _check_key(key: str, limits: SecurityLimits, path: str, where: _Location) -> None:
    if is_dangerous_key(key):
        _refuse(path, (where, key), "dangerous_key", None, f"Key not allowed: {key!r}")
    if len(key) > limits.max_key_length:
        _refuse(path, (where, key[:32] + "..."), "key_too_long", limits.max_key_length,
                f"Key longer than {limits.max_key_length} characters")  # fmt: skip


def _field(path: str, where: _Location) -> str:
    segments: list[str | int] = []
    while where is not None:
        where, segment = where
        segments.append(segment)
    out = path
    for segment in reversed(segments):
        if isinstance(segment, int):
            out = f"{out}[{segment}]"
        else:
            out = f"{out}.{segment}" if out else str(segment)
    return out or "payload"


def _refuse(path: str, where: _Location, reason: str, limit: int | None, message: str) -> NoReturn:
    field = _field(path, where)
    raise SecurityError(
        f"{message} (at {field})",
        details={"field": field, "reason": reason, "limit": limit},
    )
