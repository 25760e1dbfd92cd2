"""What runs beside the loops: the HTTP endpoints, metrics and the systemd protocol.

`build(...)` turns the instance settings and the running daemon into `runtime.Extras`:
- the HTTP server (`/metrics`, `/healthz`, `/readyz`) when `http.enabled`;
- a task refreshing the run counts that `/metrics` exports (a scrape never hits the store),
  and one following the runs that end (`run_ends.py`: ended by job and status, durations);
- the systemd notifier (READY=1 after the loops started, WATCHDOG=1 only while every loop
  makes progress, STATUS=, STOPPING=1), a no-op outside systemd; `/healthz` answers by the
  same judgement as the watchdog (`health.liveness`);
- the metrics hooks for loop iterations and refused heartbeat writes, and, with a
  coordinator that has a run queue, for runs held back and launches in flight; with the
  scheduler and sensor loops, for ticks, timeouts, instigators; the run monitor's and the
  retries loop's snapshots when those loops run; the lease keeper's (units owned by kind,
  takeovers). The metrics themselves are built first
  (`new_metrics`): the coordinator (launches, queue waits) and the scheduler and sensor
  loops (tick delays, evaluations) take them as their observer when they are built.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from collections.abc import Mapping
from typing import Protocol

from vigil import errors
from vigil.config import settings as settings_mod
from vigil.coordinators import base as coordinators
from vigil.daemon import (
    builtin,
    health,
    heartbeat,
    http,
    metrics,
    run_ends,
    runtime,
    service,
    systemd,
)
from vigil.daemon.loops import instigation
from vigil.storage import store as store_mod

RUN_COUNT_INTERVAL = 15.0
RUN_END_INTERVAL = 5.0


class ExtrasStore(store_mod.StoreLifecycle, metrics.RunCounter, run_ends.RunEndStore, Protocol):
    """What the extras read: the schema check (`/readyz`), the run counts and the run
    ends (`/metrics`)."""


def new_metrics(identity: heartbeat.DaemonIdentity) -> metrics.Metrics:
    """The daemon's metrics, built before the coordinator and the instigation loops, which
    take them as their observer; `build` hooks them to the snapshots once all exist."""
    return metrics.Metrics(version=_version(), started_at=identity.started_at)


def _watch(
    exported: metrics.Metrics,
    daemon: runtime.Daemon,
    coordinator: coordinators.RunCoordinator,
    built: builtin.Builtins | None,
    shared: instigation.Instigation | None,
) -> None:
    """Hook the metrics to the supervisor's, the coordinator's and the built-in loops'
    snapshots."""
    exported.watch_loops(daemon.supervisor.statistics)
    if daemon.keeper is not None:
        exported.watch_leases(daemon.keeper.statistics)
    run_queue = coordinator.run_queue()
    if run_queue is not None:
        exported.watch_queue(run_queue.statistics)
    if shared is not None:
        exported.watch_instigation(shared.statistics)
    if built is not None and built.monitor_loop is not None:
        exported.watch_monitor(built.monitor_loop.statistics)
    if built is not None and built.retries_loop is not None:
        exported.watch_retries(built.retries_loop.statistics)
    if built is not None and built.backfill_loop is not None:
        exported.watch_backfills(built.backfill_loop.statistics)
    if built is not None and built.retention_loop is not None:
        exported.watch_retention(built.retention_loop.statistics)


def build(
    settings: settings_mod.InstanceSettings,
    environ: Mapping[str, str],
    daemon: runtime.Daemon,
    store: ExtrasStore,
    exported: metrics.Metrics,
    coordinator: coordinators.RunCoordinator,
    built: builtin.Builtins | None = None,
    shared: instigation.Instigation | None = None,
) -> runtime.Extras:
    supervisor = daemon.supervisor
    _watch(exported, daemon, coordinator, built, shared)

    def loops_summary() -> str:
        return health.readiness(supervisor.statistics(), daemon.clock.now())[1]

    def live() -> tuple[bool, str]:
        """One judgement for /healthz and the systemd watchdog: every loop live."""
        if not supervisor.alive:
            return False, "supervisor not running"
        return health.liveness(supervisor.statistics(), daemon.clock.now())

    def progressing() -> bool:
        return live()[0]

    async def ready() -> tuple[bool, str]:
        try:
            current = await store.schema_is_current()
        except errors.StoreError as exc:
            return False, f"store unreachable: {exc}"
        if not current:
            return False, "store schema is not this vigil's: run `vigil instance migrate`"
        return health.readiness(supervisor.statistics(), daemon.clock.now())

    services = []
    if settings.http.enabled:
        routes = http.daemon_routes(exported, live, ready)
        services.append(
            service.Service("http", functools.partial(http.serve, settings.http, routes))
        )
    services += _store_readers(store, exported)
    notifier = functools.partial(
        systemd.notify_lifecycle,
        systemd.Notifier.from_environ(environ),
        summary=loops_summary,
        healthy=progressing,
        wait_stopping=supervisor.wait_stopping,
        watchdog_interval=systemd.watchdog_interval(environ, os.getpid()),
    )
    services.append(service.Service("systemd", notifier, ready_on_start=True))
    return runtime.Extras(
        services=services,
        on_iteration=exported.observe_iteration,
        on_store_error=lambda _exc: exported.store_error(),
    )


def _store_readers(store: ExtrasStore, exported: metrics.Metrics) -> list[service.Service]:
    """The tasks that read the store for `/metrics`: run counts, and runs as they end."""
    counts = functools.partial(metrics.watch_run_counts, store, exported, RUN_COUNT_INTERVAL)
    follower = run_ends.RunEndFollower(store, exported)
    ends = functools.partial(follower.follow, RUN_END_INTERVAL)
    return [
        service.Service("run-counts", counts, ready_on_start=True),
        service.Service("run-ends", ends, ready_on_start=True),
    ]


def _version() -> str:
    try:
        return importlib.metadata.version("vigil")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
