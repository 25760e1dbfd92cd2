"""The daemon's Prometheus metrics: names, snapshots read at scrape time, the run counts."""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import subprocess

import anyio
import prometheus_client
import sqlalchemy as sa
from prometheus_client import parser

from tests.daemon import fakes
from vigil import coordinators, errors, runs, storage
from vigil.daemon import leases, loop, metrics, vitals
from vigil.daemon.loops import backfills as backfill_loop
from vigil.daemon.loops import instigation, monitor, retries
from vigil.daemon.loops import retention as retention_loop

START = 1_700_000_000.0


def statistics(name: str = "scheduler", **changes: object) -> loop.LoopStatistics:
    base = loop.LoopStatistics(
        name=name,
        interval=30.0,
        timeout=60.0,
        state=loop.LoopState.IDLE,
        iterations=7,
        failures=2,
        restarts=1,
        last_iteration_start=START + 100,
        last_iteration_end=START + 101,
        last_success=START + 101,
        last_duration=0.25,
        errors=(),
        consecutive_failures=0,
    )
    return dataclasses.replace(base, **changes)


def samples(rendered: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a text exposition, keyed by name and sorted labels."""
    found = {}
    for family in parser.text_string_to_metric_families(rendered.decode("utf-8")):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(rendered: bytes, name: str, **labels: str) -> float:
    return samples(rendered)[(name, tuple(sorted(labels.items())))]


def names(rendered: bytes) -> set[str]:
    return {name for name, _ in samples(rendered)}


def vigil_lines(rendered: bytes) -> list[bytes]:
    """The exposition without the process_* series (the CPU and memory move on their own)."""
    return [line for line in rendered.splitlines() if b"process_" not in line]


def make(*snapshots: loop.LoopStatistics) -> metrics.Metrics:
    return metrics.Metrics(version="1.2.3", started_at=START, loops=lambda: snapshots)


def test_build_info_and_start_time() -> None:
    rendered = make().render()
    assert value(rendered, "vigil_build_info", version="1.2.3") == 1
    assert value(rendered, "vigil_daemon_start_time_seconds") == START


def test_loop_series_come_from_the_snapshots() -> None:
    rendered = make(statistics(), statistics("queue", state=loop.LoopState.RUNNING)).render()
    assert value(rendered, "vigil_loop_iterations_total", loop="scheduler") == 7
    assert value(rendered, "vigil_loop_errors_total", loop="scheduler") == 2
    assert value(rendered, "vigil_loop_restarts_total", loop="scheduler") == 1
    assert value(rendered, "vigil_loop_last_success_timestamp_seconds", loop="queue") == START + 101
    assert value(rendered, "vigil_loop_last_iteration_duration_seconds", loop="queue") == 0.25
    assert value(rendered, "vigil_loop_interval_seconds", loop="queue") == 30
    assert value(rendered, "vigil_loop_timeout_seconds", loop="queue") == 60
    assert value(rendered, "vigil_loop_state", loop="queue", state="running") == 1
    assert value(rendered, "vigil_loop_state", loop="queue", state="idle") == 0
    assert value(rendered, "vigil_loop_state", loop="scheduler", state="idle") == 1


def test_counters_are_the_loops_totals_never_summed_across_scrapes() -> None:
    current = [statistics(iterations=3)]
    exported = metrics.Metrics(version="1", started_at=START, loops=lambda: current)
    first = vigil_lines(exported.render())
    assert vigil_lines(exported.render()) == first  # a second scrape counts nothing again
    current[0] = statistics(iterations=5, failures=3)
    rendered = exported.render()
    assert value(rendered, "vigil_loop_iterations_total", loop="scheduler") == 5
    assert value(rendered, "vigil_loop_errors_total", loop="scheduler") == 3


def test_a_loop_that_never_ran_has_no_timestamps() -> None:
    fresh = statistics(
        iterations=0,
        last_iteration_start=None,
        last_iteration_end=None,
        last_success=None,
        last_duration=None,
    )
    rendered = make(fresh).render()
    assert ("vigil_loop_last_success_timestamp_seconds", (("loop", "scheduler"),)) not in (
        samples(rendered)
    )
    assert value(rendered, "vigil_loop_iterations_total", loop="scheduler") == 0


def test_runs_by_status_only_after_the_first_snapshot_and_every_status() -> None:
    exported = make()
    assert "vigil_runs" not in names(exported.render())
    exported.set_run_counts({runs.RunStatus.QUEUED: 4, runs.RunStatus.SUCCESS: 10})
    rendered = exported.render()
    assert value(rendered, "vigil_runs", status="QUEUED") == 4
    assert value(rendered, "vigil_runs", status="SUCCESS") == 10
    for status in runs.RunStatus:
        assert ("vigil_runs", (("status", status.value),)) in samples(rendered)


def test_events_reported_as_they_happen() -> None:
    exported = make()
    exported.observe_launch(0.2)
    exported.observe_launch(3.0)
    exported.launch_failed()
    exported.store_error()
    exported.observe_iteration("queue", 0.03)
    rendered = exported.render()
    assert value(rendered, "vigil_runs_launched_total") == 2
    assert value(rendered, "vigil_run_launch_failures_total") == 1
    assert value(rendered, "vigil_store_errors_total") == 1
    assert value(rendered, "vigil_run_launch_duration_seconds_count") == 2
    assert value(rendered, "vigil_run_launch_duration_seconds_bucket", le="0.25") == 1
    assert value(rendered, "vigil_loop_iteration_duration_seconds_count", loop="queue") == 1


def test_no_created_series_no_global_registry_and_no_run_ids() -> None:
    first, second = make(statistics()), make(statistics())  # two registries coexist
    second.observe_launch(1.0)
    rendered = first.render()
    assert not any(name.endswith("_created") for name in names(rendered))
    assert b"vigil_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)
    labels = {key for _, pairs in samples(rendered) for key, _ in pairs}
    assert labels <= {"loop", "state", "status", "version", "le"}


def test_exposition_passes_promtool_when_installed() -> None:
    """`promtool check metrics` lints the names and format; without promtool the parse above
    (prometheus_client's own parser in every other test) is the check."""
    promtool = shutil.which("promtool")
    exported = make(statistics())
    exported.set_run_counts({})
    exported.observe_launch(0.1)
    rendered = exported.render()
    assert exported.content_type.startswith("text/plain; version=0.0.4")
    if promtool is None:
        assert "vigil_runs" in names(rendered)
        return
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=rendered, capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


class FakeStore:
    def __init__(self, counts: dict[runs.RunStatus, int]) -> None:
        self.counts = counts
        self.calls = 0
        self.called_twice = anyio.Event()
        self.error: errors.StoreError | None = None

    async def count_runs_by_status(self) -> dict[runs.RunStatus, int]:
        self.calls += 1
        if self.calls == 2:
            self.called_twice.set()
        if self.error is not None:
            raise self.error
        return dict(self.counts)


async def test_refresh_keeps_the_last_snapshot_when_the_store_fails() -> None:
    store, exported = FakeStore({runs.RunStatus.STARTED: 3}), make()
    assert await metrics.refresh_run_counts(store, exported)
    store.error = errors.StoreUnavailable("database is down")
    assert not await metrics.refresh_run_counts(store, exported)
    rendered = exported.render()
    assert value(rendered, "vigil_runs", status="STARTED") == 3
    assert value(rendered, "vigil_store_errors_total") == 1


async def test_watch_refreshes_until_cancelled() -> None:
    store, exported = FakeStore({runs.RunStatus.QUEUED: 1}), make()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(metrics.watch_run_counts, store, exported, 0)
            await store.called_twice.wait()
            group.cancel_scope.cancel()
    assert value(exported.render(), "vigil_runs", status="QUEUED") == 1


async def test_refresh_from_a_real_sqlite_store(tmp_path: pathlib.Path) -> None:
    url = sa.engine.URL.create("sqlite+aiosqlite", database=f"{tmp_path}/vigil.db")
    store = await storage.open_store(storage.StoreTarget(url))
    try:
        exported = make()
        assert await metrics.refresh_run_counts(store, exported)
    finally:
        await store.close()
    assert value(exported.render(), "vigil_runs", status="QUEUED") == 0


def test_the_queue_snapshot_is_exported_with_bounded_labels() -> None:
    exported = metrics.Metrics(version="1", started_at=0.0, loops=list)
    snapshot = coordinators.base.QueueStatistics(held={"global": 3, "tag": 1}, launches_in_flight=2)
    exported.watch_queue(lambda: snapshot)
    exported.observe_queue_wait(0.3)
    text = exported.render().decode()
    assert 'vigil_queue_held_runs{reason="global"} 3.0' in text
    assert 'vigil_queue_held_runs{reason="tag"} 1.0' in text
    assert "vigil_queue_launches_in_flight 2.0" in text
    assert "vigil_run_queue_wait_seconds_count 1.0" in text


def test_schedule_and_sensor_metrics_read_the_instigation_snapshot() -> None:
    exported = make(statistics())
    snapshot = instigation.InstigationStatistics(
        ticks={("schedule", "SUCCESS"): 4, ("sensor", "FAILED"): 1},
        timeouts={"sensor": 1},
        instigators={("schedule", "running"): 3, ("schedule", "stopped"): 2},
    )
    exported.watch_instigation(lambda: snapshot)
    exported.observe_tick_delay("schedule", 0.03)
    exported.observe_evaluation("sensor", 0.2)
    rendered = exported.render()

    assert value(rendered, "vigil_ticks_total", kind="schedule", status="SUCCESS") == 4
    assert value(rendered, "vigil_ticks_total", kind="sensor", status="FAILED") == 1
    assert value(rendered, "vigil_evaluation_timeouts_total", kind="sensor") == 1
    assert value(rendered, "vigil_instigators", kind="schedule", status="stopped") == 2
    assert value(rendered, "vigil_tick_delay_seconds_count", kind="schedule") == 1
    assert value(rendered, "vigil_tick_delay_seconds_bucket", kind="schedule", le="0.05") == 1
    assert value(rendered, "vigil_sensor_evaluation_duration_seconds_sum") == 0.2
    # What alerts read with increase() is there at 0 before the first one happens.
    assert value(rendered, "vigil_ticks_total", kind="schedule", status="FAILED") == 0
    assert value(rendered, "vigil_evaluation_timeouts_total", kind="schedule") == 0


def test_the_monitor_and_retries_snapshots_are_exported() -> None:
    exported = metrics.Metrics(version="1", started_at=0.0, loops=list)
    watched = monitor.MonitorStatistics(ended={"worker_died": 2}, resumes=3, unknown=1)
    exported.watch_monitor(lambda: watched)
    backlog = retries.RetriesStatistics(submitted=4, backlog=2, next_due=START + 60)
    exported.watch_retries(lambda: backlog)
    rendered = exported.render()
    assert value(rendered, "vigil_runs_ended_by_monitor_total", reason="worker_died") == 2
    assert value(rendered, "vigil_runs_ended_by_monitor_total", reason="start_timeout") == 0
    assert value(rendered, "vigil_run_resumes_total") == 3
    assert value(rendered, "vigil_run_workers_unknown") == 1
    assert value(rendered, "vigil_run_retries_submitted_total") == 4
    assert value(rendered, "vigil_run_retry_backlog") == 2
    assert value(rendered, "vigil_run_retry_next_due_timestamp_seconds") == START + 60


def test_the_backfills_snapshot_is_exported() -> None:
    exported = metrics.Metrics(version="1", started_at=0.0, loops=list)
    snapshot = backfill_loop.BackfillStatistics(
        submitted=1500, by_status={"SUBMITTING": 1, "SUBMITTED": 2, "CANCELED": 0}, lag=12.5
    )
    exported.watch_backfills(lambda: snapshot)
    rendered = exported.render()
    assert value(rendered, "vigil_backfills", status="SUBMITTING") == 1
    assert value(rendered, "vigil_backfills", status="SUBMITTED") == 2
    assert value(rendered, "vigil_backfills", status="CANCELED") == 0
    assert value(rendered, "vigil_backfill_partitions_submitted_total") == 1500
    assert value(rendered, "vigil_backfill_lag_seconds") == 12.5


def test_the_retention_snapshot_is_exported() -> None:
    exported = metrics.Metrics(version="1", started_at=0.0, loops=list)
    snapshot = retention_loop.RetentionStatistics(runs=120, events=900, files=200)
    exported.watch_retention(lambda: snapshot)
    rendered = exported.render()
    assert value(rendered, "vigil_purged_runs_total") == 120
    assert value(rendered, "vigil_purged_events_total") == 900
    assert value(rendered, "vigil_purged_run_directories_total") == 200


async def test_owned_units_and_takeovers_come_from_the_keepers_leases(
    tmp_path: pathlib.Path,
) -> None:
    """Two keepers on a real store: the second takes over the first's units once the
    first's membership expires; both export every kind, 0 included."""
    url = sa.engine.URL.create("sqlite+aiosqlite", database=f"{tmp_path}/vigil.db")
    store = await storage.open_store(storage.StoreTarget(url))
    clock = fakes.ManualClock(START)
    try:
        first = leases.Keeper(store, vitals.DaemonIdentity("a", "box", 1, START), clock, 10.0)
        await first.join()
        units = ["schedule:x", "schedule:y", "sensor:z"]
        assert await first.share("schedule:", units[:2]) == frozenset(units[:2])
        await first.own(leases.RETRIES)
        clock.advance(11.0)  # the first stops renewing: its membership expires
        second = leases.Keeper(store, vitals.DaemonIdentity("b", "box", 2, START), clock, 10.0)
        await second.join()
        await second.share("schedule:", units[:2])
        exported = make()
        exported.watch_leases(first.statistics)
        before = exported.render()
        exported = make()
        exported.watch_leases(second.statistics)
        after = exported.render()
    finally:
        await store.close()
    assert value(before, "vigil_owned_units", kind="schedule") == 2
    assert value(before, "vigil_owned_units", kind="retries") == 1
    assert value(before, "vigil_lease_takeovers_total", kind="schedule") == 0
    assert value(after, "vigil_owned_units", kind="schedule") == 2
    assert value(after, "vigil_owned_units", kind="retries") == 0
    assert value(after, "vigil_lease_takeovers_total", kind="schedule") == 2
    kinds = {dict(labels)["kind"] for name, labels in samples(after) if name.startswith("vigil_o")}
    assert kinds == set(vitals.UNIT_KINDS)
