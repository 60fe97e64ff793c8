"""Moving JSON Schema ``$defs`` around: to the root of a schema, or into OpenAPI components.

A pydantic model's JSON Schema carries its nested models in ``$defs`` with ``#/$defs/Name``
references. Embedded in a larger schema (``list[Model]``, one property of the inputs object) those
``$defs`` must move to the root for the references to resolve; in the OpenAPI document they become
``components/schemas`` with the references rewritten. Two different definitions with one name are
kept apart by renaming the later one (``Address2``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["LOCAL_PREFIX", "has_defs", "hoist_defs", "hoist_to_root", "inline_refs"]

LOCAL_PREFIX = "#/$defs/"


def has_defs(schema: Any) -> bool:
    """Whether ``$defs`` appear anywhere in ``schema``."""
    if isinstance(schema, dict):
        return "$defs" in schema or any(has_defs(v) for v in schema.values())
    if isinstance(schema, list):
        return any(has_defs(v) for v in schema)
    return False


def hoist_defs(
    schema: dict[str, Any],
    existing: Mapping[str, Any],
    prefix: str,
    add: Callable[[str, dict[str, Any]], object],
) -> dict[str, Any]:
    """A copy of ``schema`` without nested ``$defs``: each definition goes to ``add(name, def)``
    (under a new name if ``existing`` holds a different one), and ``#/$defs/<name>`` references
    become ``<prefix><new name>``."""
    schema = copy.deepcopy(schema)
    _hoist(schema, existing, prefix, add, {})
    return schema


def _hoist(
    node: Any,
    existing: Mapping[str, Any],
    prefix: str,
    add: Callable[[str, dict[str, Any]], object],
    added: dict[str, Any],
) -> None:
    if isinstance(node, list):
        for item in node:
            _hoist(item, existing, prefix, add, added)
        return
    if not isinstance(node, dict):
        return
    local = node.pop("$defs", None)
    for key, value in node.items():
        if key != "$ref":
            _hoist(value, existing, prefix, add, added)
    if not isinstance(local, dict):
        return
    for definition in local.values():
        _hoist(definition, existing, prefix, add, added)
    # A name is reused when the definition already there is the same once its references are
    # rewritten; those depend on the other names chosen, so repeat until the choice settles.
    renames = {name: name for name in local}
    for _ in range(len(local) + 1):
        chosen = {
            name: _free_name(name, d, renames, existing, added, prefix) for name, d in local.items()
        }
        if chosen == renames:
            break
        renames = chosen
    for definition in local.values():
        _rewrite(definition, renames, prefix)
    _rewrite(node, renames, prefix)
    for name, definition in local.items():
        new = renames[name]
        if new not in added and new not in existing:
            added[new] = definition
            add(new, definition)


def _free_name(
    name: str,
    definition: Any,
    renames: dict[str, str],
    existing: Mapping[str, Any],
    added: dict[str, Any],
    prefix: str,
) -> str:
    """``name``, or ``name2``, ``name3``... : the first not holding a different definition."""
    rewritten = copy.deepcopy(definition)
    _rewrite(rewritten, renames, prefix)
    candidate, n = name, 1
    while True:
        known = added.get(candidate, existing.get(candidate))
        if known is None or known == rewritten:
            return candidate
        n += 1
        candidate = f"{name}{n}"


def _rewrite(node: Any, renames: dict[str, str], prefix: str) -> None:
    if isinstance(node, list):
        for item in node:
            _rewrite(item, renames, prefix)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            node[key] = _target(value, renames, prefix)
        elif key == "discriminator" and isinstance(value, dict):
            mapping = value.get("mapping")
            if isinstance(mapping, dict):
                for tag, ref in mapping.items():
                    if isinstance(ref, str):
                        mapping[tag] = _target(ref, renames, prefix)
        else:
            _rewrite(value, renames, prefix)


def _target(ref: str, renames: dict[str, str], prefix: str) -> str:
    if ref.startswith(LOCAL_PREFIX):
        name = ref[len(LOCAL_PREFIX) :]
        if name in renames:
            return prefix + renames[name]
    return ref


def hoist_to_root(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every nested ``$defs`` gathered into one ``$defs`` at its root (the same
    object when it has none)."""
    if not has_defs(schema):
        return schema
    defs: dict[str, Any] = {}
    out = hoist_defs(schema, {}, LOCAL_PREFIX, defs.__setitem__)
    out["$defs"] = defs
    return out


def inline_refs(schema: Any) -> Any:
    """A copy of ``schema`` with its ``#/$defs/...`` references replaced by the definitions (a
    recursive reference stops at ``{"type": "object", "title": name}``), for the compact
    ``/schema`` description."""
    defs = schema.get("$defs", {}) if isinstance(schema, dict) else {}
    return _inline(schema, defs, frozenset())


def _inline(node: Any, defs: dict[str, Any], seen: frozenset[str]) -> Any:
    if isinstance(node, list):
        return [_inline(v, defs, seen) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(LOCAL_PREFIX):
        name = ref[len(LOCAL_PREFIX) :]
        siblings = {k: _inline(v, defs, seen) for k, v in node.items() if k != "$ref"}
        if name in seen or name not in defs:
            return {"type": "object", "title": name, **siblings}
        return {**_inline(defs[name], defs, seen | {name}), **siblings}
    return {k: _inline(v, defs, seen) for k, v in node.items() if k != "$defs"}
