"""The instance store: the `Store` interface, its SQL implementation, and its schema.

store = await storage.open_store(storage.StoreTarget(url))
try:
    ...
finally:
    await store.close()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vigil.storage.engine import (
        SchemaStatus,
        StoreTarget,
        migrate,
        open_store,
        schema_status,
    )
    from vigil.storage.store import (
        Admit,
        Heartbeat,
        Launch,
        RunFilter,
        RunUpdate,
        Store,
        Wakeups,
    )

# Names re-exported from their module, imported on first use: `vigil.storage.store` (the
# protocols, plain data) must not pull in SQLAlchemy for the CLI's `--help`.
_HOMES = {
    **dict.fromkeys(
        ("SchemaStatus", "StoreTarget", "migrate", "open_store", "schema_status"), "engine"
    ),
    **dict.fromkeys(
        ("Admit", "Heartbeat", "Launch", "RunFilter", "RunUpdate", "Store", "Wakeups"), "store"
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'vigil.storage' has no attribute {name!r}")
    return getattr(importlib.import_module(f"vigil.storage.{home}"), name)


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
