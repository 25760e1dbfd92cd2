"""Fixtures shared across suites: a throwaway PostgreSQL server and store targets."""

from __future__ import annotations

import os
import pathlib
from collections.abc import AsyncIterator, Iterator

import pytest
import sqlalchemy as sa

from tests import pg_server
from tests.acceptance import harness
from vigil import storage


@pytest.fixture(autouse=True)
def _no_vigil_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own VIGIL_* settings must not leak into what a test builds."""
    for name in list(os.environ):
        if name.startswith("VIGIL_") and not name.startswith("VIGIL_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[sa.engine.URL]:
    """An admin URL (may CREATE DATABASE) of a PostgreSQL server for this session.

    $VIGIL_TEST_POSTGRES_URL when set; else a throwaway server, stopped at session end.
    """
    configured = os.environ.get("VIGIL_TEST_POSTGRES_URL")
    if configured:
        yield sa.engine.make_url(configured).set(drivername="postgresql+asyncpg")
        return
    server = pg_server.start(pg_server.find_bindir())
    try:
        yield server.url
    finally:
        pg_server.stop(server)


@pytest.fixture
async def postgres_database(postgres_url: sa.engine.URL) -> AsyncIterator[sa.engine.URL]:
    """A fresh empty database for one test."""
    async with pg_server.fresh_database(postgres_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_target(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> storage.StoreTarget:
    """An empty store on SQLite (a file under tmp_path) and on PostgreSQL (a new database)."""
    if request.param == "sqlite":
        url = sa.engine.URL.create("sqlite+aiosqlite", database=f"{tmp_path}/vigil.db")
        return storage.StoreTarget(url)
    return storage.StoreTarget(request.getfixturevalue("postgres_database"))


def _instance(tmp_path: pathlib.Path, store_section: str) -> harness.Instance:
    home = tmp_path / "home"
    home.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    instance = harness.Instance(home=home, cwd=cwd, env=harness.base_env(home))
    # Launched at once, so that a run needs no daemon; the queue has tests of its own.
    instance.write_config(harness.workspace_yaml() + harness.IMMEDIATE + store_section)
    return instance


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def instance(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> harness.Instance:
    """An instance driven through the CLI (example and test code locations), on each store."""
    if request.param == "sqlite":
        return _instance(tmp_path, harness.store_yaml(None))
    url = request.getfixturevalue("postgres_database")
    return _instance(tmp_path, harness.store_yaml(url))


@pytest.fixture
def sqlite_instance(tmp_path: pathlib.Path) -> harness.Instance:
    return _instance(tmp_path, harness.store_yaml(None))


@pytest.fixture
def pg_instance(tmp_path: pathlib.Path, postgres_database: sa.engine.URL) -> harness.Instance:
    """An instance on a fresh PostgreSQL database (many daemons share one)."""
    return _instance(tmp_path, harness.store_yaml(postgres_database))
