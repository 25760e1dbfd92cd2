"""What a real `vigil daemon run` logs: a line per run submitted, launched and ended, per
tick evaluated and per retry submitted, with stable fields; user code's output only inside
log records naming its location and instigator; `--log-level` drops the lines below it."""

from __future__ import annotations

import json
import pathlib
import signal
from collections.abc import Callable
from typing import Any

from tests.acceptance.harness import REPO, Instance, run_id_of
from tests.daemon.process import Daemon, Daemons
from tests.waiting import eventually

LOCATION = REPO / "tests" / "daemon" / "logged_instigators.py"
STABLE = {"time", "level", "event", "loop", "run_id", "message", "logger"}
Line = dict[str, Any]


def configure(instance: Instance) -> None:
    text = (instance.home / "vigil.yaml").read_text()
    store_section = text[text.index("store:") :] if "store:" in text else ""
    instance.write_config(
        f"workspace:\n  - name: logged\n    file: {LOCATION}\n"
        "scheduling:\n  poll_interval: 0.3\n"
        "daemon:\n  heartbeat_interval: 0.3\n  shutdown_grace: 5\n"
        "http:\n  enabled: false\n" + store_section
    )


def lines_of(daemon: Daemon) -> list[Line]:
    """Every line of the daemon's stream, each a JSON object (else the test fails here)."""
    return [json.loads(line) for line in daemon.log().splitlines()]


def events(daemon: Daemon, event: str, **fields: Any) -> list[Line]:
    return [
        line
        for line in lines_of(daemon)
        if line["event"] == event and all(line.get(k) == v for k, v in fields.items())
    ]


async def until(daemon: Daemon, found: Callable[[], bool], deadline: float = 120.0) -> None:
    async def check() -> bool:
        return found()

    try:
        await eventually(check, deadline)
    except TimeoutError:
        raise AssertionError(f"never seen; the log:\n{daemon.log()}") from None


async def test_json_logs_tell_each_run_tick_and_retry_once_with_stable_fields(
    instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    configure(instance)
    daemon = daemons.start("--log-format", "json", env={"INSTIGATOR_DIR": str(tmp_path)})
    await daemon.logged('"daemon.started"')
    failing = run_id_of(instance.ok("run", "launch", "exploding"))
    scheduled = "schedule:chatty"
    await until(daemon, lambda: len(events(daemon, "run.submitted", instigator=scheduled)) >= 2)
    (tmp_path / "enough").touch()
    await until(daemon, lambda: bool(events(daemon, "tick.evaluated", error="enough runs")))
    await until(daemon, lambda: bool(events(daemon, "run.retry_submitted", run_id=failing)))
    [retry] = events(daemon, "run.retry_submitted", run_id=failing)
    submitted = {line["run_id"] for line in events(daemon, "run.submitted")}
    every = submitted | {failing}

    def all_ended() -> bool:
        return every <= {line["run_id"] for line in events(daemon, "run.ended")}

    await until(daemon, all_ended)
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0

    lines = lines_of(daemon)
    assert all(set(line) >= STABLE for line in lines)
    assert retry["retry_run_id"] in submitted
    assert retry["job"] == "exploding"
    check_runs(daemon, every, failing, retry["retry_run_id"])
    check_ticks(daemon, submitted - {retry["retry_run_id"]})
    check_output(daemon)


def check_runs(daemon: Daemon, every: set[str], failing: str, retried: str) -> None:
    ended = events(daemon, "run.ended")
    assert sorted(line["run_id"] for line in ended) == sorted(every)  # once each
    for line in ended:
        assert isinstance(line["duration"], float)
        assert line["duration"] >= 0
        failed = line["run_id"] in {failing, retried}
        assert line["status"] == ("FAILURE" if failed else "SUCCESS"), line
        assert line["job"] == ("exploding" if failed else "hello")
        assert ("failed: explode" in line["message"]) == failed
        assert line["reason"] == ("step_failure" if failed else None)
        assert (line["level"] == "warning") == failed
    launched = events(daemon, "run.launched")
    assert sorted(line["run_id"] for line in launched) == sorted(every)
    assert all(isinstance(line["pid"], int) for line in launched)
    submitted = events(daemon, "run.submitted")
    assert all(line["status"] == "QUEUED" and line["location"] == "logged" for line in submitted)


def check_ticks(daemon: Daemon, scheduled: set[str]) -> None:
    ticks = events(daemon, "tick.evaluated", instigator="schedule:chatty")
    made = [run_id for line in ticks for run_id in line["run_ids"]]
    assert sorted(made) == sorted(scheduled)
    assert {line["status"] for line in ticks} == {"SUCCESS", "SKIPPED"}
    assert all(isinstance(line["tick_id"], int) for line in ticks)


def check_output(daemon: Daemon) -> None:
    output = events(daemon, "location.output")
    said = {line["message"] for line in output}
    assert {"chatty on stdout", "chatty on stderr"} <= said
    assert all(line["location"] == "logged" for line in output)
    assert all(line["instigator"] == "schedule:chatty" for line in output)
    assert "hello from a step" not in daemon.log()  # a worker's output is in its own log


async def test_log_level_warning_drops_the_info_lines(
    sqlite_instance: Instance, daemons: Daemons
) -> None:
    configure(sqlite_instance)
    daemon = daemons.start("--log-level", "warning")

    def ticked() -> bool:  # the schedule is unknown until the daemon first reads it
        done = sqlite_instance.vigil("schedule", "ticks", "chatty", "--json")
        return done.returncode == 0 and any(
            t["status"] == "SUCCESS" for t in json.loads(done.stdout)
        )

    await until(daemon, ticked)
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0
    assert " INFO " not in daemon.log()
    assert "tick.evaluated" not in daemon.log()
