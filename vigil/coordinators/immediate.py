"""The immediate coordinator: a submitted run is launched at once, in the caller."""

from __future__ import annotations

from vigil import runs
from vigil.coordinators import base


class ImmediateCoordinator(base.RunCoordinator):
    async def submit(self, run: runs.Run) -> runs.Run:
        stored = await self.store.add_run(run)
        base.log_submitted([stored])
        if run.not_before is not None and run.not_before > self.clock():
            return stored  # launched when due, by `launch_due`
        return await self.launch(stored)
