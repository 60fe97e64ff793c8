"""Completion webhooks: the deliverer (with ``webhook_secret``) and the end-of-run signal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nexus_aio.hookspecs import hookimpl
from nexus_aio.web.webhooks import deliverer_ctx

if TYPE_CHECKING:
    from nexus_aio.nexus import Nexus


@hookimpl
def register_cleanup_ctx(nexus: Nexus) -> list[Any] | None:
    return [deliverer_ctx] if nexus.settings.webhook_secret else None


@hookimpl
def execution_finished(nexus: Nexus, execution: Any, events: Sequence[Any]) -> None:
    """Make this run's delivery due (``events`` unused: taking every argument, this observer
    is called without a wrapper)."""
    service = nexus.service
    if service is not None:
        service.webhooks.finished(execution.id)
