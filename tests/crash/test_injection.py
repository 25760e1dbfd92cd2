"""The crash-point harness itself (`inject/sitecustomize.py`): inert unless armed, refuses
a bad crash point loudly, counts only calls that did something, and kills a run worker
(not the daemon) whether workers are forked from the template or started afresh."""

from __future__ import annotations

import inspect
import pathlib
import signal
import subprocess
import sys
from typing import Any

import pytest

from tests.acceptance.harness import REPO, Instance, base_env
from tests.crash import harness
from tests.crash.inject import sitecustomize as injection
from tests.daemon.process import Daemons
from vigil import runs

pytestmark = pytest.mark.crash

PROBE = (
    "import sys, vigil.storage.sql as sql, vigil.worker.worker as worker\n"
    "print(sys.modules['sitecustomize'].__file__)\n"
    "print(hasattr(sql.SqlStore.start_run, '__wrapped__'))\n"
    "print(hasattr(worker.run_worker, '__wrapped__'))\n"
)


def probe(tmp_path: pathlib.Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A Python process with the harness on its path and `env`, importing the store."""
    base = base_env(tmp_path)
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**base, "PYTHONPATH": f"{harness.INJECT}:{REPO}", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_a_crash_point_nothing_is_wrapped(tmp_path: pathlib.Path) -> None:
    done = probe(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(harness.INJECT / "sitecustomize.py"), "False", "False"]


def test_a_crash_point_wraps_the_verb_and_the_worker(tmp_path: pathlib.Path) -> None:
    marker = str(tmp_path / "marker")
    done = probe(
        tmp_path, VIGIL_CRASH_AT="SqlStore.start_run:after:worker", VIGIL_CRASH_MARKER=marker
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1:] == ["True", "True"]


@pytest.mark.parametrize(
    ("crash_at", "marker", "error"),
    [
        ("SqlStore.start_run:during:worker", True, "expected Class.method:before|after"),
        ("SqlStore.start_run:after:cli", True, "expected Class.method:before|after"),
        ("SqlStore.start_run:after:worker", False, "VIGIL_CRASH_MARKER is not"),
        ("SqlStore.no_such_verb:after:worker", True, "SqlStore has no async no_such_verb"),
        ("NoStore.start_run:after:worker", True, "vigil.storage.sql has no class NoStore"),
    ],
)
def test_a_bad_crash_point_is_refused_loudly(
    tmp_path: pathlib.Path, crash_at: str, marker: bool, error: str
) -> None:
    env = {"VIGIL_CRASH_AT": crash_at}
    if marker:
        env["VIGIL_CRASH_MARKER"] = str(tmp_path / "marker")
    done = probe(tmp_path, **env)
    assert done.returncode != 0
    assert error in done.stderr


async def _verb(self: object, run_id: str, launcher_info: dict[str, Any]) -> None:
    """A stand-in for a store verb declared `-> None`."""


def _bound(run_id: str, launcher_info: dict[str, Any]) -> inspect.BoundArguments:
    return inspect.signature(_verb).bind(object(), run_id, launcher_info)


def test_an_after_crash_counts_only_calls_that_did_something() -> None:
    run = runs.Run(run_id="r1", job_name="jot", status=runs.RunStatus.STARTING)
    bound = _bound("r0", {"r2": {"pid": 1}})
    assert injection.did_something([run], bound, procedure=False)
    assert injection.did_something(True, bound, procedure=False)
    assert not injection.did_something([], bound, procedure=False)
    assert not injection.did_something(None, bound, procedure=False)
    assert not injection.did_something(False, bound, procedure=False)
    assert injection.did_something(None, bound, procedure=True)
    assert not injection.did_something(None, _bound("r0", {}), procedure=True)
    assert injection.run_ids_of([run], bound) == ["r0", "r1", "r2"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("prefork", [True, False], ids=["prefork", "popen"])
async def test_a_worker_crash_point_kills_the_worker_not_the_daemon(
    sqlite_instance: Instance, daemons: Daemons, tmp_path: pathlib.Path, prefork: bool
) -> None:
    instance = sqlite_instance
    launcher = (
        f"run_launcher:\n  type: subprocess\n  options: {{prefork: {str(prefork).lower()}}}\n"
    )
    harness.configure(instance, launcher=launcher)
    [run_id] = await harness.submit(instance, "jot", 1)
    spec = "SqlStore.start_run:after:worker"
    daemon = daemons.start(env=harness.daemon_env(tmp_path, spec))
    killed = await harness.read_marker(harness.crash_marker(tmp_path))
    assert (killed.role, killed.at, killed.run_ids) == ("worker", spec, (run_id,))
    assert killed.pid != daemon.pid
    await harness.wait_until_ended(instance, [run_id])
    assert daemon.process.poll() is None, daemon.log()
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0
