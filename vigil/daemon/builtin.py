"""The daemon's built-in loops, chosen from the instance settings.

- `queue`, when the configured coordinator has a run queue (`run_queue()`), with the
  service relaying the store's notices to it;
- `backfills`, with a run queue (`backfills.enabled`, on by default), which submits the
  backfills' runs to the queue in chunks;
- `retries` (`run_retries.enabled`, on by default);
- `monitor` (`run_monitoring.enabled`, on by default), which also launches again the
  claims whose claimer died before launching them (`orphans`);
- the `worker-exits` service relaying the launcher's worker-exit notices to the monitor,
  retries and queue loops (an exit usually ends a run and frees a slot).
- `retention` (`retention.enabled`, with an age for some end status; none by default),
  which purges ended runs past their age in batches (`vigil.retention`);
- `scheduler` and `sensors` (`scheduling.enabled`, on by default; `instigation`), with
  their due-time timers, sharing the code locations' evaluation processes.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Protocol

from vigil import purge
from vigil.config import settings as settings_mod
from vigil.coordinators import base as coordinators
from vigil.daemon import clock as clock_mod
from vigil.daemon import leases, loop, orphans, service
from vigil.daemon import precedence as precedence_mod
from vigil.daemon.loops import backfills, monitor, queue, retention, retries, scheduler, sensors
from vigil.daemon.loops import instigation as instigation_mod
from vigil.launchers import base as launchers
from vigil.storage import store as store_mod


class BuiltinStore(
    monitor.MonitorStore,
    retries.RetriesStore,
    backfills.BackfillLoopStore,
    store_mod.QueueStore,
    store_mod.RetentionStore,
    store_mod.HeartbeatReader,
    Protocol,
):
    """What the run loops use between them; each is handed only its own part."""


@dataclasses.dataclass(frozen=True, slots=True)
class Builtins:
    loops: tuple[loop.Loop, ...] = ()
    services: tuple[service.Service, ...] = ()
    monitor_loop: monitor.MonitorLoop | None = None
    retries_loop: retries.RetriesLoop | None = None
    queue_loop: queue.QueueLoop | None = None
    backfill_loop: backfills.BackfillLoop | None = None
    retention_loop: retention.RetentionLoop | None = None


def build(
    settings: settings_mod.InstanceSettings,
    store: BuiltinStore,
    coordinator: coordinators.RunCoordinator,
    clock: clock_mod.Clock,
    precedence: precedence_mod.Precedence | None = None,
    keeper: leases.Keeper | None = None,
) -> Builtins:
    """The run loops; `precedence` is shared with the scheduler and sensor loops
    (`Instigation`), which a backfill's chunks give way to; `keeper` (many daemons) gives
    each loop its share of the work."""
    built = Builtins()
    run_queue = coordinator.run_queue()
    if run_queue is not None:
        built = _with_queue(built, run_queue, store)
        if settings.backfills.enabled:
            backfill_loop = backfills.BackfillLoop(
                store, clock, settings.backfills, precedence, keeper
            )
            built = dataclasses.replace(
                built, loops=(*built.loops, backfill_loop), backfill_loop=backfill_loop
            )
    if settings.run_retries.enabled:
        retries_loop = retries.RetriesLoop(coordinator, store, clock, settings.run_retries, keeper)
        built = dataclasses.replace(
            built, loops=(*built.loops, retries_loop), retries_loop=retries_loop
        )
    if settings.run_monitoring.enabled:
        launcher = coordinator.launcher
        relauncher = orphans.OrphanedClaims(
            coordinator,
            store,
            settings.daemon.heartbeat_interval,
            every=settings.run_monitoring.poll_interval,
        )
        monitor_loop = monitor.MonitorLoop(
            store,
            launcher,
            clock,
            settings.run_monitoring,
            coordinator.claimer,
            relauncher,
            keeper,
            settings.daemon.monitor_shards,
        )
        built = dataclasses.replace(
            built, loops=(*built.loops, monitor_loop), monitor_loop=monitor_loop
        )
    built = _with_retention(built, settings, store, clock, precedence, keeper)
    return _with_exit_relay(built, coordinator.launcher)


def _with_retention(
    built: Builtins,
    settings: settings_mod.InstanceSettings,
    store: store_mod.RetentionStore,
    clock: clock_mod.Clock,
    precedence: precedence_mod.Precedence | None,
    keeper: leases.Keeper | None,
) -> Builtins:
    kept = settings.retention
    ages = (kept.success_days, kept.failure_days, kept.canceled_days)
    if not kept.enabled or all(age is None for age in ages):
        return built
    purger = purge.Purger(store, purge.roots(settings))
    spare = settings.run_retries.enabled
    found = retention.RetentionLoop(purger, clock, kept, spare, precedence, keeper)
    return dataclasses.replace(built, loops=(*built.loops, found), retention_loop=found)


def _with_queue(
    built: Builtins, run_queue: coordinators.RunQueue, store: store_mod.QueueStore
) -> Builtins:
    queue_loop = queue.QueueLoop(run_queue)
    relay = functools.partial(queue.relay_notices, store, queue_loop.wake)
    notices = service.Service("queue-notices", relay, ready_on_start=True)
    return dataclasses.replace(
        built,
        loops=(*built.loops, queue_loop),
        services=(*built.services, notices),
        queue_loop=queue_loop,
    )


def _with_exit_relay(built: Builtins, launcher: launchers.RunLauncher) -> Builtins:
    """Wake the loops a worker's exit concerns, at once: it usually ends a run, so the
    monitor (first), the retries loop and the queue loop (a slot is free; on SQLite no
    notice tells the daemon of a run its worker ended) look now rather than at their poll.
    """
    listeners: list[loop.Loop | None] = [built.retries_loop, built.queue_loop]
    wakes = [each.wake for each in listeners if each is not None]
    monitor_wake = None if built.monitor_loop is None else built.monitor_loop.wake
    if monitor_wake is None and not wakes:
        return built
    relay = functools.partial(monitor.relay_exits, launcher, monitor_wake, *wakes)
    exits = service.Service("worker-exits", relay, ready_on_start=True)
    return dataclasses.replace(built, services=(*built.services, exits))


def instigation(
    shared: instigation_mod.Instigation, settings: settings_mod.SchedulingSettings
) -> Builtins:
    """The scheduler and sensor loops and their timers (none when scheduling is off)."""
    if not settings.enabled:
        return Builtins()
    scheduler_loop = scheduler.SchedulerLoop(shared, settings)
    sensor_loop = sensors.SensorLoop(shared, settings)
    shared.pool.on_loaded(scheduler_loop.wake.set)
    shared.pool.on_loaded(sensor_loop.wake.set)
    return Builtins(
        loops=(scheduler_loop, sensor_loop),
        services=(
            service.Service("evaluations", shared.pool.serve, ready_on_start=True),
            service.Service("scheduler-timer", scheduler_loop.timer.run, ready_on_start=True),
            service.Service("sensors-timer", sensor_loop.timer.run, ready_on_start=True),
        ),
    )
