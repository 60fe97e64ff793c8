"""The execution service's side of completion webhooks.

A request naming a ``webhook`` is checked before its run is accepted (a secret is configured,
the mode is async or stream, the URL is http(s) and every address it names or resolves to is
public unless its host is in ``webhook_allowed_hosts``); its delivery is written to the outbox
before the run can end; when the run ends the delivery is made due and the deliverer (web
layer) is woken. Runs that end elsewhere (another process, a crash then recovery) are found by
the deliverer's sweep of waiting deliveries.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from nexus_aio.errors import ValidationError
from nexus_aio.stores.webhooks import Delivery, WebhookOutbox
from nexus_aio.webhooks import WebhookSecret, address_refusal, is_ip_literal, target_of

__all__ = ["WEBHOOK_MODES", "Webhooks"]

log = logging.getLogger("nexus_aio.webhooks")

WEBHOOK_MODES = ("async", "stream")
RESOLVE_TIMEOUT = 5.0


def _refused(message: str, url: str) -> ValidationError:
    return ValidationError(message, details={"field": "webhook", "received": url[:200]})


class Webhooks:
    """Checks webhook targets, records deliveries and tells the deliverer when runs end."""

    def __init__(self, settings: Any, outbox: WebhookOutbox) -> None:
        self.outbox = outbox
        secret = settings.webhook_secret
        self.secret = WebhookSecret.parse(secret) if secret else None
        self.allowed_hosts = frozenset(
            host.strip().strip("[]").rstrip(".").lower() for host in settings.webhook_allowed_hosts
        )
        self.expecting: set[str] = set()  # this process's runs whose delivery waits for them
        self.wake = asyncio.Event()  # set when a delivery became due
        self._tasks: set[asyncio.Task[None]] = set()

    def allowed(self, host: str) -> bool:
        return host in self.allowed_hosts

    def check(self, url: object, mode: str) -> str:
        """The URL when a run may name it as its webhook, else a 400 saying why (no I/O)."""
        if self.secret is None:
            raise ValidationError(
                "webhooks need the server setting webhook_secret (whsec_<base64>) to sign "
                "deliveries; none is configured",
                details={"field": "webhook", "expected": "a server with webhook_secret"},
            )
        if mode not in WEBHOOK_MODES:
            raise ValidationError(
                f"webhook applies to async and stream runs, not {mode}",
                details={"field": "webhook", "expected": "mode async or stream", "received": mode},
            )
        _, host, _ = target_of(url)
        assert isinstance(url, str)
        if not self.allowed(host) and is_ip_literal(host):
            reason = address_refusal(host)
            if reason is not None:
                raise _refused(f"webhook target refused: {reason}", url)
        return url

    async def check_resolved(self, url: str) -> None:
        """Refuse a host name that resolves to a non-public address (or does not resolve)."""
        _, host, port = target_of(url)
        if self.allowed(host) or is_ip_literal(host):
            return
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            raise _refused(f"webhook host {host!r} does not resolve: {exc}", url) from None
        for info in infos:
            reason = address_refusal(str(info[4][0]))
            if reason is not None:
                raise _refused(f"webhook target refused: {host} resolves to {reason}", url)

    async def register(self, execution_id: str, url: str) -> None:
        """Write the delivery (``waiting``) before the run is handed on."""
        await self.outbox.add(Delivery(execution_id, url, time.time()))
        self.expecting.add(execution_id)

    async def abandon(self, execution_id: str) -> None:
        """The run was not accepted after all (queue full...): nothing will be delivered."""
        self.expecting.discard(execution_id)
        delivery = await self.outbox.get(execution_id)
        if delivery is not None and delivery.state == "waiting":
            delivery.state, delivery.last_error = "failed", "the run was not accepted"
            await self.outbox.attempted(delivery)

    def finished(self, execution_id: str) -> None:
        """A run of this process ended: make its delivery due (soon after the final save)."""
        if execution_id not in self.expecting:
            return
        self.expecting.discard(execution_id)
        task = asyncio.get_running_loop().create_task(self.ready(execution_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ready(self, execution_id: str) -> None:
        try:
            if await self.outbox.ready(execution_id, time.time()):
                self.wake.set()
        except Exception:  # the sweep will find it
            log.warning("could not mark the webhook of %s due", execution_id, exc_info=True)
