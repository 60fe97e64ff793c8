"""The webhook deliverer: POSTs each finished execution's record to the URL its request named.

One task per serving process claims due deliveries from the outbox (a lease, so processes
sharing it never send one attempt twice), sends each as a Standard Webhooks message (the same
``webhook-id`` on every attempt, a fresh ``webhook-timestamp`` and signature) and stores the
outcome: delivered on a 2xx answer; otherwise, after a timeout, a connection error or any other
status, due again after ``webhook_initial_delay`` doubling up to ``webhook_max_delay``, until
``webhook_max_attempts``. A target refused by the SSRF guard at delivery (its name now resolves
to a private address) fails at once. Deliveries survive restarts: the outbox is the store's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from nexus_aio.stores.executions import TERMINAL
from nexus_aio.stores.webhooks import Delivery
from nexus_aio.version import __version__
from nexus_aio.web.keys import NEXUS
from nexus_aio.webhooks import address_refusal, is_ip_literal, message_id, target_of

if TYPE_CHECKING:
    from nexus_aio.execution.service import ExecutionService

__all__ = ["Deliverer", "GuardedResolver", "deliverer_ctx"]

log = logging.getLogger("nexus_aio.webhooks")

CONCURRENCY = 16  # deliveries in flight per process
POLL_INTERVAL = 0.25  # how often due retries are looked for when nothing wakes the deliverer
SWEEP_INTERVAL = 2.0  # how often waiting deliveries are checked against their runs
ORPHAN_AGE = 60.0  # a waiting delivery whose run never got a record is dropped after this
LEASE_MARGIN = 30.0


class RefusedTarget(OSError):
    """The SSRF guard refused the address a webhook host resolved to."""


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing names that resolve to a non-public address: the check and
    the connection use the same answer, so DNS cannot change between them."""

    def __init__(self, allowed: Callable[[str], bool]) -> None:
        self._allowed = allowed
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        if not self._allowed(host.rstrip(".").lower()):
            for result in results:
                reason = address_refusal(result["host"])
                if reason is not None:
                    raise RefusedTarget(f"{host} resolves to {reason}")
        return results

    async def close(self) -> None:
        await self._resolver.close()


class Deliverer:
    """Sends due deliveries for one serving process."""

    def __init__(self, service: ExecutionService, settings: Any) -> None:
        self.service = service
        self.webhooks = service.webhooks
        self.outbox = service.webhooks.outbox
        secret = service.webhooks.secret
        assert secret is not None, "the deliverer runs only with webhook_secret"
        self.secret = secret
        self.initial_delay = settings.webhook_initial_delay
        self.max_delay = settings.webhook_max_delay
        self.max_attempts = settings.webhook_max_attempts
        self.timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout)
        self.lease = settings.webhook_timeout + LEASE_MARGIN
        self.retention = settings.execution_retention_age
        self.inflight: set[asyncio.Task[None]] = set()
        self.http: aiohttp.ClientSession | None = None
        self.hooks = service.nexus.hooks
        self.observed = self.hooks.implemented("webhook_attempted")

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.webhooks.allowed), limit=CONCURRENCY
        )
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as self.http:
            next_sweep = 0.0
            while True:
                self.webhooks.wake.clear()
                try:
                    await self._claim()
                    if time.monotonic() >= next_sweep:
                        next_sweep = time.monotonic() + SWEEP_INTERVAL
                        await self._sweep()
                except Exception:  # a store hiccup: try again at the next round
                    log.warning("webhook deliverer round failed", exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.webhooks.wake.wait(), POLL_INTERVAL)

    async def _claim(self) -> None:
        room = CONCURRENCY - len(self.inflight)
        if room <= 0:
            return
        for delivery in await self.outbox.claim(time.time(), room, self.lease):
            task = asyncio.create_task(self.deliver(delivery))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)

    async def _sweep(self) -> None:
        """Make due the waiting deliveries whose run ended without telling this process."""
        now = time.time()
        for execution_id in await self.outbox.waiting(100):
            if self.service.live(execution_id) is not None:
                continue
            record = await self.service.executions.get(execution_id)
            if record is not None and record.status in TERMINAL:
                if await self.outbox.ready(execution_id, now):
                    self.webhooks.wake.set()
            elif record is None:
                delivery = await self.outbox.get(execution_id)
                if delivery is not None and now - delivery.created_at > ORPHAN_AGE:
                    await self.webhooks.abandon(execution_id)
        await self.outbox.purge(now - self.retention)

    def backoff(self, attempts: int) -> float:
        return float(min(self.initial_delay * 2 ** (attempts - 1), self.max_delay))

    async def deliver(self, delivery: Delivery) -> None:
        """One attempt; its outcome is stored whatever happens (short of cancellation)."""
        record = await self.service.get(delivery.execution_id)
        started = time.time()
        delivery.attempts += 1
        status, error, final = None, None, False
        if record is None:
            error, final = "the execution record no longer exists", True
        else:
            status, error, final = await self._post(delivery, orjson.dumps(record.to_dict()))
        now = time.time()
        delivery.last_status, delivery.last_error = status, error
        if status is not None and 200 <= status < 300:
            delivery.state, delivery.next_at, delivery.delivered_at = "delivered", None, now
            delivery.last_error = None
        elif final or delivery.attempts >= self.max_attempts:
            delivery.state, delivery.next_at = "failed", None
            log.warning(
                "webhook of %s failed after %d attempts: %s",
                delivery.execution_id,
                delivery.attempts,
                error,
            )
        else:
            delivery.next_at = now + self.backoff(delivery.attempts)
        await self.outbox.attempted(delivery)
        if self.observed:
            self.hooks.webhook_attempted(delivery, record, started, now)

    async def _post(self, delivery: Delivery, body: bytes) -> tuple[int | None, str | None, bool]:
        """``(status, error, final)`` of one POST; ``final``: never worth retrying."""
        assert self.http is not None
        _, host, _ = target_of(delivery.url)
        if is_ip_literal(host) and not self.webhooks.allowed(host):
            reason = address_refusal(host)
            if reason is not None:
                return None, f"target refused: {reason}", True
        msg_id = message_id(delivery.execution_id)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"nexus-aio/{__version__}",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.secret.sign(msg_id, timestamp, body),
        }
        try:
            async with self.http.post(
                delivery.url,
                data=body,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            ) as resp:
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedTarget):
                return None, f"target refused: {exc.os_error}", True
            return None, f"connection failed: {exc.os_error}", False
        except TimeoutError:
            return None, f"no answer within {self.timeout.total:g} s", False
        except aiohttp.ClientError as exc:
            return None, f"{type(exc).__name__}: {exc}", False
        return status, None if 200 <= status < 300 else f"HTTP {status}", False


async def deliverer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the deliverer while the app serves (only with ``webhook_secret``)."""
    nexus = app[NEXUS]
    service = nexus.service
    assert service is not None
    deliverer = Deliverer(service, nexus.settings)
    task = asyncio.create_task(deliverer.run(), name="nexus_aio.webhooks")
    try:
        yield
    finally:
        task.cancel()
        for running in list(deliverer.inflight):
            running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.gather(*deliverer.inflight, return_exceptions=True)
