"""Skip these tests where the plugin is not installed (core-only CI); an aiohttp client."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

import aiohttp
import pytest

if importlib.util.find_spec("nexus_aio_otel") is None:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
