"""A launcher that wraps the subprocess launcher; its first launch hangs after starting
the worker.

The worker exists and runs, but `launch` does not return: the queued coordinator's
`launch_timeout` runs out in the middle of a launch that did happen. The first launch of a
test is the one that creates the marker file (O_EXCL, with the run id and worker pid);
`MARKER.over` appears once the coordinator's timeout has ended the hang.
Everything else is the subprocess launcher's.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any, ClassVar

import anyio
import pydantic

from vigil import launchers, runs
from vigil.launchers import process


class HangingOptions(process.SubprocessOptions):
    marker: pathlib.Path
    hang: float = 600.0  # seconds; the coordinator's launch timeout ends it first


class HangingLauncher(launchers.RunLauncher):
    Options = HangingOptions
    supports_resume: ClassVar[bool] = launchers.SubprocessLauncher.supports_resume

    def __init__(self, options: pydantic.BaseModel, context: launchers.LaunchContext) -> None:
        super().__init__(options, context)
        assert isinstance(options, HangingOptions)
        self._opts = options
        inner = process.SubprocessOptions(**options.model_dump(exclude={"marker", "hang"}))
        self._inner = launchers.SubprocessLauncher(inner, context)

    async def launch(self, run: runs.Run) -> Mapping[str, Any]:
        info = await self._inner.launch(run)
        if _first_launch(self._opts.marker, {"run_id": run.run_id, "pid": info["pid"]}):
            try:
                await anyio.sleep(self._opts.hang)
            finally:  # the coordinator's launch timeout ended the hang
                os.close(os.open(f"{self._opts.marker}.over", os.O_WRONLY | os.O_CREAT, 0o644))
        return info

    async def resume(self, run: runs.Run) -> Mapping[str, Any]:
        return await self._inner.resume(run)

    async def terminate(self, run: runs.Run) -> bool:
        return await self._inner.terminate(run)

    async def kill(self, run: runs.Run) -> bool:
        return await self._inner.kill(run)

    async def check_worker_health(self, run: runs.Run) -> launchers.HealthCheck:
        return await self._inner.check_worker_health(run)

    async def wait_for_exits(self) -> None:
        await self._inner.wait_for_exits()

    async def close(self) -> None:
        await self._inner.close()


def _first_launch(marker: pathlib.Path, record: Mapping[str, Any]) -> bool:
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)
    return True
