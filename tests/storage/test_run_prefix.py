"""Run ids by prefix (`run_ids_with_prefix`), on SQLite and a real PostgreSQL."""

from __future__ import annotations

from vigil import runs
from vigil.storage import sql

IDS = ["abcd-0001", "abcd-0002", "abce-0001", "ABCD-0003", "a_cd-0001", "a%cd-0001", "b"]


async def _with_runs(store: sql.SqlStore) -> None:
    for run_id in IDS:
        await store.add_run(
            runs.Run(run_id=run_id, job_name="etl", status=runs.RunStatus.QUEUED, created_at=1.0)
        )


async def test_the_ids_that_start_with_the_prefix_in_order(store: sql.SqlStore) -> None:
    await _with_runs(store)

    assert await store.run_ids_with_prefix("abcd", 5) == ["abcd-0001", "abcd-0002"]
    assert await store.run_ids_with_prefix("abcd-0002", 5) == ["abcd-0002"]
    assert await store.run_ids_with_prefix("abc", 5) == ["abcd-0001", "abcd-0002", "abce-0001"]


async def test_at_most_limit_ids(store: sql.SqlStore) -> None:
    await _with_runs(store)

    assert await store.run_ids_with_prefix("abc", 2) == ["abcd-0001", "abcd-0002"]


async def test_case_and_like_characters_are_plain(store: sql.SqlStore) -> None:
    await _with_runs(store)

    assert await store.run_ids_with_prefix("ABCD", 5) == ["ABCD-0003"]
    assert await store.run_ids_with_prefix("a_cd", 5) == ["a_cd-0001"]
    assert await store.run_ids_with_prefix("a%cd", 5) == ["a%cd-0001"]
    assert await store.run_ids_with_prefix("a\\", 5) == []


async def test_no_run_with_the_prefix(store: sql.SqlStore) -> None:
    await _with_runs(store)

    assert await store.run_ids_with_prefix("zzzz", 5) == []
