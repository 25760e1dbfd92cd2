"""The idle daemon's footprint and `vigil daemon status` latency, on the real processes.

Targets (issue 3): an idle daemon with its loops at most 80 MB RSS (130 MB with all its
children) and at most 1 % of one core; `vigil daemon status` at most 300 ms.

`vigil daemon run` runs its built-in loops (queue, scheduler, sensors, monitor, retries;
the scheduler and sensor loops start one evaluation process for the bench code location,
counted in the tree). Once every loop shows
healthy in `vigil daemon status --json` and the daemon has settled, its RSS and its process
tree's are sampled every second; CPU is the tree's user + system time over the window
(reaped children included) divided by the wall time. Then the `vigil` console script runs
`daemon status` N times, a new process each time, as a user would. Last, SIGTERM must end
the daemon with exit code 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psutil
import sqlalchemy as sa

from bench import common

# The real queue, scheduler and sensor loops run; stand-ins take the future loops' places.
LOOPS = ("queue", "scheduler", "sensors", "monitor", "retries")  # the built-in loops
READY_DEADLINE = 60.0  # seconds for every loop to show healthy
SETTLE = 5.0
SAMPLE_EVERY = 1.0
POLL = 0.5  # between two `daemon status --json` while waiting for the loops
STOP_DEADLINE = 30.0
COMMAND_TIMEOUT = 60.0
MB = 1024 * 1024
VIGIL = shutil.which("vigil", path=str(pathlib.Path(sys.executable).parent)) or "vigil"


@dataclasses.dataclass
class Daemon:
    """One `vigil daemon run` process and the environment that points the CLI at it."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: pathlib.Path

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclasses.dataclass
class Footprint:
    daemon_rss: list[float]
    tree_rss: list[float]
    most_processes: int
    cpu_seconds: float
    wall: float


def config_yaml(pg_url: sa.engine.URL | None, port: int) -> str:
    base = common.config_yaml(pg_url, immediate=False)
    return base + f"http:\n  port: {port}\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def instance_env(home: pathlib.Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(common.REPO), env.get("PYTHONPATH")]))
    return env


def vigil(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [VIGIL, *args],
        cwd=common.REPO,
        env=env,
        capture_output=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


@contextlib.contextmanager
def running_daemon(pg_url: sa.engine.URL | None) -> Iterator[Daemon]:
    """A migrated instance in a temp dir and its daemon, healthy and settled; stopped after."""
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        home = pathlib.Path(tmp)
        (home / "vigil.yaml").write_text(config_yaml(pg_url, free_port()))
        env = instance_env(home)
        migrated = vigil(env, "instance", "migrate")
        if migrated.returncode != 0:
            raise SystemExit(f"vigil instance migrate failed:\n{migrated.stderr.decode()}")
        daemon = start(env, home / "daemon.log")
        try:
            wait_until_healthy(daemon)
            time.sleep(SETTLE)
            yield daemon
            stop(daemon)
        finally:
            if daemon.process.poll() is None:
                daemon.process.kill()
                daemon.process.wait(timeout=STOP_DEADLINE)


def start(env: dict[str, str], log_path: pathlib.Path) -> Daemon:
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "vigil", "daemon", "run"],
            cwd=common.REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Daemon(process, env, log_path)


def wait_until_healthy(daemon: Daemon) -> None:
    """Poll `vigil daemon status --json` until each loop is healthy and has iterated."""
    end = time.monotonic() + READY_DEADLINE
    rows: dict[str, dict[str, Any]] = {}
    while time.monotonic() < end:
        if daemon.process.poll() is not None:
            raise SystemExit(f"the daemon exited {daemon.process.returncode}:\n{daemon.log_tail()}")
        rows = status_rows(daemon.env)
        if all_healthy(rows):
            return
        time.sleep(POLL)
    raise SystemExit(f"the loops were not healthy within {READY_DEADLINE:g} s: {rows}")


def status_rows(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    done = vigil(env, "daemon", "status", "--json")
    if done.returncode != 0:
        raise SystemExit(f"vigil daemon status --json failed:\n{done.stderr.decode()}")
    return {row["loop"]: row for row in json.loads(done.stdout)}


def all_healthy(rows: dict[str, dict[str, Any]]) -> bool:
    supervisor = rows.get("supervisor", {}).get("state") == "healthy"
    loops = [rows.get(name, {}) for name in LOOPS]
    return supervisor and all(
        row.get("state") == "healthy" and row.get("iterations", 0) >= 1 for row in loops
    )


def stop(daemon: Daemon) -> None:
    """SIGTERM; the daemon must exit 0 within the deadline (else it is killed by pid)."""
    started = time.perf_counter()
    daemon.process.send_signal(signal.SIGTERM)
    try:
        code = daemon.process.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        daemon.process.kill()
        daemon.process.wait(timeout=STOP_DEADLINE)
        raise SystemExit(
            f"the daemon did not exit within {STOP_DEADLINE:g} s of SIGTERM; killed"
        ) from None
    if code != 0:
        raise SystemExit(f"the daemon exited {code} on SIGTERM:\n{daemon.log_tail()}")
    print(f"daemon SIGTERM -> exit 0 in {(time.perf_counter() - started) * 1000:.0f} ms")


# measuring ---------------------------------------------------------------------------
def tree(root: psutil.Process) -> list[psutil.Process]:
    return [root, *root.children(recursive=True)]


def tree_rss(procs: Sequence[psutil.Process]) -> float:
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def tree_cpu(root: psutil.Process) -> float:
    """User + system seconds of the tree, with the children each process has reaped."""
    total = 0.0
    for proc in tree(root):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def sample(pid: int, seconds: float) -> Footprint:
    root = psutil.Process(pid)
    daemon_rss: list[float] = []
    whole_rss: list[float] = []
    most = 0
    cpu_start, start = tree_cpu(root), time.monotonic()
    end = start + seconds
    while (now := time.monotonic()) < end:
        procs = tree(root)
        most = max(most, len(procs))
        daemon_rss.append(root.memory_info().rss)
        whole_rss.append(tree_rss(procs))
        time.sleep(min(SAMPLE_EVERY, end - now))
    return Footprint(
        daemon_rss, whole_rss, most, tree_cpu(root) - cpu_start, time.monotonic() - start
    )


def status_latency(env: dict[str, str], runs_n: int) -> list[float]:
    samples = []
    for _ in range(runs_n):
        started = time.perf_counter()
        done = vigil(env, "daemon", "status")
        samples.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"vigil daemon status failed:\n{done.stderr.decode()}")
    return samples


# reporting ---------------------------------------------------------------------------
def memory_line(name: str, samples: Sequence[float], target: int, extra: str = "") -> str:
    mb = [s / MB for s in samples]
    return (
        f"{name}: median {statistics.median(mb):.1f} MB, max {max(mb):.1f} MB "
        f"over {len(mb)} samples{extra} (target <= {target} MB)"
    )


def print_footprint(fp: Footprint) -> None:
    print(memory_line("idle daemon RSS", fp.daemon_rss, 80))
    print(
        memory_line(
            "idle tree RSS",
            fp.tree_rss,
            130,
            f", at most {fp.most_processes} process{'es' if fp.most_processes != 1 else ''}",
        )
    )
    print(
        f"idle tree CPU: {100 * fp.cpu_seconds / fp.wall:.2f} % of one core "
        f"({fp.cpu_seconds:.2f} s CPU over {fp.wall:.1f} s) (target <= 1 %)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="idle sampling window")
    parser.add_argument("--runs", type=int, default=10, help="`vigil daemon status` runs")
    parser.add_argument("--postgres", action="store_true", help="also status on PostgreSQL")
    args = parser.parse_args()
    with running_daemon(None) as daemon:
        print_footprint(sample(daemon.process.pid, args.seconds))
        samples = status_latency(daemon.env, args.runs)
        print(common.figures("sqlite   vigil daemon status", samples) + " (target <= 300 ms)")
    if args.postgres:
        with common.postgres() as url, running_daemon(url) as daemon:
            samples = status_latency(daemon.env, args.runs)
            print(common.figures("postgres vigil daemon status", samples) + " (target <= 300 ms)")


if __name__ == "__main__":
    main()
