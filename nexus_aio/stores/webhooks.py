"""The webhook outbox: one completion delivery per execution that named a ``webhook``.

A delivery is written when its run is accepted (``waiting``), becomes ``pending`` when the run
ends, and ``delivered`` or ``failed`` after its attempts. Deliverers ``claim`` due deliveries
under a lease, so processes sharing the outbox (``--workers``, instances on Redis) never send
one attempt twice, and a deliverer that dies leaves its claims to the next after the lease.
Implementations: :class:`MemoryWebhookOutbox` here, SQLite (same file as the executions) and
Redis (the plugin); ``nexus_aio.testing.contracts.WebhookOutboxContract`` checks them all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["FINAL_STATES", "STATES", "Delivery", "MemoryWebhookOutbox", "WebhookOutbox"]

STATES = ("waiting", "pending", "delivered", "failed")
FINAL_STATES = frozenset({"delivered", "failed"})


@dataclass(slots=True)
class Delivery:
    """The completion delivery of one execution and the outcome of its attempts so far."""

    execution_id: str
    url: str
    created_at: float
    state: str = "waiting"
    attempts: int = 0
    next_at: float | None = None  # when the next attempt is due (pending only)
    last_status: int | None = None  # HTTP status of the last answer (None: no answer)
    last_error: str | None = None
    delivered_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``webhook`` section of ``GET /executions/{id}``."""
        data: dict[str, Any] = {
            "url": self.url,
            "state": self.state,
            "attempts": self.attempts,
            "last_status": self.last_status,
        }
        if self.last_error is not None:
            data["last_error"] = self.last_error
        if self.state == "pending" and self.next_at is not None:
            data["next_attempt_at"] = self.next_at
        if self.delivered_at is not None:
            data["delivered_at"] = self.delivered_at
        return data


class WebhookOutbox(ABC):
    """Durable storage of deliveries (see the module docstring)."""

    async def open(self) -> None:  # noqa: B027 - optional for stores with nothing to open
        """Connect / create tables."""

    async def close(self) -> None:  # noqa: B027
        """Release connections."""

    @abstractmethod
    async def add(self, delivery: Delivery) -> None:
        """Store a new delivery (``waiting``); an existing one for the execution is replaced."""

    @abstractmethod
    async def ready(self, execution_id: str, now: float) -> bool:
        """The run ended: a ``waiting`` delivery becomes ``pending``, due ``now``. False if there
        is none waiting (no webhook, or already made ready)."""

    @abstractmethod
    async def waiting(self, limit: int) -> list[str]:
        """Execution ids of ``waiting`` deliveries, oldest first (for the sweeper that readies
        those whose run ended without telling: a crash, another process)."""

    @abstractmethod
    async def claim(self, now: float, limit: int, lease: float) -> list[Delivery]:
        """Up to ``limit`` pending deliveries due by ``now`` and not claimed by anyone whose
        lease still runs; each is claimed for ``lease`` seconds."""

    @abstractmethod
    async def attempted(self, delivery: Delivery) -> None:
        """Store the outcome of an attempt (state, attempts, next_at, last status and error,
        delivered_at) and release the claim."""

    @abstractmethod
    async def get(self, execution_id: str) -> Delivery | None:
        """The delivery of an execution, if it named a webhook."""

    @abstractmethod
    async def purge(self, finished_before: float) -> int:
        """Drop delivered and failed deliveries created before ``finished_before``."""


class MemoryWebhookOutbox(WebhookOutbox):
    """In-process outbox for ``database=":memory:"``; at most ``max_entries`` deliveries (the
    oldest finished ones go first; unfinished ones are never dropped)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, Delivery] = OrderedDict()
        self._leases: dict[str, float] = {}

    async def add(self, delivery: Delivery) -> None:
        self._items.pop(delivery.execution_id, None)
        self._items[delivery.execution_id] = replace(delivery)
        if len(self._items) > self.max_entries:
            for key in [k for k, d in self._items.items() if d.state in FINAL_STATES]:
                del self._items[key]
                if len(self._items) <= self.max_entries:
                    break

    async def ready(self, execution_id: str, now: float) -> bool:
        item = self._items.get(execution_id)
        if item is None or item.state != "waiting":
            return False
        item.state, item.next_at = "pending", now
        return True

    async def waiting(self, limit: int) -> list[str]:
        return [k for k, d in self._items.items() if d.state == "waiting"][:limit]

    async def claim(self, now: float, limit: int, lease: float) -> list[Delivery]:
        due = [
            d
            for d in self._items.values()
            if d.state == "pending"
            and d.next_at is not None
            and d.next_at <= now
            and self._leases.get(d.execution_id, 0.0) <= now
        ]
        due.sort(key=lambda d: d.next_at or 0.0)
        for item in due[:limit]:
            self._leases[item.execution_id] = now + lease
        return [replace(d) for d in due[:limit]]

    async def attempted(self, delivery: Delivery) -> None:
        self._leases.pop(delivery.execution_id, None)
        if delivery.execution_id in self._items:
            self._items[delivery.execution_id] = replace(delivery)

    async def get(self, execution_id: str) -> Delivery | None:
        item = self._items.get(execution_id)
        return None if item is None else replace(item)

    async def purge(self, finished_before: float) -> int:
        gone = [
            k
            for k, d in self._items.items()
            if d.state in FINAL_STATES and d.created_at < finished_before
        ]
        for key in gone:
            del self._items[key]
        return len(gone)
