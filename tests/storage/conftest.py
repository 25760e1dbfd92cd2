"""The store under test, on each database of the `store_target` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from vigil import storage
from vigil.storage import sql


async def _opened(target: storage.StoreTarget) -> AsyncIterator[sql.SqlStore]:
    opened = await storage.open_store(target)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def store(store_target: storage.StoreTarget) -> AsyncIterator[sql.SqlStore]:
    async for opened in _opened(store_target):
        yield opened


@pytest.fixture
async def other_store(store_target: storage.StoreTarget) -> AsyncIterator[sql.SqlStore]:
    """A second store object on the same database: another engine, as in another daemon."""
    async for opened in _opened(store_target):
        yield opened
