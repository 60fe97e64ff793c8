"""The webhook outbox contract, run against the memory and SQLite outboxes."""

from __future__ import annotations

import pytest

from nexus_aio.stores.sqlite_webhooks import SQLiteWebhookOutbox
from nexus_aio.stores.webhooks import Delivery, MemoryWebhookOutbox
from nexus_aio.testing import WebhookOutboxContract, opened
from nexus_aio.testing.contracts.base import T0


class TestMemoryWebhookOutbox(WebhookOutboxContract):
    @pytest.fixture
    async def store(self):
        async with opened(MemoryWebhookOutbox()) as store:
            yield store


class TestSQLiteWebhookOutbox(WebhookOutboxContract):
    @pytest.fixture
    async def store(self, tmp_path):
        async with opened(SQLiteWebhookOutbox(str(tmp_path / "nexus.db"))) as store:
            yield store


async def test_the_sqlite_outbox_survives_a_reopen(tmp_path):
    path = str(tmp_path / "nexus.db")
    async with opened(SQLiteWebhookOutbox(path)) as store:
        await store.add(Delivery("wf-1", "https://example.com/h", T0))
        await store.ready("wf-1", T0)
    async with opened(SQLiteWebhookOutbox(path)) as store:
        (claimed,) = await store.claim(T0, 10, 30)
        assert (claimed.execution_id, claimed.state) == ("wf-1", "pending")


async def test_the_memory_outbox_drops_finished_deliveries_first_when_full():
    store = MemoryWebhookOutbox(max_entries=2)
    await store.add(Delivery("wf-old", "https://example.com/h", T0, state="delivered"))
    await store.add(Delivery("wf-a", "https://example.com/h", T0))
    await store.add(Delivery("wf-b", "https://example.com/h", T0))
    assert await store.get("wf-old") is None
    assert await store.get("wf-a") is not None and await store.get("wf-b") is not None
