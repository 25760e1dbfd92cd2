"""The instance store: the `Store` interface, its SQL implementation, and its schema.

store = await storage.open_store(storage.StoreTarget(url))
try:
    ...
finally:
    await store.close()
"""

from __future__ import annotations

from vigil.storage.engine import SchemaStatus, StoreTarget, migrate, open_store, schema_status
from vigil.storage.store import (
    Admit,
    Heartbeat,
    Launch,
    RunFilter,
    RunUpdate,
    Store,
    Wakeups,
)

__all__ = [
    "Admit",
    "Heartbeat",
    "Launch",
    "RunFilter",
    "RunUpdate",
    "SchemaStatus",
    "Store",
    "StoreTarget",
    "Wakeups",
    "migrate",
    "open_store",
    "schema_status",
]
