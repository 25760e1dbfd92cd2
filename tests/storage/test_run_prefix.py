"""Run ids by prefix (`run_ids_with_prefix`), on SQLite and a real PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_asyncio

from vigil import runs, storage
from vigil.storage import schema, sql

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


async def test_the_query_reads_the_primary_key_index(store_target: storage.StoreTarget) -> None:
    postgres = store_target.url.get_backend_name() == "postgresql"
    query = sql.run_ids_query("abcd", 6, postgres=postgres)
    engine = sa_asyncio.create_async_engine(store_target.url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(schema.metadata.create_all)
            literal = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            if postgres:
                await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
                plan = (await conn.execute(sa.text(f"EXPLAIN {literal}"))).scalars().all()
            else:
                rows = await conn.execute(sa.text(f"EXPLAIN QUERY PLAN {literal}"))
                plan = [row[-1] for row in rows]
    finally:
        await engine.dispose()
    text = " ".join(plan)
    if postgres:  # the LIKE becomes a range of the index (the server's collation is C)
        assert "Index Only Scan using pk_runs" in text, plan
        assert "Index Cond: ((run_id >= 'abcd'" in text, plan
    else:
        assert "SEARCH runs USING COVERING INDEX" in text, plan
        assert "(run_id>? AND run_id<?)" in text, plan
