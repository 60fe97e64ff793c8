"""The pieces every store contract shares: :class:`ManualClock`, :func:`opened` and
:class:`StoreContract` (the ``clock`` fixture)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator
from typing import Protocol, TypeVar

import pytest

__all__ = ["T0", "ManualClock", "StoreContract", "async_tests", "opened"]

T0 = 1_700_000_000.0
"""Where every :class:`ManualClock` starts: an epoch-sized time, as in production."""


class ManualClock:
    """A clock that moves only when told: ``clock()`` reads it, ``advance(s)`` or ``now = t``
    moves it. Stores take it where they take ``time.time``."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _Openable(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...


_S = TypeVar("_S", bound=_Openable)


@contextlib.asynccontextmanager
async def opened(store: _S) -> AsyncIterator[_S]:
    """``async with opened(store) as s:`` opens the store and always closes it afterwards."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()


_C = TypeVar("_C", bound=type)


def async_tests(cls: _C) -> _C:
    """Mark every coroutine test of ``cls`` ``asyncio`` (strict and auto mode alike), without a
    class-wide mark that would also catch a subclass's plain tests."""
    for name, member in vars(cls).items():
        if name.startswith("test_") and inspect.iscoroutinefunction(member):
            pytest.mark.asyncio(member)
    return cls


class StoreContract:
    """What the contracts share: the ``clock`` fixture the store under test reads time from."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()
