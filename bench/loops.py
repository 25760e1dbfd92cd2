"""Stand-in loops for `bench.daemon`, named in vigil.yaml as `bench.loops:Idle`.

vigil has no built-in loops yet (they come with later issues). These stand in for them so
the idle daemon is measured with a realistic set: each one is named and timed by its
options, and each iteration is one cheap store read, as an idle queue or scheduler does.
"""

from __future__ import annotations

from vigil.daemon import extension


class Idle(extension.ExtensionLoop):
    """Reads the run counts once an iteration and keeps nothing."""

    default_name = "idle"

    async def iterate(self) -> None:
        await self.context.store.count_runs_by_status()
