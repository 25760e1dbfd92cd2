"""Crash-test fixtures and markers.

Every crash test is marked `crash`; the slower half also `crash_long`. The short form:
`pytest tests/crash -m "not crash_long"`; the whole suite: `pytest tests/crash`.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests import pg_server
from tests.acceptance import harness
from tests.daemon.process import Daemons


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "crash: a daemon or worker killed at a crash point")
    config.addinivalue_line("markers", "crash_long: a crash test left out of the short form")


@pytest.fixture
def daemons(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Daemons]:
    """`vigil daemon run` processes on the test's instance; all killed at the end."""
    names = ("outage_instance", "sqlite_instance", "pg_instance", "instance")
    name = next(n for n in names if n in request.fixturenames)
    started = Daemons(request.getfixturevalue(name), tmp_path)
    try:
        yield started
    finally:
        for daemon in started.stop_all():
            print(f"--- daemon {daemon.pid} log ---\n{daemon.log()}")


@pytest.fixture
def outage_server() -> Iterator[pg_server.Server]:
    """A PostgreSQL server of the test's own, which the test may stop and start."""
    server = pg_server.start(pg_server.find_bindir())
    try:
        yield server
    finally:
        pg_server.stop(server)


@pytest.fixture
async def outage_instance(
    outage_server: pg_server.Server, tmp_path: pathlib.Path
) -> harness.Instance:
    """An instance whose store is a database on `outage_server`."""
    await pg_server.admin_execute(outage_server.url, 'CREATE DATABASE "vigil"')
    url: sa.engine.URL = outage_server.url.set(database="vigil")
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    instance = harness.Instance(home=home, cwd=cwd, env=harness.base_env(home))
    instance.write_config(harness.store_yaml(url))
    return instance
