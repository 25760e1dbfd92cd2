"""The store under test, on each database of the `store_target` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from vigil import storage
from vigil.storage import sql


@pytest.fixture
async def store(store_target: storage.StoreTarget) -> AsyncIterator[sql.SqlStore]:
    opened = await storage.open_store(store_target)
    try:
        yield opened
    finally:
        await opened.close()
