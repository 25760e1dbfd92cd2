"""How fast the run monitor handles a worker killed with SIGKILL, on the real processes.

Targets (issue 6): (a) a worker the daemon launched (its launcher's process lives, so the
worker's exit is told at once): the run handled within 1 s; (b) a worker launched by
another process that is gone by then (here this benchmark, with the immediate coordinator,
whose worker template exits when its launcher closes): found by the monitor's poll, at the
default `poll_interval` of 10 s, within 15 s.

"Handled" is the monitor's RUN_FAILURE event (`max_resume_attempts: 0`, so a dead worker
ends its run at once); the figure is that event's timestamp minus the moment just before
the SIGKILL, both read from this host's clock. Each mode runs `--runs` times (default 5)
on one daemon and prints the median and spread.

    python -m bench.monitor [--runs N] [--postgres] [--poll-interval S]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import anyio
import sqlalchemy as sa

from bench import common
from vigil import events, runs, submission
from vigil.storage import store as store_mod

S = runs.RunStatus
DEADLINE = 60.0
POLL = 0.02


def config_yaml(pg_url: sa.engine.URL | None, queued: bool, poll_interval: float) -> str:
    text = common.config_yaml(pg_url, immediate=not queued)
    if queued:
        text += "run_coordinator:\n  type: queued\n  options: {poll_interval: 0.1}\n"
    return text + (
        f"run_monitoring:\n  poll_interval: {poll_interval}\n  max_resume_attempts: 0\n"
        "http:\n  enabled: false\n"
    )


@contextlib.contextmanager
def daemon(home: pathlib.Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "VIGIL_HOME": str(home)}
    with (home / "daemon.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "vigil", "daemon", "run"],
            cwd=common.REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_for(store: store_mod.Store, run_id: str, done: set[runs.RunStatus]) -> runs.Run:
    with anyio.fail_after(DEADLINE):
        while (run := await store.get_run(run_id)).status not in done:  # noqa: ASYNC110 - another process
            await anyio.sleep(POLL)
    return run


async def one_kill(bench: common.Launcher, launcher_gone: bool) -> float:
    """Submit a hanging run, SIGKILL its worker once it runs; seconds until it is handled."""
    run = submission.new_run(bench.workspace, "hang", {}, {}, time.time())
    await bench.coordinator.submit(run)
    if launcher_gone:
        await bench.launcher.close()  # the worker template that forked the worker exits
    started = await wait_for(bench.store, run.run_id, {S.STARTED})
    assert started.worker_pid is not None
    killed_at = time.time()
    os.kill(started.worker_pid, signal.SIGKILL)
    await wait_for(bench.store, run.run_id, {S.FAILURE})
    [failure] = await bench.store.get_events(
        run.run_id, event_types=(events.EventType.RUN_FAILURE,)
    )
    if failure.data.get("by") != "monitor":
        raise SystemExit(f"run {run.run_id} was not ended by the monitor: {failure.message}")
    return failure.timestamp - killed_at


async def measure(home: pathlib.Path, launcher_gone: bool, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        bench = common.Launcher(home, dict(os.environ))
        async with bench.opened():
            samples.append(await one_kill(bench, launcher_gone))
    return samples


def mode(pg_url: sa.engine.URL | None, launcher_gone: bool, count: int, poll: float) -> str:
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        home = pathlib.Path(tmp)
        (home / "vigil.yaml").write_text(config_yaml(pg_url, not launcher_gone, poll))
        with daemon(home):
            time.sleep(2.0)  # the daemon's loops start
            samples = anyio.run(measure, home, launcher_gone, count)
    if launcher_gone:
        name = f"(b) launcher gone, poll_interval {poll:g} s (target 15 s)"
        return common.figures(f"SIGKILL -> run handled, {name}", samples, unit="s", scale=1.0)
    return common.figures("SIGKILL -> run handled, (a) launcher alive (target 1 s)", samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL store")
    parser.add_argument("--poll-interval", type=float, default=10.0)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        pg_url = stack.enter_context(common.postgres()) if args.postgres else None
        for gone in (False, True):
            print(mode(pg_url, gone, args.runs, args.poll_interval), flush=True)


if __name__ == "__main__":
    main()
