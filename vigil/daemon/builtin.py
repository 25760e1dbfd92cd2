"""The daemon's built-in loops, chosen from the instance settings.

Today: the run queue loop, when the configured coordinator queues runs (with the service
relaying the store's notices to it). The scheduler, sensor, monitor and retry loops join
here as they arrive.
"""

from __future__ import annotations

import dataclasses
import functools

from vigil.coordinators import base as coordinators
from vigil.coordinators import queued
from vigil.daemon import loop, service
from vigil.daemon.loops import queue
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
