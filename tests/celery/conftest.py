"""Celery fixtures: a throwaway redis-server, an instance whose launcher is Celery, and
real `vigil celery worker` processes (see tests/redis_server.py, tests/celery/workers.py)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from tests import redis_server
from tests.acceptance import harness
from tests.celery.workers import Workers
from tests.daemon import process
from tests.daemon.process import Daemons

QUEUED = "queued\n  options:\n    poll_interval: 0.2\n    unavailable_retry: 0.5"


@pytest.fixture
def redis() -> Iterator[redis_server.Server]:
    server = redis_server.start()
    try:
        yield server
    finally:
        redis_server.stop(server)


def celery_yaml(broker_url: str, coordinator: str = "immediate") -> str:
    return (
        f"run_coordinator:\n  type: {coordinator}\n"
        "run_launcher:\n  type: celery\n"
        f"  options:\n    broker_url: {broker_url}\n    connect_timeout: 5\n"
    )


def celery_instance(
    tmp_path: pathlib.Path,
    broker_url: str,
    store_section: str,
    coordinator: str = "immediate",
    workspace: str | None = None,
) -> harness.Instance:
    """A migrated instance launching on Celery; `store_section` may carry more settings,
    `workspace` replaces the test workspace."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    instance = harness.Instance(home=home, cwd=cwd, env=harness.base_env(home))
    workspace = workspace or harness.workspace_yaml()
    config = workspace + celery_yaml(broker_url, coordinator) + store_section
    instance.write_config(config)
    instance.ok("instance", "migrate")
    return instance


@pytest.fixture
def pg_instance(
    tmp_path: pathlib.Path, redis: redis_server.Server, postgres_database: object
) -> harness.Instance:
    """An instance on PostgreSQL (CLI, daemon and Celery workers are separate processes, as
    on separate machines) whose runs go to Celery through `redis`."""
    return celery_instance(tmp_path, redis.url, harness.store_yaml(postgres_database))


@pytest.fixture
def workers(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Workers]:
    """Start `vigil celery worker` processes on the test's instance; stopped at the end."""
    name = "pg_instance" if "pg_instance" in request.fixturenames else "sqlite_celery_instance"
    started = Workers(request.getfixturevalue(name), tmp_path)
    try:
        yield started
    finally:
        for worker in started.stop_all():
            print(f"--- celery worker {worker.name} log ---\n{worker.log()}")


@pytest.fixture
def sqlite_celery_instance(tmp_path: pathlib.Path, redis: redis_server.Server) -> harness.Instance:
    """A SQLite instance (one machine) whose queued runs a daemon sends to Celery."""
    instance = celery_instance(tmp_path, redis.url, "", coordinator=QUEUED)
    process.configure(instance, "    []\n")  # no loops of its own
    return instance


@pytest.fixture
def daemons(sqlite_celery_instance: harness.Instance, tmp_path: pathlib.Path) -> Iterator[Daemons]:
    """Start `vigil daemon run` processes on the instance; all killed at the end."""
    started = Daemons(sqlite_celery_instance, tmp_path)
    try:
        yield started
    finally:
        for daemon in started.stop_all():
            print(f"--- daemon {daemon.pid} log ---\n{daemon.log()}")
