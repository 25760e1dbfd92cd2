"""Run ids as people type them: a unique prefix stands for the id; tables show short ids."""

from __future__ import annotations

import json

from tests.acceptance.harness import Instance
from tests.acceptance.test_cli_errors import assert_clean_error
from vigil import runs
from vigil.config import loader
from vigil.storage import engine

FIRST = "abcd1111-0000-4000-8000-000000000001"
SECOND = "abcd2222-0000-4000-8000-000000000002"


async def _add_runs(instance: Instance) -> None:
    store = await engine.open_store(loader.store_target(loader.load_settings(instance.home)))
    try:
        for run_id in (FIRST, SECOND):
            await store.add_run(
                runs.Run(run_id=run_id, job_name="orders", status=runs.RunStatus.QUEUED)
            )
    finally:
        await store.close()


async def test_a_unique_prefix_stands_for_the_run_id(instance: Instance) -> None:
    instance.ok("instance", "migrate")
    await _add_runs(instance)

    assert instance.show("abcd1")["run_id"] == FIRST
    assert instance.show(SECOND)["run_id"] == SECOND
    assert instance.ok("run", "events", "abcd2", "--json") == ""
    assert instance.ok("run", "cancel", "abcd2", "--timeout", "0").strip() == (f"{SECOND} CANCELED")


async def test_an_ambiguous_prefix_lists_the_candidates(instance: Instance) -> None:
    instance.ok("instance", "migrate")
    await _add_runs(instance)

    err = assert_clean_error(instance.vigil("run", "show", "abcd"), "ambiguous", FIRST, SECOND)
    assert len(err.strip().splitlines()) == 1
    assert_clean_error(instance.vigil("run", "show", "abc"), "abc")  # too short: no prefix
    assert_clean_error(instance.vigil("run", "show", "abce"), "abce")
    assert instance.show(FIRST)["status"] == "QUEUED"


async def test_tables_show_short_ids_and_json_whole_ones(instance: Instance) -> None:
    instance.ok("instance", "migrate")
    await _add_runs(instance)

    table = instance.ok("run", "list")
    assert FIRST[:8] in table
    assert FIRST not in table
    assert {row["run_id"] for row in json.loads(instance.ok("run", "list", "--json"))} == {
        FIRST,
        SECOND,
    }
