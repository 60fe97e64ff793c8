"""Default permissions: with no auth plugin, everything is allowed (no opinion)."""

from __future__ import annotations

from typing import Any

from nexus_aio.hookspecs import hookimpl


@hookimpl(trylast=True)
def permission_allowed(nexus: Any, actor: Any, action: str, resource: str | None) -> bool | None:
    return None
