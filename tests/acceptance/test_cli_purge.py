"""`vigil instance purge`: ended runs older than an age go, with their events and files."""

from __future__ import annotations

import sqlalchemy as sa

from tests.acceptance import schemas
from tests.acceptance.harness import Instance, run_id_of
from tests.acceptance.test_cli_errors import assert_clean_error
from vigil import runs
from vigil.config import loader
from vigil.storage import engine, schema

DAY = 86400.0
QUEUED_LONG_AGO = "abcd1111-0000-4000-8000-000000000001"


async def age_one_run(instance: Instance, run_id: str) -> None:
    """Make one run 40 days old, and add a run QUEUED as long ago (never purged)."""
    store = await engine.open_store(loader.store_target(loader.load_settings(instance.home)))
    try:
        table = schema.runs
        older = {"updated_at": table.c.updated_at - 40 * DAY}
        async with store.engine.begin() as conn:
            await conn.execute(sa.update(table).where(table.c.run_id == run_id).values(older))
        queued = runs.Run(QUEUED_LONG_AGO, "orders", runs.RunStatus.QUEUED, updated_at=1.0)
        await store.add_run(queued)
    finally:
        await store.close()


def _purge(instance: Instance, *args: str) -> dict[str, object]:
    """The purge's JSON, checked against its schema (docs/cli-json/instance-purge.json)."""
    data: dict[str, object] = schemas.check(
        "instance purge", instance.ok("instance", "purge", *args, "--json")
    )
    return data


async def test_purge_removes_old_ended_runs_and_their_files(instance: Instance) -> None:
    old = run_id_of(instance.ok("run", "launch", "hello", "--wait"))
    recent = run_id_of(instance.ok("run", "launch", "hello", "--wait"))
    await age_one_run(instance, old)
    logs = instance.home / "logs" / old
    assert logs.is_dir()

    dry = _purge(instance, "--older-than", "30d", "--dry-run")
    assert dry["dry_run"] is True
    assert dry["runs"] == 1
    assert isinstance(dry["events"], int)
    assert dry["events"] > 0
    assert instance.show(old)["status"] == "SUCCESS"  # a dry run deletes nothing

    assert _purge(instance, "--older-than", "30d", "--status", "failure")["runs"] == 0
    done = _purge(instance, "--older-than", "30d")
    assert (done["runs"], done["events"], done["dry_run"]) == (1, dry["events"], False)
    assert isinstance(done["files"], int)
    assert done["files"] >= 1

    assert_clean_error(instance.vigil("run", "show", old), old)
    assert not logs.exists()
    assert instance.show(recent)["status"] == "SUCCESS"
    assert instance.show(QUEUED_LONG_AGO)["status"] == "QUEUED"
    again = instance.ok("instance", "purge", "--older-than", "30d")
    assert again.strip() == "purged 0 runs, 0 events and 0 run directories"


def test_a_bad_age_is_one_line_and_changes_nothing(sqlite_instance: Instance) -> None:
    run_id = run_id_of(sqlite_instance.ok("run", "launch", "hello", "--wait"))
    for bad in ("30x", "-1d", "0d", "soon", "99999d"):
        result = sqlite_instance.vigil("instance", "purge", "--older-than", bad)
        err = assert_clean_error(result, "error: --older-than:", bad)
        assert len(err.strip().splitlines()) == 1
    assert sqlite_instance.show(run_id)["status"] == "SUCCESS"
