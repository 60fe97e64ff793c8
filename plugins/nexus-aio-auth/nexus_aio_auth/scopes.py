"""Which scope an action needs: one small table, so the policy can be read at a glance.

==================  ==========================================================
action              granted by
==================  ==========================================================
``execute``         ``execute:<workflow>``, ``execute:*``
``batch``           any ``execute:...`` scope (each item is then checked alone)
``cancel``/``delete``  ``write`` or any ``execute:...`` scope (the core lets an actor cancel
                    only its own runs: ``execute:<workflow>`` cancels the runs it started)
anything else       ``read``, ``read:<resource>`` (list, schemas, plugins, ...)
==================  ==========================================================

The scope ``*`` grants everything (configured API keys carry it). An actor without a
``scopes`` list has no scopes: the policy fails closed.
"""

from __future__ import annotations

from typing import Any

ALL = "*"
WRITE_ACTIONS = frozenset({"cancel", "delete"})


def actor_scopes(actor: Any) -> tuple[str, ...]:
    scopes = actor.get("scopes") if isinstance(actor, dict) else getattr(actor, "scopes", None)
    if isinstance(scopes, str):
        return tuple(scopes.split())
    return tuple(scopes) if scopes else ()


def scope_allows(scopes: Any, action: str, resource: str | None) -> bool:
    """Whether ``scopes`` (an iterable of strings) grant ``action`` on ``resource``."""
    if ALL in scopes:
        return True
    if action == "execute":
        return "execute:*" in scopes or (resource is not None and f"execute:{resource}" in scopes)
    if action == "batch":
        return any(s.startswith("execute:") for s in scopes)
    if action in WRITE_ACTIONS:
        return "write" in scopes or any(s.startswith("execute:") for s in scopes)
    return "read" in scopes or (resource is not None and f"read:{resource}" in scopes)


def actor_allowed(actor: Any, action: str, resource: str | None) -> bool:
    """The policy for an authenticated actor (see the table above)."""
    return scope_allows(actor_scopes(actor), action, resource)
