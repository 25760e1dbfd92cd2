"""A user's own launcher, written only against the RunLauncher interface.

It starts the ordinary `vigil worker run` process but also records every call in a file,
so tests can show that vigil drives a custom launcher through the interface alone.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import psutil
import pydantic

from vigil import launchers, runs


class RecordingOptions(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    note: str = ""
    record_to: pathlib.Path | None = None


class RecordingLauncher(launchers.RunLauncher):
    Options = RecordingOptions

    def _record(self, verb: str, run: runs.Run) -> None:
        opts = self.options
        assert isinstance(opts, RecordingOptions)
        if opts.record_to is not None:
            with opts.record_to.open("a") as fh:
                fh.write(json.dumps({"verb": verb, "run_id": run.run_id, "note": opts.note}) + "\n")

    async def launch(self, run: runs.Run) -> Mapping[str, Any]:
        self._record("launch", run)
        env = {**self.context.environ, "VIGIL_HOME": str(self.context.home)}
        child = subprocess.Popen(  # noqa: ASYNC220 - a fork+exec, it does not block
            [sys.executable, "-m", "vigil", "worker", "run", run.run_id],
            env=env,
            cwd=self.context.working_directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return {"launcher": "recording", "pid": child.pid}

    async def terminate(self, run: runs.Run) -> bool:
        self._record("terminate", run)
        try:
            psutil.Process(int(run.launcher_info["pid"])).terminate()
        except (KeyError, psutil.NoSuchProcess):
            return False
        return True

    async def check_worker_health(self, run: runs.Run) -> launchers.HealthCheck:
        self._record("check", run)
        return launchers.HealthCheck(launchers.WorkerHealth.UNKNOWN, "recording launcher")
