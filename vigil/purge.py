"""A purge: ended runs removed batch by batch, rows first, then their files.

Shared by the daemon's retention loop and `vigil instance purge`. Each batch is one store
transaction (`purge_runs`, which journals the run ids), then the runs' directories under
the compute logs and outputs roots are removed in a worker thread, then the journal
entries are dropped. `leftovers` first removes the files of runs a purge stopped between
the two (a killed process), so nothing is left behind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import anyio.to_thread

from vigil import blobs, retention
from vigil.config import settings as settings_mod
from vigil.storage import store as store_mod

JOURNAL_BATCH = 500  # journal entries read at a time


@dataclasses.dataclass(frozen=True, slots=True)
class Purger:
    """Purges through `store`, removing run directories under `roots`."""

    store: store_mod.RetentionStore
    roots: tuple[blobs.Root, ...]

    async def leftovers(self) -> retention.Purged:
        """Remove the files of every run purged before whose files may remain."""
        removed = 0
        while True:
            run_ids = await self.store.purged_files_pending(JOURNAL_BATCH)
            removed += await self._remove(run_ids)
            if len(run_ids) < JOURNAL_BATCH:
                return retention.Purged(files=removed)

    async def batch(self, rule: retention.Rule, now: float) -> retention.Purged:
        """Purge one batch of runs (at most `rule.batch_size`) and their files."""
        batch = await self.store.purge_runs(rule, now)
        files = await self._remove(batch.run_ids)
        return retention.Purged(len(batch.run_ids), batch.events, files)

    async def _remove(self, run_ids: Sequence[str]) -> int:
        if not run_ids:
            return 0
        removed = await anyio.to_thread.run_sync(retention.remove_files, run_ids, self.roots)
        await self.store.forget_purged(run_ids)
        return removed


def roots(settings: settings_mod.InstanceSettings) -> tuple[blobs.Root, ...]:
    """Where a run's files may be: its compute logs (at `logs_dir`, and on this machine
    when `logs_dir` is a URL) and its outputs."""
    logs = blobs.open_root(settings.compute_logs_url, "logs_dir")
    outputs = blobs.open_root(settings.outputs_url, "storage_dir")
    if logs.is_local:
        return (logs, outputs)
    return (logs, blobs.LocalRoot(settings.compute_logs_dir), outputs)


def is_full(purged: retention.Purged, rule: retention.Rule) -> bool:
    """Whether a batch took all it could: more runs may be waiting to go."""
    return purged.runs >= rule.batch_size
