"""The queued coordinator end to end: the CLI submits, the daemon's queue loop launches."""

from __future__ import annotations

import json
import signal

from tests.acceptance.harness import IMMEDIATE, Instance, run_id_of
from tests.daemon.process import TICKER, Daemons, configure, vigil, wait_for_rows

QUEUED = (
    "run_coordinator:\n  type: queued\n"
    "  options:\n    max_concurrent_runs: 1\n    poll_interval: 0.5\n"
)


def use_the_queue(instance: Instance) -> None:
    config = (instance.home / "vigil.yaml").read_text()
    assert IMMEDIATE in config
    instance.write_config(config.replace(IMMEDIATE, QUEUED))


async def test_runs_queue_and_the_daemon_launches_them(
    instance: Instance, daemons: Daemons
) -> None:
    use_the_queue(instance)
    configure(instance, TICKER)
    first = instance.ok("run", "launch", "sleepy")
    second = instance.ok("run", "launch", "hello")
    assert first.split()[1] == "QUEUED"
    assert second.split()[1] == "QUEUED"
    listed = json.loads(instance.ok("queue", "--json"))
    assert [entry["run_id"] for entry in listed] == [run_id_of(first), run_id_of(second)]
    assert [entry["waiting"] for entry in listed] == [None, "global limit 1/1"]

    daemon = daemons.start()
    await wait_for_rows(instance, {"queue": "healthy"})
    instance.wait_until(run_id_of(first), lambda r: r["status"] == "STARTED")
    queue = instance.ok("queue")
    assert run_id_of(second)[:8] in queue  # the table shows the short id
    assert "global limit 1/1" in queue

    instance.ok("run", "cancel", run_id_of(first))
    instance.wait_until(run_id_of(second), lambda r: r["status"] == "SUCCESS")
    assert "no queued runs" in instance.ok("queue")
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0


async def test_pause_holds_the_queue_until_resume(
    sqlite_instance: Instance, daemons: Daemons
) -> None:
    instance = sqlite_instance
    use_the_queue(instance)
    configure(instance, TICKER)
    assert instance.ok("queue", "pause").strip() == "queue paused"
    run_id = run_id_of(instance.ok("run", "launch", "hello"))
    daemon = daemons.start()
    await wait_for_rows(instance, {"queue": "healthy"})
    assert "queue paused" in instance.ok("queue")
    assert instance.show(run_id)["status"] == "QUEUED"
    instance.ok("queue", "resume")
    instance.wait_until(run_id, lambda r: r["status"] == "SUCCESS")
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0


async def test_queue_commands_need_the_queued_coordinator(sqlite_instance: Instance) -> None:
    done = await vigil(sqlite_instance, "queue")
    assert done.returncode == 2
    assert b"never queued (use type: queued)" in done.stderr
