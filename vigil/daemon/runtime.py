"""The daemon process: refuse a second daemon, supervise, beat, obey signals, drain.

`Daemon.run(extras, controls)`:

1. on SQLite (`alone`), refuses to start when another daemon is live on the store
   (`DaemonAlreadyRunning`); on PostgreSQL it joins the others (`leases.Keeper.join`), and
   its loops share the work through leases;
2. installs the signal handlers (`signals.watch`);
3. runs the supervisor with, in this order, the loops' runners, one heartbeat writer per
   loop plus the supervisor's own, then `extras.services` (HTTP, systemd...);
4. on SIGTERM/SIGINT drains (`shutdown_grace`), writes the stopped heartbeats, releases
   its leases (the other daemons take its work at once) and returns;
   a second signal calls `controls.force_exit`; SIGHUP re-reads the workspace through
   `controls.reload_workspace` and hands it to every loop before its next iteration.

Runs already launched live in their own sessions: a daemon shutdown never kills them.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import signal
from collections.abc import Callable, Sequence

import anyio
import anyio.abc

from vigil import errors
from vigil.config import settings as settings_mod
from vigil.daemon import clock as clock_mod
from vigil.daemon import heartbeat, presence, signals
from vigil.daemon import leases as leases_mod
from vigil.daemon import loop as loop_mod
from vigil.daemon import runner as runner_mod
from vigil.daemon import service as service_mod
from vigil.daemon import supervisor as supervisor_mod
from vigil.storage import store as store_mod

logger = logging.getLogger(__name__)
LEAVE_TIMEOUT = 5.0  # seconds a clean stop waits to release its leases


@dataclasses.dataclass(frozen=True, slots=True)
class Extras:
    """What `vigil daemon run` adds beside the loops: the HTTP, metrics and systemd hook.

    `services` start after the loops and their heartbeat writers, in this order, and are
    cancelled after the drain. `on_iteration(loop, seconds)` is called after every loop
    iteration; `on_store_error(error)` after every heartbeat write the store refused.
    """

    services: Sequence[service_mod.Service] = ()
    on_iteration: runner_mod.IterationObserver | None = None
    on_store_error: heartbeat.StoreErrorObserver | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Controls:
    """What only the CLI may do: read the settings again, and exit the process."""

    reload_workspace: Callable[[], Sequence[settings_mod.CodeLocationSettings]]
    force_exit: Callable[[signal.Signals], None]


class Daemon:
    def __init__(
        self,
        settings: settings_mod.DaemonSettings,
        store: store_mod.HeartbeatStore,  # its loops get their own roles
        loops: Sequence[loop_mod.Loop],
        *,
        identity: heartbeat.DaemonIdentity,
        clock: clock_mod.Clock,
        rand: Callable[[], float],
        probe: runner_mod.Probe | None = None,
        keeper: leases_mod.Keeper | None = None,
        alone: bool = True,
    ) -> None:
        """`probe` (the store's `ping`) lets a loop that crashed because the store was
        away restart as soon as the store answers again (see `runner`). `keeper` holds the
        daemon's leases (its loops were built with it); `alone` refuses to run beside
        another live daemon (SQLite: one daemon per store)."""
        self.identity = identity
        self.keeper = keeper
        self._alone = alone
        self.clock = clock
        self._settings = settings
        self._store = store
        self._clock = clock
        self._on_iteration: runner_mod.IterationObserver | None = None
        restart = settings.restart_backoff
        self._runners = [
            runner_mod.LoopRunner(
                loop,
                clock=clock,
                restart=restart,
                rand=rand,
                observe=self._iteration_ended,
                probe=probe,
            )
            for loop in loops
        ]
        self.supervisor = supervisor_mod.Supervisor(
            self._runners,
            clock=clock,
            restart=restart,
            rand=rand,
            shutdown_grace=settings.shutdown_grace,
        )

    async def run(self, extras: Extras, controls: Controls) -> None:
        """Run until a stop signal and the drain; raises DaemonAlreadyRunning first if need be."""
        interval = self._settings.heartbeat_interval
        now = self._clock.now()
        if self._alone:
            await presence.ensure_alone(self._store, self.identity, now, interval)
        await self._store.prune_heartbeats(now - self._settings.heartbeat_retention)
        self._on_iteration = extras.on_iteration
        services = [*self._heartbeat_services(extras.on_store_error), *extras.services]
        if self.keeper is not None:
            await self.keeper.join(alone=self._alone)
            services.insert(0, service_mod.Service("leases", self.keeper.run, ready_on_start=True))
        watch = functools.partial(
            signals.watch,
            stop=self._stop,
            force=functools.partial(self._force, controls.force_exit),
            reload=functools.partial(self._reload, controls.reload_workspace),
        )
        async with anyio.create_task_group() as tg:
            await tg.start(watch)
            await tg.start(self._supervise, services, tg.cancel_scope)
            self._log_started()
        await self._leave()
        logger.info("daemon stopped", extra={"event": "daemon.stopped"})

    async def _leave(self) -> None:
        """Release the leases as the daemon stops, so the others take its work at once; a
        store that does not answer leaves them to expire."""
        if self.keeper is None:
            return
        with anyio.move_on_after(LEAVE_TIMEOUT):
            try:
                await self.keeper.leave()
            except errors.StoreError as exc:
                logger.warning(
                    "could not release the leases (they expire in %s s): %s",
                    self._settings.lease_ttl,
                    exc,
                    extra={"event": "leases.release_failed", "error": str(exc)},
                )

    async def _supervise(
        self,
        services: Sequence[service_mod.Service],
        scope: anyio.CancelScope,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        await self.supervisor.run(services, task_status=task_status)
        scope.cancel()

    def _heartbeat_services(
        self, on_store_error: heartbeat.StoreErrorObserver | None
    ) -> list[service_mod.Service]:
        sources: list[tuple[str, heartbeat.InfoSource]] = [
            (heartbeat.SUPERVISOR, self._supervisor_info)
        ]
        sources += [(r.name, functools.partial(self._loop_info, r)) for r in self._runners]
        writers = [
            heartbeat.HeartbeatWriter(
                self._store,
                self.identity,
                name,
                read,
                clock=self._clock,
                interval=self._settings.heartbeat_interval,
                on_store_error=on_store_error,
            )
            for name, read in sources
        ]
        return [service_mod.Service(f"heartbeat {w.name}", w.run) for w in writers]

    def _supervisor_info(self) -> dict[str, object]:
        return heartbeat.supervisor_info(
            self.supervisor.state.value,
            self.supervisor.loop_names,
            self.identity,
            self._settings.heartbeat_interval,
            owned=None if self.keeper is None else self.keeper.owned(),
        )

    def _loop_info(self, runner: runner_mod.LoopRunner) -> dict[str, object]:
        stats = runner.statistics()
        return heartbeat.loop_info(stats, self.identity, self._settings.heartbeat_interval)

    def _iteration_ended(self, loop: str, seconds: float) -> None:
        if self._on_iteration is not None:
            self._on_iteration(loop, seconds)

    def _log_started(self) -> None:
        names = self.supervisor.loop_names
        logger.info(
            "daemon started on %s with %d loops: %s",
            self.identity.address,
            len(names),
            ", ".join(names) or "none",
            extra={
                "event": "daemon.started",
                "daemon_id": self.identity.daemon_id,
                "pid": self.identity.pid,
                "loops": names,
            },
        )

    # signals -----------------------------------------------------------------------------
    def _stop(self, signum: signal.Signals) -> None:
        grace = self._settings.shutdown_grace
        logger.info(
            "%s: stopping; running iterations get %ss to finish (a second signal exits at once)",
            signum.name,
            grace,
            extra={"event": "daemon.stopping", "signal": signum.name, "grace": grace},
        )
        self.supervisor.stop()

    def _force(self, force_exit: Callable[[signal.Signals], None], signum: signal.Signals) -> None:
        logger.warning(
            "%s again: exiting at once",
            signum.name,
            extra={"event": "daemon.force_exit", "signal": signum.name},
        )
        force_exit(signum)

    def _reload(self, load: Callable[[], Sequence[settings_mod.CodeLocationSettings]]) -> None:
        try:
            workspace = load()
        except errors.VigilError as exc:
            logger.error(
                "SIGHUP: the workspace was not reloaded: %s",
                exc,
                extra={"event": "daemon.reload_failed", "error": str(exc)},
            )
            return
        self.supervisor.reload(workspace)
        names = [location.location_name for location in workspace]
        logger.info(
            "SIGHUP: workspace reloaded (%s); each loop takes it before its next iteration",
            ", ".join(names) or "no code locations",
            extra={"event": "daemon.reloaded", "locations": names},
        )
