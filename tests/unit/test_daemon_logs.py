"""Daemon log lines: readable text by default, JSON with stable keys on request."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from vigil.daemon import logs


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
