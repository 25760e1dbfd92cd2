"""Daemon acceptance fixtures: an instance on SQLite and on PostgreSQL, and its daemons."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests.acceptance.harness import Instance, base_env, store_yaml, workspace_yaml
from tests.daemon.process import Daemons


def _instance(tmp_path: pathlib.Path, store_section: str) -> Instance:
    home = tmp_path / "home"
    home.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    instance = Instance(home=home, cwd=cwd, env=base_env(home))
    instance.write_config(workspace_yaml() + store_section)
    return instance


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def instance(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Instance:
    """An instance (example and test code locations) on each kind of store."""
    if request.param == "sqlite":
        return _instance(tmp_path, store_yaml(None))
    url = request.getfixturevalue("postgres_database")
    return _instance(tmp_path, store_yaml(url))


@pytest.fixture
def sqlite_instance(tmp_path: pathlib.Path) -> Instance:
    return _instance(tmp_path, store_yaml(None))


@pytest.fixture
def daemons(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Daemons]:
    """Start `vigil daemon run` processes on the test's instance; all killed at the end."""
    name = "instance" if "instance" in request.fixturenames else "sqlite_instance"
    started = Daemons(request.getfixturevalue(name), tmp_path)
    try:
        yield started
    finally:
        for daemon in started.stop_all():
            print(f"--- daemon {daemon.pid} log ---\n{daemon.log()}")
