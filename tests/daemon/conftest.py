"""Daemon acceptance fixtures: the daemons of a test's instance (see tests/conftest.py)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests.daemon.process import Daemons


@pytest.fixture
def daemons(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Daemons]:
    """Start `vigil daemon run` processes on the test's instance; all killed at the end."""
    names = ("pg_instance", "instance")
    name = next((n for n in names if n in request.fixturenames), "sqlite_instance")
    started = Daemons(request.getfixturevalue(name), tmp_path)
    try:
        yield started
    finally:
        for daemon in started.stop_all():
            print(f"--- daemon {daemon.pid} log ---\n{daemon.log()}")
