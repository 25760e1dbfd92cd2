"""Daemon log lines: readable text by default, JSON with stable keys on request."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from vigil import events, runs, ticks
from vigil.daemon import logs, run_ends
from vigil.daemon.loops import instigation

S = runs.RunStatus


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def emit(log_format: logs.LogFormat) -> str:
    stream = io.StringIO()
    logs.configure(log_format, stream)
    log = logging.getLogger("vigil.test")
    log.warning(
        "loop %s crashed", "flaky", extra={"event": "loop.crashed", "loop": "flaky", "n": 2}
    )
    log.info("plain line from a library")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("with a traceback", extra={"event": "x.failed", "run_id": "r1"})
    logging.getLogger("alembic.runtime").info("Running upgrade -> 0001")
    return stream.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_always_carry_event_loop_and_run_id() -> None:
    lines = [json.loads(line) for line in emit("json").splitlines()]
    assert len(lines) == 3  # alembic's INFO narration is quieted
    crashed, plain, failed = lines
    assert {k: crashed[k] for k in ("event", "loop", "run_id", "level", "n")} == {
        "event": "loop.crashed",
        "loop": "flaky",
        "run_id": None,
        "level": "warning",
        "n": 2,
    }
    assert crashed["message"] == "loop flaky crashed"
    assert crashed["time"].endswith("Z")
    assert (plain["event"], plain["loop"], plain["run_id"]) == ("log", None, None)
    assert failed["run_id"] == "r1"
    assert "ValueError: boom" in failed["traceback"]


@pytest.mark.usefixtures("restore_logging")
def test_text_lines_read_as_event_message_and_fields() -> None:
    text = emit("text")
    first = text.splitlines()[0]
    assert first.split(" ", 1)[1] == "WARNING loop.crashed loop flaky crashed loop=flaky n=2"
    assert " INFO log plain line from a library" in text
    assert "ValueError: boom" in text
    assert "Running upgrade" not in text


def ended_run(status: runs.RunStatus, start: float | None) -> tuple[runs.Run, events.Event]:
    run = runs.Run("r-1", "etl", status, start_time=start, end_time=112.5)
    kind = events.EventType.RUN_SUCCESS if status is S.SUCCESS else events.EventType.RUN_FAILURE
    data = {} if status is S.SUCCESS else {"reason": "step_failure"}
    end = events.Event(7, "r-1", kind, 112.5, None, None, "failed: load", data)
    return run, end


@pytest.mark.usefixtures("restore_logging")
def test_a_run_end_reads_as_its_status_duration_and_reason() -> None:
    stream = io.StringIO()
    logs.configure("text", stream)
    run_ends.log_end(*ended_run(S.FAILURE, 100.0))
    run_ends.log_end(*ended_run(S.SUCCESS, None))
    failed, succeeded = (line.split(" ", 1)[1] for line in stream.getvalue().splitlines())
    assert failed == (
        "WARNING run.ended run r-1 of job etl ended FAILURE: failed: load "
        "run_id=r-1 job=etl status=FAILURE reason=step_failure duration=12.5"
    )
    assert (
        succeeded
        == "INFO run.ended run r-1 of job etl ended SUCCESS run_id=r-1 job=etl status=SUCCESS"
    )


@pytest.mark.usefixtures("restore_logging")
def test_a_tick_reads_as_its_outcome_and_runs_in_json() -> None:
    stream = io.StringIO()
    logs.configure("json", stream)
    outcome = ticks.TickOutcome(4, "schedule:nightly", ticks.TickStatus.SUCCESS, ("a", "b"))
    instigation.log_tick(outcome)
    instigation.log_tick(ticks.TickOutcome(5, "sensor:files", ticks.TickStatus.FAILED, (), "boom"))
    done, failed = (json.loads(line) for line in stream.getvalue().splitlines())
    assert done["message"] == "tick 4 of schedule:nightly: SUCCESS, runs a b"
    assert (done["event"], done["level"], done["tick_id"]) == ("tick.evaluated", "info", 4)
    assert (done["instigator"], done["run_ids"], done["error"]) == (
        "schedule:nightly",
        ["a", "b"],
        None,
    )
    assert (failed["level"], failed["status"], failed["error"]) == ("warning", "FAILED", "boom")


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(("name", "shown"), [("debug", 2), ("info", 1), ("warning", 0)])
def test_the_log_level_drops_the_lines_below_it(name: str, shown: int) -> None:
    stream = io.StringIO()
    logs.configure("text", stream, logs.level_of(name))
    log = logging.getLogger("vigil.test")
    log.debug("a debug line")
    log.info("an info line")
    assert len(stream.getvalue().splitlines()) == shown
