"""The daemon's run-end follower on a real store: each end reported once, from its start."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from prometheus_client import parser

from tests import pg_server
from vigil import runs, storage
from vigil.daemon import metrics, run_ends
from vigil.storage import sql

S = runs.RunStatus


def exposed(exported: metrics.Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = exported.render().decode("utf-8")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
    }


async def started(store: sql.SqlStore, run_id: str, job: str, at: float) -> None:
    run = runs.Run(run_id=run_id, job_name=job, status=S.STARTED, created_at=at, start_time=at)
    await store.add_run(run)


async def end(store: sql.SqlStore, run_id: str, status: runs.RunStatus, at: float) -> None:
    assert await store.end_run(run_id, S.STARTED, runs.RunEnd(status, "ended"), at)


async def test_each_end_after_the_start_counts_once_by_job_and_status(
    store: sql.SqlStore,
) -> None:
    exported = metrics.Metrics(version="0", started_at=0.0)
    follower = run_ends.RunEndFollower(store, exported)
    await started(store, "before", "etl", 1.0)
    await end(store, "before", S.SUCCESS, 2.0)
    await follower.catch_up()  # the cursor starts at the newest event: "before" is not ours
    await started(store, "a", "etl", 10.0)
    await started(store, "b", "etl", 10.0)
    await started(store, "c", "report", 10.0)
    await end(store, "a", S.SUCCESS, 40.0)
    await end(store, "b", S.FAILURE, 3610.0)
    await end(store, "c", S.SUCCESS, 11.0)

    await follower.catch_up()
    await follower.catch_up()  # nothing new: nothing counted twice

    found = exposed(exported)
    ended = "vigil_runs_ended_total"
    assert found[(ended, (("job_name", "etl"), ("status", "SUCCESS")))] == 1
    assert found[(ended, (("job_name", "etl"), ("status", "FAILURE")))] == 1
    assert found[(ended, (("job_name", "report"), ("status", "SUCCESS")))] == 1
    duration = "vigil_run_duration_seconds"
    assert found[(f"{duration}_count", (("job_name", "etl"),))] == 2
    assert found[(f"{duration}_sum", (("job_name", "etl"),))] == 30.0 + 3600.0
    assert found[(f"{duration}_bucket", (("job_name", "etl"), ("le", "60.0")))] == 1
    assert found[(f"{duration}_sum", (("job_name", "report"),))] == 1.0


async def test_a_run_canceled_before_it_started_counts_without_a_duration(
    store: sql.SqlStore,
) -> None:
    exported = metrics.Metrics(version="0", started_at=0.0)
    follower = run_ends.RunEndFollower(store, exported)
    await follower.catch_up()
    await store.add_run(runs.Run(run_id="q", job_name="etl", status=S.QUEUED, created_at=1.0))
    canceled = await store.request_cancel("q", 2.0)
    assert canceled.status is S.CANCELED

    await follower.catch_up()

    found = exposed(exported)
    assert found[("vigil_runs_ended_total", (("job_name", "etl"), ("status", "CANCELED")))] == 1
    assert ("vigil_run_duration_seconds_count", (("job_name", "etl"),)) not in found


async def allow_connections(admin: sa.engine.URL, database: str, allowed: bool) -> None:
    """Open or close a database to new connections; closing also ends the open ones."""
    await pg_server.admin_execute(
        admin, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}'
    )
    if not allowed:
        await pg_server.admin_execute(
            admin,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()",
        )


@pytest.mark.postgres
async def test_an_outage_counts_a_store_error_and_loses_no_end(
    postgres_url: sa.engine.URL, postgres_database: sa.engine.URL
) -> None:
    name = postgres_database.database
    assert name is not None
    store = await storage.open_store(storage.StoreTarget(postgres_database))
    try:
        exported = metrics.Metrics(version="0", started_at=0.0)
        follower = run_ends.RunEndFollower(store, exported)
        await follower.catch_up()
        await started(store, "a", "etl", 10.0)
        await end(store, "a", S.SUCCESS, 20.0)
        await allow_connections(postgres_url, name, allowed=False)

        await follower.catch_up()
        found = exposed(exported)
        assert found[("vigil_store_errors_total", ())] == 1
        assert not any(key[0] == "vigil_runs_ended_total" for key in found)

        await allow_connections(postgres_url, name, allowed=True)
        await follower.catch_up()
        found = exposed(exported)
        assert found[("vigil_runs_ended_total", (("job_name", "etl"), ("status", "SUCCESS")))] == 1
    finally:
        await allow_connections(postgres_url, name, allowed=True)
        await store.close()
