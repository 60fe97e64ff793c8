"""Fixtures for the auth plugin tests: an HTTP client and token factories."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

if importlib.util.find_spec("nexus_aio_auth") is None:  # core-only CI: plugin not installed
    collect_ignore_glob = ["test_*.py"]

SECRET = "test-secret-that-is-long-enough-for-hs256!"
API_KEY = "key-0123456789abcdef"
OTHER_KEY = "key-fedcba9876543210"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_token() -> Callable[..., str]:
    """``make_token(scope, exp_in=60, **claims)``: an HS256 token signed with SECRET."""

    def make(
        scope: str | None = "execute:*",
        *,
        sub: str = "user-1",
        exp_in: float | None = 60,
        key: Any = SECRET,
        algorithm: str = "HS256",
        **claims: Any,
    ) -> str:
        import jwt

        payload: dict[str, Any] = {"sub": sub, **claims}
        if scope is not None:
            payload["scope"] = scope
        if exp_in is not None:
            payload["exp"] = int(time.time() + exp_in)
        return jwt.encode(payload, key, algorithm=algorithm)

    return make
