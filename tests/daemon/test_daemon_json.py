"""`--json` of the commands that need a daemon to say much (daemon status, liveness, the
queue, backfills), a real daemon running, each output checked against its schema in
docs/cli-json/ (the other commands: tests/acceptance/test_cli_json.py)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from tests.acceptance.harness import Instance
from tests.acceptance.test_cli_json import checked
from tests.daemon import process
from tests.daemon.process import Daemons
from tests.daemon.test_daemon_backfills import DEADLINE, configure, env_of
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(400)


async def shown(instance: Instance, backfill_id: str, counts: dict[str, int]) -> dict[str, Any]:
    """`backfill show --json`, valid, once its partitions have these counts."""
    seen: dict[str, Any] = {}

    async def reached() -> bool:
        seen.update(checked(instance, "backfill", "show", backfill_id))
        return bool(seen["partitions"] == counts)

    try:
        await eventually(reached, DEADLINE)
    except TimeoutError:
        raise AssertionError(f"backfill never reached {counts}: {seen}") from None
    return seen


async def test_queue_backfills_and_daemon_status_as_json(
    sqlite_instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    instance = sqlite_instance
    configure(instance)
    assert checked(instance, "queue", "pause") == {"paused": True}
    daemon = daemons.start(env=env_of(tmp_path))
    await process.wait_for_rows(instance, {"queue": "healthy", "backfills": "healthy"})
    rows = checked(instance, "daemon", "status")
    assert {row["daemon"] for row in rows} == {f"{rows[0]['host']}:{daemon.pid}"}
    live = checked(instance, "daemon", "liveness-check")
    assert live["live"] is True

    made = checked(instance, "backfill", "launch", "regions", "--partitions", "a,b,c")
    assert (made["first"], made["last"], made["total"], made["partitions"]) == ("a", "c", 3, None)
    await shown(instance, made["backfill_id"], {"QUEUED": 3})
    queued = checked(instance, "queue")
    assert [q["priority"] for q in queued] == [0, 0, 0]
    assert all(q["waiting"] is not None for q in queued)  # the queue is paused
    assert checked(instance, "queue", "resume") == {"paused": False}

    done = await shown(instance, made["backfill_id"], {"SUCCESS": 2, "FAILURE": 1})
    assert done["failed_partitions"] == ["c"]
    partitions = checked(instance, "partitions", "regions")
    assert [p["status"] for p in partitions[:3]] == ["SUCCESS", "SUCCESS", "FAILURE"]
    assert partitions[3] == {"partition": "d", "status": "NOT_RUN", "run_id": None}

    rerun = checked(instance, "backfill", "rerun-failed", made["backfill_id"])
    assert (rerun["rerun_of"], rerun["total"]) == (made["backfill_id"], 1)
    listed = checked(instance, "backfill", "list")
    assert [b["backfill_id"] for b in listed] == [made["backfill_id"], rerun["backfill_id"]]
    canceled = checked(instance, "backfill", "cancel", rerun["backfill_id"])
    assert canceled["status"] == "CANCELED"
    assert canceled["in_flight"] + len(canceled["canceled_run_ids"]) <= 1
    assert daemon.process.poll() is None, daemon.log()
