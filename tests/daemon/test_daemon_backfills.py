"""Backfills end to end: `vigil backfill ...` driven as a user does, a real daemon submitting
the runs and the queue launching them, on SQLite and PostgreSQL.

The job `regions` (tests/daemon/backfill_jobs.py) has six static partitions; each run notes
its partition's start and end, and partition `c` fails.
"""

from __future__ import annotations

import collections
import json
import pathlib
from typing import Any

import pytest

from tests.acceptance.harness import Instance
from tests.crash import harness as crash_harness
from tests.daemon import process
from tests.daemon.process import Daemons
from tests.waiting import eventually

JOBS = pathlib.Path(__file__).with_name("backfill_jobs.py")
DEADLINE = 120.0
pytestmark = pytest.mark.timeout(400)


def configure(instance: Instance, paused: bool = False) -> None:
    text = (instance.home / "vigil.yaml").read_text()
    store_section = text[text.index("store:") :] if "store:" in text else ""
    instance.write_config(
        f"workspace:\n  - name: backfills\n    file: {JOBS}\n"
        "run_coordinator:\n  type: queued\n"
        "  options: {max_concurrent_runs: 10, poll_interval: 0.2}\n"
        "backfills: {poll_interval: 0.2, chunk_size: 2}\n"
        f"{store_section}"
    )
    process.configure(instance, process.TICKER)
    if paused:
        instance.ok("queue", "pause")


def env_of(tmp_path: pathlib.Path, gated: bool = False) -> dict[str, str]:
    env = {"BACKFILL_LOG": str(tmp_path / "partitions.log")}
    if gated:
        env["BACKFILL_GATE"] = str(crash_harness.gate_path(tmp_path))
    return env


def launched_id(output: str) -> str:
    """The id `vigil backfill launch` prints: `backfill ID: ...`."""
    return output.split()[1].rstrip(":")


def show(instance: Instance, backfill_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(instance.ok("backfill", "show", backfill_id, "--json"))
    return data


async def shown(instance: Instance, backfill_id: str, counts: dict[str, int]) -> dict[str, Any]:
    """`backfill show` once its partitions have these counts (fails with the last seen)."""
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        seen.update(show(instance, backfill_id))
        return bool(seen["partitions"] == counts)

    try:
        await eventually(reached, DEADLINE)
    except TimeoutError:
        raise AssertionError(f"backfill never reached {counts}: {seen}") from None
    return seen


def most_in_flight(log: pathlib.Path) -> int:
    """The most runs between their start and end at once, from the runs' own notes."""
    moments = []
    for line in log.read_text().splitlines():
        _, what, when = line.split()
        moments.append((float(when), 1 if what == "start" else -1))
    most = current = 0
    for _, step in sorted(moments, key=lambda m: (m[0], m[1])):
        current += step
        most = max(most, current)
    return most


async def test_a_backfill_runs_each_partition_once_within_its_limit(
    instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    configure(instance)
    gate = crash_harness.Gate(tmp_path)  # the runs wait at the gate until it opens
    daemon = daemons.start(env=env_of(tmp_path, gated=True))
    out = instance.ok(
        "backfill", "launch", "regions", "--all", "--max-concurrent", "2", "--tag", "team=data"
    )
    backfill_id = launched_id(out)
    assert "6 partitions of regions (a .. f)" in out

    # Two in flight at the gate; the queue says why the four others wait.
    async def held() -> bool:
        queued = json.loads(instance.ok("queue", "--json"))
        return len(queued) == 4 and all(
            q["waiting"] == f"backfill {backfill_id} 2/2" for q in queued
        )

    await eventually(held, DEADLINE)
    gate.open()
    found = await shown(instance, backfill_id, {"SUCCESS": 5, "FAILURE": 1})
    assert found["status"] == "SUBMITTED"
    assert found["failed_partitions"] == ["c"]
    assert (found["total"], found["submitted"], found["max_concurrent"]) == (6, 6, 2)

    log = tmp_path / "partitions.log"
    starts = collections.Counter(
        line.split()[0] for line in log.read_text().splitlines() if " start " in line
    )
    assert starts == dict.fromkeys("abcdef", 1)  # each partition ran once
    assert most_in_flight(log) <= 2

    text = instance.ok("backfill", "show", backfill_id[:8])  # a prefix will do
    assert "FAILURE 1, SUCCESS 5" in text
    assert "failed     c" in text
    runs_of = json.loads(instance.ok("run", "list", "--json"))
    assert {r["tags"]["vigil/partition"] for r in runs_of} == set("abcdef")
    assert all(r["tags"]["team"] == "data" for r in runs_of)

    status = instance.ok("partitions", "regions")
    lines = [line.split() for line in status.splitlines()]
    assert lines == [
        ["a", "..", "b", "SUCCESS", "2"],
        ["c", "FAILURE", "1"],
        ["d", "..", "f", "SUCCESS", "3"],
    ]

    rerun = instance.ok("backfill", "rerun-failed", backfill_id)
    again = launched_id(rerun)
    assert "1 failed partitions of regions" in rerun
    found = await shown(instance, again, {"FAILURE": 1})
    assert found["rerun_of"] == backfill_id
    listed = json.loads(instance.ok("backfill", "list", "--json"))
    assert [b["backfill_id"] for b in listed] == [backfill_id, again]
    assert daemon.process.poll() is None, daemon.log()


async def test_cancel_stops_a_backfill_and_cancels_its_queued_runs(
    instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    configure(instance, paused=True)
    daemons.start(env=env_of(tmp_path))
    backfill_id = launched_id(instance.ok("backfill", "launch", "regions", "--partitions", "a,b,d"))
    await shown(instance, backfill_id, {"QUEUED": 3})

    out = instance.ok("backfill", "cancel", backfill_id)
    assert out.strip() == (
        f"backfill {backfill_id} CANCELED: 3 queued runs canceled, 0 in flight left to "
        "finish (vigil run cancel RUN_ID stops one)"
    )
    found = show(instance, backfill_id)
    assert (found["status"], found["partitions"]) == ("CANCELED", {"CANCELED": 3})
    instance.ok("queue", "resume")
    assert json.loads(instance.ok("queue", "--json")) == []
    assert not (tmp_path / "partitions.log").exists()  # nothing ran
