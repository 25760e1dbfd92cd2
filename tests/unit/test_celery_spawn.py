"""The Celery run task's way of starting a run worker (`vigil.celery.spawn`), on real
processes: forked from a warm template, whose exit notice gives the exit code; and, when
the template cannot fork, started cold with a warning."""

from __future__ import annotations

import logging
import os
import pathlib
import sys
from collections.abc import Iterator

import pytest

from vigil import version
from vigil.celery import spawn


def context(tmp_path: pathlib.Path, python: str = sys.executable) -> spawn.WorkerContext:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return spawn.WorkerContext(home, tmp_path / "logs", tmp_path, dict(os.environ), python)


@pytest.fixture
def spawner(tmp_path: pathlib.Path) -> Iterator[spawn.Spawner]:
    started = spawn.Spawner(context(tmp_path))
    try:
        yield started
    finally:
        started.close()


def test_a_run_worker_is_forked_by_the_template_and_its_exit_code_told(
    spawner: spawn.Spawner, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "logs" / "r1" / "worker.log"
    spawner.warm()

    worker = spawner.start("r1", ["--version"], log)

    assert isinstance(worker, spawn.ForkedWorker)
    assert worker.wait() == 0
    assert version.VERSION in log.read_text()
    failing = spawner.start("r2", ["no-such-command"], tmp_path / "logs" / "r2" / "worker.log")
    assert isinstance(failing, spawn.ForkedWorker)
    assert failing.wait() == 2


def test_a_template_that_cannot_fork_means_a_cold_start_and_a_warning(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An interpreter whose template dies at once: a fault from outside the code under test.
    python = tmp_path / "python"
    python.write_text(
        f'#!/bin/sh\ncase "$*" in *template*) exit 3;; esac\nexec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    started = spawn.Spawner(context(tmp_path, str(python)))
    log = tmp_path / "logs" / "r1" / "worker.log"

    with caplog.at_level(logging.WARNING):
        worker = started.start("r1", ["--version"], log)

    assert isinstance(worker, spawn.ColdWorker)
    assert worker.wait() == 0
    assert version.VERSION in log.read_text()
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "run_worker.cold_start"]
    assert "r1" in record.getMessage()
    started.close()
