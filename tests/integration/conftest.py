"""What the integration tests share: an opened store on each database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from vigil import storage
from vigil.storage import sql


@pytest.fixture
async def store(store_target: storage.StoreTarget) -> AsyncIterator[sql.SqlStore]:
    opened = await storage.open_store(store_target)
    yield opened
    await opened.close()
