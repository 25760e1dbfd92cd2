"""A launcher that starts no worker and, for one run key, never returns from `launch`.

The scheduler tests use it to hold the daemon in the middle of a tick (a run submitted, the
next one being launched) so that they can SIGKILL it exactly there.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import anyio
import pydantic

from vigil import launchers, runs


class StallingOptions(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    stall_on_key_suffix: str | None = None
    marker: pathlib.Path | None = None


class StallingLauncher(launchers.RunLauncher):
    Options = StallingOptions

    async def launch(self, run: runs.Run) -> Mapping[str, Any]:
        opts = self.options
        assert isinstance(opts, StallingOptions)
        suffix = opts.stall_on_key_suffix
        if suffix and run.run_key is not None and run.run_key.endswith(suffix):
            if opts.marker is not None:
                opts.marker.write_text(run.run_id)
            await anyio.sleep_forever()
        return {"launcher": "stalling"}

    async def terminate(self, run: runs.Run) -> bool:
        return False

    async def check_worker_health(self, run: runs.Run) -> launchers.HealthCheck:
        return launchers.HealthCheck(launchers.WorkerHealth.UNKNOWN, "starts no worker")
