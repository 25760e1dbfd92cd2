"""The daemon's built-in loops, chosen from the instance settings.

The run queue loop, when the configured coordinator queues runs (with the service
relaying the store's notices to it); the scheduler and sensor loops (`instigation`), with
their due-time timers, sharing the code locations' evaluation processes. The monitor and
retry loops join here as they arrive.
"""

from __future__ import annotations

import dataclasses
import functools

from vigil.config import settings as settings_mod
from vigil.coordinators import base as coordinators
from vigil.coordinators import queued
from vigil.daemon import loop, service
from vigil.daemon.loops import instigation as instigation_mod
from vigil.daemon.loops import queue, scheduler, sensors
from vigil.storage import store as store_mod


@dataclasses.dataclass(frozen=True, slots=True)
class Builtins:
    loops: tuple[loop.Loop, ...] = ()
    services: tuple[service.Service, ...] = ()


def build(
    coordinator: coordinators.RunCoordinator, store: store_mod.Store, claimer: str
) -> Builtins:
    if not isinstance(coordinator, queued.QueuedCoordinator):
        return Builtins()
    queue_loop = queue.QueueLoop(coordinator, claimer)
    relay = functools.partial(queue.relay_notices, store, queue_loop.wake)
    return Builtins(
        loops=(queue_loop,),
        services=(service.Service("queue-notices", relay, ready_on_start=True),),
    )


def instigation(
    shared: instigation_mod.Instigation, settings: settings_mod.SchedulingSettings
) -> Builtins:
    """The scheduler and sensor loops and their timers (none when scheduling is off)."""
    if not settings.enabled:
        return Builtins()
    scheduler_loop = scheduler.SchedulerLoop(shared, settings)
    sensor_loop = sensors.SensorLoop(shared, settings)
    return Builtins(
        loops=(scheduler_loop, sensor_loop),
        services=(
            service.Service("scheduler-timer", scheduler_loop.timer.run, ready_on_start=True),
            service.Service("sensors-timer", sensor_loop.timer.run, ready_on_start=True),
        ),
    )
