"""Prometheus metrics of the daemon: the only module that imports prometheus_client.

Metrics read snapshots. At scrape time a collector reads each loop's `LoopStatistics`
(through a callable the supervisor provides) and the last run counts by status (refreshed
by `watch_run_counts`, a small daemon task, so a scrape never touches the database). The
few things no snapshot holds are reported as they happen: a launch and its duration, a
failed launch, a store error, one loop iteration's duration.

Names follow the Prometheus conventions: base units (seconds), `_total` counters, labels
with bounded values only (a loop name, a run status; never a run id).

    vigil_build_info{version}                          1
    vigil_daemon_start_time_seconds                    gauge
    vigil_runs{status}                                 gauge, every status (0 included)
    vigil_runs_launched_total                          counter
    vigil_run_launch_failures_total                    counter
    vigil_run_launch_duration_seconds                  histogram
    vigil_store_errors_total                           counter
    vigil_loop_iteration_duration_seconds{loop}        histogram
    vigil_loop_iterations_total{loop}                  counter   (snapshot)
    vigil_loop_errors_total{loop}                      counter   (snapshot)
    vigil_loop_restarts_total{loop}                    counter   (snapshot)
    vigil_loop_consecutive_failures{loop}              gauge     (snapshot)
    vigil_loop_last_success_timestamp_seconds{loop}    gauge     (snapshot, once it exists)
    vigil_loop_last_iteration_start_timestamp_seconds{loop}   gauge (snapshot)
    vigil_loop_last_iteration_duration_seconds{loop}   gauge     (snapshot)
    vigil_loop_interval_seconds{loop}                  gauge     (snapshot)
    vigil_loop_timeout_seconds{loop}                   gauge     (snapshot)
    vigil_loop_state{loop,state}                       gauge, 1 for the current state
    vigil_tick_delay_seconds{kind}                     histogram (evaluation start - scheduled time)
    vigil_sensor_evaluation_duration_seconds           histogram
    vigil_ticks_total{kind,status}                     counter   (snapshot)
    vigil_evaluation_timeouts_total{kind}              counter   (snapshot)
    vigil_instigators{kind,status}                     gauge     (snapshot: running, stopped)
    vigil_queue_held_runs{reason}, vigil_queue_launches_in_flight    (queue snapshot)
    vigil_runs_ended_by_monitor_total{reason}          counter   (monitor snapshot)
    vigil_run_resumes_total                            counter   (monitor snapshot)
    vigil_run_workers_unknown                          gauge     (monitor snapshot)
    vigil_run_retries_submitted_total                  counter   (retries snapshot)
    vigil_run_retry_backlog                            gauge     (retries snapshot)
    vigil_run_retry_next_due_timestamp_seconds         gauge     (retries snapshot, if any)
    vigil_backfills{status}                            gauge     (backfills snapshot)
    vigil_backfill_partitions_submitted_total          counter   (backfills snapshot)
    vigil_backfill_lag_seconds                         gauge     (backfills snapshot)
    vigil_runs_ended_total{job_name,status}            counter   (run_ends.py follows the ends)
    vigil_run_duration_seconds{job_name}               histogram (start to end, started runs)
    process_*                                          the daemon's CPU, memory, fds (Linux)
    vigil_purged_runs_total, vigil_purged_events_total, vigil_purged_run_directories_total
                                                       counters  (retention snapshot)
    vigil_owned_units{kind}                            gauge     (leases snapshot, every kind)
    vigil_lease_takeovers_total{kind}                  counter   (leases snapshot, every kind)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

import anyio
import prometheus_client
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from vigil import errors, runs, ticks
from vigil.daemon import loop as loop_mod
from vigil.daemon import vitals

logger = logging.getLogger(__name__)

# The classic text format: every Prometheus (2.x and 3.x) and compatible scraper reads it,
# and with only legacy metric names it is byte-for-byte what the 1.0.0 format would say.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LAUNCH_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
TICK_DELAY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
EVALUATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)
ITERATION_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
RUN_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)

LoopStatisticsSource = Callable[[], Sequence[loop_mod.LoopStatistics]]


class RunCounter(Protocol):
    """The one store verb the run-count snapshot needs."""

    async def count_runs_by_status(self) -> dict[runs.RunStatus, int]: ...


class Metrics:
    """The daemon's metrics in a registry of their own (never the process-global one).

    `version` is vigil's version, `started_at` the daemon's start (Unix seconds) and
    `loops` returns the supervisor's current loop snapshots; it is called on every scrape.
    The metrics are built before the loops (the coordinator and the instigation loops take
    them as their observer), so `loops` may instead be given later with `watch_loops`.
    """

    content_type = CONTENT_TYPE

    def __init__(
        self, *, version: str, started_at: float, loops: LoopStatisticsSource = tuple
    ) -> None:
        # `_created` series mean nothing in the text format; only this module has them.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = prometheus_client.CollectorRegistry()
        self._runs = _RunCountCollector()
        self.registry.register(self._runs)
        self._loops = _LoopCollector(loops)
        self.registry.register(self._loops)
        self._build_info(version, started_at)
        # process_*: CPU seconds, resident and virtual memory, open and max fds (from /proc).
        prometheus_client.ProcessCollector(registry=self.registry)
        self._run_ends = _RunEndMetrics(self.registry)
        self._launched = self._counter("vigil_runs_launched", "Runs given a worker.")
        self._launch_failures = self._counter(
            "vigil_run_launch_failures", "Runs whose launch raised (the run ended FAILURE)."
        )
        self._store_errors = self._counter(
            "vigil_store_errors", "Store operations of the daemon that failed."
        )
        self._launch_duration = prometheus_client.Histogram(
            "vigil_run_launch_duration_seconds",
            "Seconds from claiming a run to its launcher returning.",
            buckets=LAUNCH_BUCKETS,
            registry=self.registry,
        )
        self._queue_wait = prometheus_client.Histogram(
            "vigil_run_queue_wait_seconds",
            "Seconds from a run's submission to its launch.",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=self.registry,
        )
        self._iteration_duration = prometheus_client.Histogram(
            "vigil_loop_iteration_duration_seconds",
            "Seconds one loop iteration took (successful or not).",
            labelnames=("loop",),
            buckets=ITERATION_BUCKETS,
            registry=self.registry,
        )

        self._tick_delay = prometheus_client.Histogram(
            "vigil_tick_delay_seconds",
            "Seconds from a schedule tick's scheduled time to the start of its evaluation.",
            labelnames=("kind",),
            buckets=TICK_DELAY_BUCKETS,
            registry=self.registry,
        )
        self._sensor_evaluation = prometheus_client.Histogram(
            "vigil_sensor_evaluation_duration_seconds",
            "Seconds a sensor's evaluation process took to answer.",
            buckets=EVALUATION_BUCKETS,
            registry=self.registry,
        )

    def _build_info(self, version: str, started_at: float) -> None:
        info = prometheus_client.Info("vigil_build", "vigil's version.", registry=self.registry)
        info.info({"version": version})
        start = prometheus_client.Gauge(
            "vigil_daemon_start_time_seconds",
            "When the daemon started, in Unix seconds.",
            registry=self.registry,
        )
        start.set(started_at)

    def _counter(self, name: str, documentation: str) -> prometheus_client.Counter:
        return prometheus_client.Counter(name, documentation, registry=self.registry)

    def observe_launch(self, seconds: float) -> None:
        """A run was launched; `seconds` from its claim to the launcher returning."""
        self._launched.inc()
        self._launch_duration.observe(seconds)

    def observe_queue_wait(self, seconds: float) -> None:
        """A queued run was launched `seconds` after it was submitted."""
        self._queue_wait.observe(seconds)

    def watch_loops(self, source: LoopStatisticsSource) -> None:
        """Export the supervisor's loop snapshots (replacing the `loops` given at first)."""
        self._loops.source = source

    def watch_queue(self, source: Callable[[], QueueSnapshot]) -> None:
        """Export the queue's snapshot (runs held back by reason, launches in flight)."""
        self.registry.register(_QueueCollector(source))

    def watch_instigation(self, source: Callable[[], InstigationSnapshot]) -> None:
        """Export the scheduler's and sensors' snapshot (ticks, timeouts, instigators)."""
        self.registry.register(_InstigationCollector(source))

    def observe_tick_delay(self, kind: str, seconds: float) -> None:
        """A tick's evaluation started `seconds` after its scheduled time."""
        self._tick_delay.labels(kind=kind).observe(max(0.0, seconds))

    def observe_evaluation(self, kind: str, seconds: float) -> None:
        """An evaluation took `seconds` (sensors are exported)."""
        if kind == "sensor":
            self._sensor_evaluation.observe(seconds)

    def watch_monitor(self, source: Callable[[], MonitorSnapshot]) -> None:
        """Export the run monitor's snapshot (runs it ended by reason, resumes, unknowns)."""
        self.registry.register(_MonitorCollector(source))

    def watch_retries(self, source: Callable[[], RetriesSnapshot]) -> None:
        """Export the retries loop's snapshot (retries submitted, the backlog)."""
        self.registry.register(_RetriesCollector(source))

    def watch_backfills(self, source: Callable[[], BackfillsSnapshot]) -> None:
        """Export the backfill loop's snapshot (backfills by status, partitions submitted)."""
        self.registry.register(_BackfillsCollector(source))

    def observe_run_end(self, job: str, status: str, seconds: float | None) -> None:
        """A run of `job` ended `status`, `seconds` after its start (None: never started)."""
        self._run_ends.observe(job, status, seconds)

    def watch_retention(self, source: Callable[[], RetentionSnapshot]) -> None:
        """Export the retention loop's snapshot (runs, events, run directories purged)."""
        self.registry.register(_RetentionCollector(source))

    def watch_leases(self, source: Callable[[], LeaseSnapshot]) -> None:
        """Export the daemon's leases (units owned by kind, takeovers of others' units)."""
        self.registry.register(_LeaseCollector(source))

    def launch_failed(self) -> None:
        """A launcher raised: the run did not get a worker."""
        self._launch_failures.inc()

    def store_error(self) -> None:
        """A store operation of the daemon failed (any `StoreError`)."""
        self._store_errors.inc()

    def observe_iteration(self, loop: str, seconds: float) -> None:
        """One iteration of `loop` ended (returned or raised) after `seconds`."""
        self._iteration_duration.labels(loop=loop).observe(seconds)

    def set_run_counts(self, counts: Mapping[runs.RunStatus, int]) -> None:
        """Replace the runs-by-status snapshot (statuses not named count 0)."""
        self._runs.counts = dict(counts)

    def render(self) -> bytes:
        """Every metric in the Prometheus text format (`content_type`)."""
        return prometheus_client.generate_latest(self.registry)


class _RunEndMetrics:
    """`vigil_runs_ended_total{job_name,status}` and `vigil_run_duration_seconds{job_name}`.

    `job_name`, not `job`: Prometheus gives every scraped series its scrape job as `job`,
    and would rename ours `exported_job`.
    """

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self._ended = prometheus_client.Counter(
            "vigil_runs_ended",
            "Runs ended since the daemon started, by job and status (SUCCESS, FAILURE, CANCELED).",
            labelnames=("job_name", "status"),
            registry=registry,
        )
        self._duration = prometheus_client.Histogram(
            "vigil_run_duration_seconds",
            "Seconds from a run's start to its end, by job (runs that started).",
            labelnames=("job_name",),
            buckets=RUN_DURATION_BUCKETS,
            registry=registry,
        )

    def observe(self, job: str, status: str, seconds: float | None) -> None:
        self._ended.labels(job_name=job, status=status).inc()
        if seconds is not None:
            self._duration.labels(job_name=job).observe(seconds)


async def refresh_run_counts(store: RunCounter, metrics: Metrics) -> bool:
    """Read the run counts once into the snapshot; a store error keeps the old one."""
    try:
        counts = await store.count_runs_by_status()
    except errors.StoreError as exc:
        metrics.store_error()
        logger.warning(
            "cannot count runs: %s",
            exc,
            extra={"event": "metrics.run_counts_failed", "error": str(exc)},
        )
        return False
    metrics.set_run_counts(counts)
    return True


async def watch_run_counts(store: RunCounter, metrics: Metrics, interval: float) -> None:
    """A daemon task: refresh the run counts now, then every `interval` seconds, forever."""
    while True:
        await refresh_run_counts(store, metrics)
        await anyio.sleep(interval)


class _RunCountCollector:
    """`vigil_runs{status}` from the last snapshot; nothing before the first one."""

    def __init__(self) -> None:
        self.counts: Mapping[runs.RunStatus, int] | None = None

    def collect(self) -> Iterator[Metric]:
        counts = self.counts
        if counts is None:
            return
        family = GaugeMetricFamily("vigil_runs", "Runs in the store by status.", labels=("status",))
        for status in runs.RunStatus:
            family.add_metric((status.value,), counts.get(status, 0))
        yield family


class _LoopCollector:
    """Per-loop series read from the supervisor's snapshots at scrape time.

    The counters are the loops' own running totals, reported as they are: nothing is
    accumulated here, so two scrapes never count one iteration twice.
    """

    def __init__(self, source: LoopStatisticsSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        snapshots = self.source()
        yield from _loop_counters(snapshots)
        yield from _loop_gauges(snapshots)
        yield _loop_states(snapshots)


_COUNTERS: tuple[tuple[str, str, Callable[[loop_mod.LoopStatistics], float]], ...] = (
    ("vigil_loop_iterations", "Iterations the loop completed or failed.", lambda s: s.iterations),
    ("vigil_loop_errors", "Iterations of the loop that raised.", lambda s: s.failures),
    ("vigil_loop_restarts", "Times the supervisor restarted the loop.", lambda s: s.restarts),
)

_GAUGES: tuple[tuple[str, str, Callable[[loop_mod.LoopStatistics], float | None]], ...] = (
    (
        "vigil_loop_last_success_timestamp_seconds",
        "When the loop's last successful iteration ended, in Unix seconds.",
        lambda s: s.last_success,
    ),
    (
        "vigil_loop_last_iteration_start_timestamp_seconds",
        "When the loop's last iteration started, in Unix seconds.",
        lambda s: s.last_iteration_start,
    ),
    (
        "vigil_loop_last_iteration_duration_seconds",
        "Seconds the loop's last finished iteration took.",
        lambda s: s.last_duration,
    ),
    (
        "vigil_loop_consecutive_failures",
        "Iterations that raised since the loop's last success.",
        lambda s: s.consecutive_failures,
    ),
    ("vigil_loop_interval_seconds", "The loop's interval.", lambda s: s.interval),
    ("vigil_loop_timeout_seconds", "The loop's iteration timeout.", lambda s: s.timeout),
)


def _loop_counters(snapshots: Sequence[loop_mod.LoopStatistics]) -> Iterator[Metric]:
    for name, documentation, read in _COUNTERS:
        family = CounterMetricFamily(name, documentation, labels=("loop",))
        for snapshot in snapshots:
            family.add_metric((snapshot.name,), read(snapshot))
        yield family


def _loop_gauges(snapshots: Sequence[loop_mod.LoopStatistics]) -> Iterator[Metric]:
    for name, documentation, read in _GAUGES:
        family = GaugeMetricFamily(name, documentation, labels=("loop",))
        for snapshot in snapshots:
            value = read(snapshot)
            if value is not None:
                family.add_metric((snapshot.name,), value)
        yield family


def _loop_states(snapshots: Sequence[loop_mod.LoopStatistics]) -> Metric:
    family = GaugeMetricFamily(
        "vigil_loop_state",
        "1 for the state the loop is in (starting, idle, running, backoff, stopped).",
        labels=("loop", "state"),
    )
    for snapshot in snapshots:
        for state in loop_mod.LoopState:
            family.add_metric((snapshot.name, state.value), float(snapshot.state is state))
    return family


class QueueSnapshot(Protocol):
    """What the queued coordinator's `statistics()` returns."""

    @property
    def held(self) -> Mapping[str, int]: ...
    @property
    def launches_in_flight(self) -> int: ...


class _QueueCollector:
    """Reads the queue snapshot at scrape time."""

    def __init__(self, source: Callable[[], QueueSnapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        held = GaugeMetricFamily(
            "vigil_queue_held_runs",
            "Queued runs held back at the last claim, by reason (global, tag, paused, batch).",
            labels=["reason"],
        )
        for reason, count in sorted(snapshot.held.items()):
            held.add_metric([reason], count)
        yield held
        yield GaugeMetricFamily(
            "vigil_queue_launches_in_flight",
            "Launches of claimed runs under way.",
            value=snapshot.launches_in_flight,
        )


class InstigationSnapshot(Protocol):
    """What the scheduler and sensor loops' shared `statistics()` returns."""

    @property
    def ticks(self) -> Mapping[tuple[str, str], int]: ...
    @property
    def timeouts(self) -> Mapping[str, int]: ...
    @property
    def instigators(self) -> Mapping[tuple[str, str], int]: ...


# Failed ticks and timeouts are exported from the start (0 until one happens), so that an
# alert's `increase()` sees the first one after a daemon start (a series born at 1 shows none).
ZERO_FAILED_TICKS = {
    (kind.value, ticks.TickStatus.FAILED.value): 0 for kind in ticks.InstigatorKind
}
ZERO_TIMEOUTS = {kind.value: 0 for kind in ticks.InstigatorKind}


class _InstigationCollector:
    """Reads the instigation snapshot at scrape time."""

    def __init__(self, source: Callable[[], InstigationSnapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        ticks = CounterMetricFamily(
            "vigil_ticks", "Ticks ended, by kind and status.", labels=("kind", "status")
        )
        for (kind, status), count in sorted((ZERO_FAILED_TICKS | dict(snapshot.ticks)).items()):
            ticks.add_metric((kind, status), count)
        yield ticks
        timeouts = CounterMetricFamily(
            "vigil_evaluation_timeouts",
            "Evaluations killed at their timeout, by kind.",
            labels=("kind",),
        )
        for kind, count in sorted((ZERO_TIMEOUTS | dict(snapshot.timeouts)).items()):
            timeouts.add_metric((kind,), count)
        yield timeouts
        instigators = GaugeMetricFamily(
            "vigil_instigators",
            "Schedules and sensors the daemon knows, by kind and status (running, stopped).",
            labels=("kind", "status"),
        )
        for (kind, status), count in sorted(snapshot.instigators.items()):
            instigators.add_metric((kind, status), count)
        yield instigators


# The reasons the monitor ends runs for, each exported from the start (0 until it happens).
MONITOR_REASONS = (
    runs.EndReason.START_TIMEOUT,
    runs.EndReason.WORKER_DIED,
    runs.EndReason.MAX_RUNTIME,
    runs.EndReason.CANCEL_TIMEOUT,
    runs.EndReason.CANCELED,
)


class MonitorSnapshot(Protocol):
    """What the monitor loop's `statistics()` returns."""

    @property
    def ended(self) -> Mapping[str, int]: ...
    @property
    def resumes(self) -> int: ...
    @property
    def unknown(self) -> int: ...


class _MonitorCollector:
    def __init__(self, source: Callable[[], MonitorSnapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        ended = CounterMetricFamily(
            "vigil_runs_ended_by_monitor",
            "Runs the monitor ended, by reason (start_timeout, worker_died, max_runtime, "
            "cancel_timeout, canceled: a canceling run whose worker was gone).",
            labels=["reason"],
        )
        reasons = {reason.value: 0 for reason in MONITOR_REASONS} | dict(snapshot.ended)
        for reason, count in sorted(reasons.items()):
            ended.add_metric([reason], count)
        yield ended
        yield CounterMetricFamily(
            "vigil_run_resumes",
            "Runs the monitor gave a new worker after theirs died.",
            value=snapshot.resumes,
        )
        yield GaugeMetricFamily(
            "vigil_run_workers_unknown",
            "Runs whose worker's health the launcher cannot tell now (checked with backoff).",
            value=snapshot.unknown,
        )


class RetriesSnapshot(Protocol):
    """What the retries loop's `statistics()` returns."""

    @property
    def submitted(self) -> int: ...
    @property
    def backlog(self) -> int: ...
    @property
    def next_due(self) -> float | None: ...


class _RetriesCollector:
    def __init__(self, source: Callable[[], RetriesSnapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        yield CounterMetricFamily(
            "vigil_run_retries_submitted",
            "Retry runs this daemon submitted.",
            value=snapshot.submitted,
        )
        yield GaugeMetricFamily(
            "vigil_run_retry_backlog",
            "Ended runs whose retry waits for its delay.",
            value=snapshot.backlog,
        )
        due = GaugeMetricFamily(
            "vigil_run_retry_next_due_timestamp_seconds",
            "When the next retry of the backlog is due, in Unix seconds.",
        )
        if snapshot.next_due is not None:
            due.add_metric([], snapshot.next_due)
        yield due


class BackfillsSnapshot(Protocol):
    """What the backfill loop's `statistics()` returns."""

    @property
    def submitted(self) -> int: ...
    @property
    def by_status(self) -> Mapping[str, int]: ...
    @property
    def lag(self) -> float: ...


class _BackfillsCollector:
    def __init__(self, source: Callable[[], BackfillsSnapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        by_status = GaugeMetricFamily(
            "vigil_backfills", "Backfills in the store, by status.", labels=["status"]
        )
        for status, count in sorted(snapshot.by_status.items()):
            by_status.add_metric([status], count)
        yield by_status
        yield CounterMetricFamily(
            "vigil_backfill_partitions_submitted",
            "Partition runs this daemon submitted for backfills.",
            value=snapshot.submitted,
        )
        yield GaugeMetricFamily(
            "vigil_backfill_lag_seconds",
            "Age of the oldest backfill still submitting its runs (0: none).",
            value=snapshot.lag,
        )


class RetentionSnapshot(Protocol):
    """What the retention loop's `statistics()` returns."""

    @property
    def runs(self) -> int: ...
    @property
    def events(self) -> int: ...
    @property
    def files(self) -> int: ...


class _RetentionCollector:
    def __init__(self, source: Callable[[], RetentionSnapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        for name, what, value in (
            ("runs", "Ended runs this daemon purged (retention).", snapshot.runs),
            ("events", "Events of the runs this daemon purged.", snapshot.events),
            ("run_directories", "Run directories (compute logs, outputs) removed.", snapshot.files),
        ):
            yield CounterMetricFamily(f"vigil_purged_{name}", what, value=value)


class LeaseSnapshot(Protocol):
    """What the lease keeper's `statistics()` returns."""

    @property
    def owned(self) -> Mapping[str, int]: ...
    @property
    def takeovers(self) -> Mapping[str, int]: ...


class _LeaseCollector:
    """Every kind of unit from the start (0 until it happens): an alert's `increase()` sees
    the first takeover, and a daemon owning no schedule says 0, not nothing."""

    def __init__(self, source: Callable[[], LeaseSnapshot]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        owned = GaugeMetricFamily(
            "vigil_owned_units",
            "Units of work this daemon holds by lease, by kind (schedule, sensor, monitor, "
            "retries, retention, backfills).",
            labels=["kind"],
        )
        takeovers = CounterMetricFamily(
            "vigil_lease_takeovers",
            "Units this daemon took over from a daemon whose membership expired, by kind.",
            labels=["kind"],
        )
        for family, counts in ((owned, snapshot.owned), (takeovers, snapshot.takeovers)):
            for kind, count in sorted((dict.fromkeys(vitals.UNIT_KINDS, 0) | dict(counts)).items()):
                family.add_metric([kind], count)
        yield owned
        yield takeovers
