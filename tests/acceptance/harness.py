"""Drive the real `vigil` CLI as a user does: a process per command, on a real instance."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "pipelines.py"
TEST_JOBS = REPO / "tests" / "acceptance" / "jobs.py"
COMMAND_TIMEOUT = 60


@dataclasses.dataclass
class Instance:
    """A vigil instance in a temp dir; `vigil(...)` runs the CLI against it."""

    home: pathlib.Path
    cwd: pathlib.Path
    env: dict[str, str]

    def write_config(self, text: str) -> None:
        (self.home / "vigil.yaml").write_text(text)

    def vigil(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vigil", *args],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def ok(self, *args: str) -> str:
        result = self.vigil(*args)
        assert result.returncode == 0, f"vigil {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout

    def show(self, run_id: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.ok("run", "show", run_id, "--json"))
        return data

    def wait_until(
        self, run_id: str, done: Callable[[dict[str, Any]], bool], deadline: float = 30.0
    ) -> dict[str, Any]:
        """Poll `run show` until `done(run)` holds; fail with the last state at the deadline."""
        end = time.monotonic() + deadline
        while True:
            run = self.show(run_id)
            if done(run):
                return run
            assert time.monotonic() < end, f"run never reached the expected state: {run}"


def base_env(home: pathlib.Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    keep["VIGIL_HOME"] = str(home)
    keep["PYTHONPATH"] = str(REPO)
    return keep


def workspace_yaml() -> str:
    return (
        "workspace:\n"
        f"  - name: examples\n    file: {EXAMPLES}\n"
        f"  - name: testjobs\n    file: {TEST_JOBS}\n"
    )


IMMEDIATE = "run_coordinator:\n  type: immediate\n"


def store_yaml(url: Any | None) -> str:
    """The store section for SQLite (None) or for a PostgreSQL sqlalchemy URL."""
    if url is None:
        return ""
    return (
        "store:\n  kind: postgres\n  postgres:\n"
        f"    host: {url.host}\n    port: {url.port}\n"
        f"    user: {url.username}\n    database: {url.database}\n"
    )


def run_id_of(output: str) -> str:
    """The run id printed first by `vigil run launch`."""
    return output.split()[0]
