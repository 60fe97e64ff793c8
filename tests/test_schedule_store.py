"""The schedule store contract, run against the memory and SQLite stores."""

from __future__ import annotations

import pytest

from nexus_aio.stores.schedules import MemoryScheduleStore
from nexus_aio.stores.sqlite_schedules import SQLiteScheduleStore
from nexus_aio.testing import ScheduleStoreContract, opened


class TestMemoryScheduleStore(ScheduleStoreContract):
    @pytest.fixture
    async def store(self):
        async with opened(MemoryScheduleStore()) as store:
            yield store


class TestSQLiteScheduleStore(ScheduleStoreContract):
    @pytest.fixture
    async def store(self, tmp_path):
        async with opened(SQLiteScheduleStore(str(tmp_path / "nexus.db"))) as store:
            yield store
