"""CPU per run: what one run of a trivial job costs the machine, part by part.

The queue's drain rate (`bench.queue`) is bound by CPU on this 2-core machine, and the
machine-wide figure it prints moves with whatever else runs. This bench counts the CPU
time of the processes a run uses, which other load barely changes: `--runs` runs of the
1-step job `one` are launched one after another through the immediate coordinator and the
subprocess launcher (workers forked from the worker template, as the daemon does), each
waited for to its end. Per run it prints:

- workers: the CPU of the workers and their step processes, which the template reaps
  (its children's times, read once every worker has been reaped), and of that the time
  in the kernel (forks, copy-on-write page faults, exits);
- template: the template's own CPU (the parent side of each fork, the reaping);
- launcher: this process (submission, claim, launch, waiting by polling the store);
- postgres: the server's backends, which the postmaster reaps when a worker disconnects
  (PostgreSQL only); this includes the launcher's submissions and its polling for each
  run's end, so it overstates what the workers alone cost the server (bench.queue's drain
  shows the server's share with a daemon instead).

Median and spread over `--repeats` rounds, on SQLite and PostgreSQL, for both executors.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import resource
import statistics
import time

import anyio
import psutil
import sqlalchemy as sa

from bench import common
from bench import daemon as daemon_bench

JOB = "one"
WARMUP = 3  # runs not counted: the first starts the template
REAP_DEADLINE = 30.0  # seconds for the template to reap every worker


@dataclasses.dataclass(frozen=True)
class Costs:
    """CPU seconds per run, by part."""

    workers: float
    workers_system: float
    template: float
    launcher: float
    postgres: float

    @property
    def total(self) -> float:
        return self.workers + self.template + self.launcher + self.postgres


def own_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def template_process() -> psutil.Process:
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.cmdline()[-2:] == ["worker", "template"]:
                return child
    raise SystemExit("no worker template among this process's children")


def wait_reaped(template: psutil.Process) -> None:
    """Until the template has reaped every worker (their times count only then)."""
    end = time.monotonic() + REAP_DEADLINE
    while template.children():
        if time.monotonic() > end:
            raise SystemExit(f"workers still running after {REAP_DEADLINE:g} s")
        time.sleep(0.01)


def split(template: psutil.Process) -> tuple[float, float, float]:
    """(the template's own CPU seconds, its reaped children's, of which in the kernel)."""
    t = template.cpu_times()
    return t.user + t.system, t.children_user + t.children_system, t.children_system


def server_seconds(server_pid: int | None) -> float:
    return 0.0 if server_pid is None else daemon_bench.tree_cpu(psutil.Process(server_pid))


async def measure(
    pg_url: sa.engine.URL | None, server_pid: int | None, executor: str, n: int
) -> Costs:
    with common.instance_home(pg_url, executor) as home:
        async with common.Launcher(home, dict(os.environ)).opened() as bench:
            for _ in range(WARMUP):
                await bench.launch_and_wait(JOB)
            template = template_process()
            wait_reaped(template)
            own0, children0, kernel0 = split(template)
            launcher0, server0 = own_seconds(), server_seconds(server_pid)
            for _ in range(n):
                await bench.launch_and_wait(JOB)
            wait_reaped(template)
            own1, children1, kernel1 = split(template)
            launcher1, server1 = own_seconds(), server_seconds(server_pid)
    return Costs(
        workers=(children1 - children0) / n,
        workers_system=(kernel1 - kernel0) / n,
        template=(own1 - own0) / n,
        launcher=(launcher1 - launcher0) / n,
        postgres=(server1 - server0) / n,
    )


def report(label: str, rounds: list[Costs]) -> None:
    def part(name: str, values: list[float]) -> str:
        ms = [v * 1000 for v in values]
        return f"{name} {statistics.median(ms):.1f} ({min(ms):.1f}-{max(ms):.1f})"

    parts = [
        part("total", [c.total for c in rounds]),
        part("workers", [c.workers for c in rounds]),
        part("of which kernel", [c.workers_system for c in rounds]),
        part("template", [c.template for c in rounds]),
        part("launcher", [c.launcher for c in rounds]),
    ]
    if any(c.postgres for c in rounds):
        parts.append(part("postgres", [c.postgres for c in rounds]))
    print(f"{label}: CPU ms a run, median (min-max) of {len(rounds)} rounds: " + ", ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50, help="runs a round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds")
    parser.add_argument("--executors", default="multiprocess,in_process")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    executors = args.executors.split(",")
    if not args.no_sqlite:
        for executor in executors:
            rounds = [
                anyio.run(measure, None, None, executor, args.runs) for _ in range(args.repeats)
            ]
            report(f"sqlite   {executor}", rounds)
    if not args.no_postgres:
        with common.postgres_server() as server:
            url, pid = server.url, server.pid
            for executor in executors:
                rounds = [
                    anyio.run(measure, url, pid, executor, args.runs) for _ in range(args.repeats)
                ]
                report(f"postgres {executor}", rounds)


if __name__ == "__main__":
    main()
