"""The immediate coordinator: a submitted run is launched at once, in the caller."""

from __future__ import annotations

from vigil import runs
from vigil.coordinators import base


class ImmediateCoordinator(base.RunCoordinator):
    async def submit(self, run: runs.Run) -> runs.Run:
        return await self.launch(await self.store.add_run(run))
