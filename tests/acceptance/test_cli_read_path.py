"""The read commands answer on the quick path (no pydantic, no SQLAlchemy, no anyio) on
SQLite and PostgreSQL, with the same answers as the full path; whatever the quick path is
not sure of takes the full path, which words the error as before."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
from typing import Any

import pytest

from tests import imports
from tests.acceptance import harness

FULL_PATH = (
    "sqlalchemy",
    "pydantic",
    "pydantic_settings",
    "anyio",
    "alembic",
    "vigil.config.loader",
    "vigil.storage.sql",
    "fsspec",
)
PROBE = imports.probe(FULL_PATH)
QUEUED = "run_coordinator:\n  type: queued\n  options:\n    max_concurrent_runs: 0\n"


@pytest.fixture
def queued_instance(instance: harness.Instance) -> harness.Instance:
    """The instance, its runs left in the queue (the global limit is 0, no daemon)."""
    text = (instance.home / "vigil.yaml").read_text().replace(harness.IMMEDIATE, QUEUED)
    instance.write_config(text)
    instance.ok("instance", "migrate")
    return instance


def probe(instance: harness.Instance, *args: str) -> tuple[str, list[str]]:
    """The command's output, and the full path's modules it imported."""
    done = harness.subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=instance.cwd,
        env=instance.env,
        capture_output=True,
        text=True,
        timeout=harness.COMMAND_TIMEOUT,
        check=False,
    )
    imported: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return done.stdout, imported


def test_read_commands_answer_without_the_full_path(queued_instance: harness.Instance) -> None:
    run_id = harness.run_id_of(queued_instance.ok("run", "launch", "hello"))
    for args in (
        ["run", "list"],
        ["run", "list", "--json", "--status", "queued", "--job", "hello"],
        ["run", "show", run_id[:8]],
        ["run", "show", run_id, "--json"],
        ["daemon", "status"],
        ["daemon", "status", "--json"],
        ["daemon", "liveness-check"],
        ["queue"],
        ["queue", "--json"],
    ):
        output, imported = probe(queued_instance, *args)
        assert imported == [], args
        assert output, args
    listed: list[dict[str, Any]] = json.loads(queued_instance.ok("run", "list", "--json"))
    assert [r["run_id"] for r in listed] == [run_id]
    assert f"{run_id[:8]}  hello" in queued_instance.ok("queue")  # waits: the limit is 0


def test_the_quick_and_the_full_path_print_the_same(queued_instance: harness.Instance) -> None:
    run_id = harness.run_id_of(queued_instance.ok("run", "launch", "hello"))
    # A setting the quick read does not read sends every command down the full path.
    full = {"VIGIL_DAEMON__SHUTDOWN_GRACE": "7"}
    for args in (
        ["run", "list", "--json"],
        ["run", "show", run_id, "--json"],
        ["daemon", "status", "--json"],
        ["queue", "--json"],
    ):
        quick = queued_instance.vigil(*args)
        slow = queued_instance.vigil(*args, env=full)
        assert (quick.returncode, quick.stdout) == (slow.returncode, slow.stdout), args
        assert quick.returncode == 0, quick.stderr


def test_errors_the_quick_path_is_unsure_of_read_as_before(instance: harness.Instance) -> None:
    instance.ok("instance", "migrate")
    config = (instance.home / "vigil.yaml").read_text()
    instance.write_config(config + "daemon:\n  heartbeat_interval: 1e308\n")
    refused = instance.vigil("run", "list")
    assert refused.returncode == 2
    assert "heartbeat_interval" in refused.stderr
    instance.write_config(config)
    typo = instance.vigil("run", "list", env={"VIGIL_STOER__KIND": "sqlite"})
    assert typo.returncode == 2
    assert "VIGIL_STOER__KIND: no such setting" in typo.stderr


def test_a_missing_or_older_store_takes_the_full_path(sqlite_instance: harness.Instance) -> None:
    database = sqlite_instance.home / "vigil.db"
    assert not database.exists()
    missing = sqlite_instance.vigil("run", "show", "abcd1234")  # the full path makes it
    assert missing.returncode == 2
    assert "no run with id 'abcd1234'" in missing.stderr
    with contextlib.closing(sqlite3.connect(database)) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    older = sqlite_instance.vigil("run", "list")
    assert older.returncode != 0
    assert "vigil instance migrate" in older.stderr
