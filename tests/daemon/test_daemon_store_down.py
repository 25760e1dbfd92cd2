"""A daemon started before its database waits for it (backoff, logged) instead of exiting."""

from __future__ import annotations

import pathlib
import signal
import uuid

import pytest
import sqlalchemy as sa

from tests import pg_server
from tests.acceptance import harness
from tests.daemon.process import TICKER, Daemons, configure, wait_for_rows


@pytest.mark.postgres
async def test_the_daemon_waits_for_a_store_that_is_not_there_yet(
    postgres_url: sa.engine.URL, tmp_path: pathlib.Path
) -> None:
    name = f"vigil_late_{uuid.uuid4().hex[:12]}"
    late = postgres_url.set(database=name)
    home = tmp_path / "home"
    home.mkdir()
    instance = harness.Instance(home=home, cwd=tmp_path, env=harness.base_env(home))
    instance.write_config(harness.workspace_yaml() + harness.store_yaml(late))
    configure(instance, TICKER)
    daemons = Daemons(instance, tmp_path)
    try:
        daemon = daemons.start()
        await daemon.logged("store.unavailable")
        assert daemon.process.poll() is None  # still waiting, not exited
        await pg_server.admin_execute(postgres_url, f'CREATE DATABASE "{name}"')
        await wait_for_rows(instance, {"supervisor": "healthy", "ticker": "healthy"})
        daemon.send(signal.SIGTERM)
        assert await daemon.exit_code() == 0
    finally:
        for daemon in daemons.stop_all():
            print(f"--- daemon {daemon.pid} log ---\n{daemon.log()}")
        await pg_server.admin_execute(
            postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        )
