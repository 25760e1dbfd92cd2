"""Tick delay of many schedules on `* * * * *`, measured on a real `vigil daemon run`.

Targets (issue 5): with 1,000 running schedules, tick delay p50 at most 200 ms and p99 at
most 1 s; with 10,000, one minute's ticks all evaluated within 10 s and the daemon's RSS
at most 300 MB.

A generated code location defines N schedules, running by default, each returning a
SkipReason (`--mode skip`) or asking for one run (`--mode run`; the queue is paused first
so nothing launches). The daemon runs for `--minutes` whole minutes after it is ready; for
each minute the delay of every tick is read from the store: the tick's last update (its
end: evaluated, runs submitted, outcome written) minus its scheduled time. That is stricter
than the `vigil_tick_delay_seconds` metric, which measures to the start of the evaluation.
RSS of the daemon and of its process tree (with the evaluation process) is sampled each
second. Prints, per minute and over all minutes, the median, p99 and maximum.

`--kind sensor` defines N sensors (minimum_interval 30 s, returning a SkipReason) instead;
for each tick after a sensor's first, its lag is how much later than its previous tick +
30 s it started; printed per minute, to show whether the lag grows.

    python -m bench.schedules --count 1000 --minutes 3
    python -m bench.schedules --count 10000 --minutes 2
    python -m bench.schedules --kind sensor --count 1000 --minutes 5
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

from bench import common
from vigil import storage, ticks
from vigil.config import loader

MB = 1024 * 1024
READY_DEADLINE = 600.0


def code_location(count: int, mode: str, kind: str = "schedule") -> str:
    body = "SkipReason('bench')" if mode == "skip" else "RunRequest()"
    if kind == "schedule":
        decorator = (
            "schedule(cron='* * * * *', job=noop_job, name=f's{i}', default_status='running')"
        )
    else:
        decorator = (
            "sensor(job=noop_job, minimum_interval=30, name=f's{i}', default_status='running')"
        )
    lines = [
        "from vigil import Definitions, RunRequest, SkipReason, job, schedule, sensor, step",
        "@step\ndef noop() -> None: ...",
        "noop_job = job('noop', [noop])",
        "def make(i):",
        f"    @{decorator}",
        "    def tick():",
        f"        return {body}",
        "    return tick",
        f"defs = Definitions(jobs=[noop_job], {kind}s=[make(i) for i in range({count})])",
    ]
    return "\n".join(lines) + "\n"


def config(location: pathlib.Path) -> str:
    return (
        f"workspace:\n  - name: bench\n    file: {location}\n"
        "run_coordinator:\n  type: queued\n"
        "http:\n  enabled: false\n"
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def describe(label: str, delays: list[float]) -> str:
    return (
        f"{label}: {len(delays)} ticks, delay p50 {statistics.median(delays) * 1000:.0f} ms, "
        f"p99 {percentile(delays, 0.99) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms"
    )


async def stored_ticks(home: pathlib.Path) -> list[ticks.Tick]:
    settings = loader.load_settings(home)
    store = await storage.open_store(loader.store_target(settings))
    try:
        return await store.list_ticks()
    finally:
        await store.close()


def sensor_lags(found: list[ticks.Tick]) -> dict[float, list[float]]:
    """Each tick's lag behind its sensor's previous tick + 30 s, by the minute it started."""
    by_sensor: dict[str, list[float]] = {}
    for tick in sorted(found, key=lambda t: t.scheduled_time):
        by_sensor.setdefault(tick.instigator, []).append(tick.scheduled_time)
    by_minute: dict[float, list[float]] = {}
    for times in by_sensor.values():
        for previous, current in itertools.pairwise(times):
            by_minute.setdefault(current // 60 * 60, []).append(current - previous - 30.0)
    return by_minute


async def tick_delays(home: pathlib.Path) -> dict[float, list[float]]:
    found = await stored_ticks(home)
    by_minute: dict[float, list[float]] = {}
    for tick in found:
        if tick.status in (ticks.TickStatus.SKIPPED, ticks.TickStatus.SUCCESS):
            by_minute.setdefault(tick.scheduled_time, []).append(
                tick.updated_at - tick.scheduled_time
            )
    return by_minute


def sample_rss(process: psutil.Process) -> tuple[float, float]:
    own = process.memory_info().rss
    tree = own + sum(c.memory_info().rss for c in process.children(recursive=True))
    return own / MB, tree / MB


def run(count: int, minutes: int, mode: str, kind: str) -> None:
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        home = pathlib.Path(tmp)
        location = home / "many_instigators.py"
        location.write_text(code_location(count, mode, kind))
        (home / "vigil.yaml").write_text(config(location))
        env = {**os.environ, "VIGIL_HOME": str(home), "PYTHONPATH": str(common.REPO)}
        vigil = [sys.executable, "-m", "vigil"]
        subprocess.run([*vigil, "instance", "migrate"], env=env, check=True, capture_output=True)
        if mode == "run":
            subprocess.run([*vigil, "queue", "pause"], env=env, check=True, capture_output=True)
        log = (home / "daemon.log").open("wb")
        daemon = subprocess.Popen(
            [*vigil, "daemon", "run"], env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            measure(home, daemon, count, minutes, kind)
        finally:
            daemon.terminate()
            daemon.wait(timeout=120)


def measure(
    home: pathlib.Path, daemon: subprocess.Popen[bytes], count: int, minutes: int, kind: str
) -> None:
    proc = psutil.Process(daemon.pid)
    start = time.time()
    first_full = (int(start // 60) + 2) * 60.0  # the first minute after the daemon is warm
    end = first_full + (minutes - 1) * 60 + 30
    rss: list[tuple[float, float]] = []
    while time.time() < end:
        if daemon.poll() is not None:
            raise SystemExit(f"the daemon exited {daemon.returncode}")
        rss.append(sample_rss(proc))
        time.sleep(1.0)
    if kind == "sensor":
        by_minute = sensor_lags(asyncio.run(stored_ticks(home)))
        print(f"{count} sensors every 30 s: lag behind previous tick + 30 s, by minute")
    else:
        by_minute = asyncio.run(tick_delays(home))
        print(f"{count} schedules on * * * * *; first minute measured {first_full:.0f}")
    measured = [t for t in sorted(by_minute) if t >= first_full][:minutes]
    every: list[float] = []
    for t in measured:
        delays = by_minute[t]
        every += delays
        print(describe(time.strftime("%H:%M", time.gmtime(t)), delays))
    if every:
        print(describe("all minutes", every))
    print(
        f"daemon RSS: median {statistics.median(r for r, _ in rss):.0f} MB, "
        f"max {max(r for r, _ in rss):.0f} MB; with its children: max "
        f"{max(t for _, t in rss):.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=3)
    parser.add_argument("--mode", choices=("skip", "run"), default="skip")
    parser.add_argument("--kind", choices=("schedule", "sensor"), default="schedule")
    args = parser.parse_args()
    run(args.count, args.minutes, args.mode, args.kind)


if __name__ == "__main__":
    main()
