"""Contract suites for store implementations: one test class per store interface.

A store author subclasses the contract of the interface the store implements and provides one
fixture, ``store``, that yields the store opened and empty; it may take the contract's ``clock``
fixture (a :class:`ManualClock`) and should pass it to a store that accepts a clock::

    class TestMyExecutionStore(ExecutionStoreContract):
        @pytest.fixture
        async def store(self, clock):
            async with opened(MyExecutionStore(url, clock=clock)) as store:
                yield store

Every test of the contract then runs against that store (``from nexus_aio.testing import
ExecutionStoreContract, opened``). The tests are coroutines marked ``asyncio``; in
pytest-asyncio's strict mode decorate the fixture with ``pytest_asyncio.fixture``.

A store that reads time from the ``clock`` fixture also subclasses
``SessionExpiryContract`` (the session cases that move the clock past an expiry); a store
that keeps time by a server's clock (Redis TTLs) tests expiry in real time instead. The
abilities a store declares itself (``live_events``, ``cross_process_lock``) select which
behaviour the contract expects, and each contract lists its other declarations.
"""

from nexus_aio.testing.contracts.base import T0, ManualClock, StoreContract, opened
from nexus_aio.testing.contracts.executions import ExecutionStoreContract
from nexus_aio.testing.contracts.ratelimit import RateLimitBackendContract
from nexus_aio.testing.contracts.schedules import ScheduleStoreContract
from nexus_aio.testing.contracts.sessions import SessionExpiryContract, SessionStoreContract
from nexus_aio.testing.contracts.webhooks import WebhookOutboxContract

__all__ = [
    "T0",
    "ExecutionStoreContract",
    "ManualClock",
    "RateLimitBackendContract",
    "ScheduleStoreContract",
    "SessionExpiryContract",
    "SessionStoreContract",
    "StoreContract",
    "WebhookOutboxContract",
    "opened",
]
