"""Runs one loop: wait for its wake-up or its deadline, iterate, keep its statistics.

The first iteration starts at once; the next is due `interval` after an iteration started,
or sooner when the loop's `wake` is set. An iteration that raises is a crash: the error is
recorded (type, message, time; the last five are kept) and the loop restarts after a capped
exponential backoff with jitter, counted in consecutive crashes; a success resets it.
`SystemExit` raised by a loop is a crash like any other (only the CLI exits); cancellation
and `KeyboardInterrupt` belong to the process and propagate.

A crash caused by the store being away (`StoreUnavailable`, anywhere in the error's causes
or group) is waited out differently: the runner asks the injected `probe` (the store's
`ping`) at once and then every `probe_interval`; once a probe that failed is followed by
one that answers, the store is back: the loop restarts at once and its backoff starts
again from the base. A probe answering at once (the store never looked away) leaves the
backoff as it is, so a loop that keeps failing while the store answers is not restarted
in a tight loop. Each probe is bounded by `PROBE_TIMEOUT` seconds.

`stop()` ends the runner between iterations: a waiting loop returns at once, a running
iteration finishes first (the supervisor bounds that with the shutdown grace).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence

import anyio
import anyio.abc

from vigil import errors
from vigil.config import settings
from vigil.daemon import clock as clock_mod
from vigil.daemon import loop as loop_mod
from vigil.scheduling import backoff

logger = logging.getLogger(__name__)

MAX_ERRORS = 5
MAX_MESSAGE = 1000
PROBE_INTERVAL = 1.0  # seconds between two store probes while a loop waits for the store
PROBE_TIMEOUT = 5.0  # seconds a probe may take before it counts as unanswered
IterationObserver = Callable[[str, float], None]  # (loop name, seconds) after each iteration
Probe = Callable[[], Awaitable[None]]  # returns once the store answers; raises while away


@dataclasses.dataclass
class _Progress:
    """The counters behind a loop's statistics."""

    started_at: float | None = None
    iterations: int = 0
    failures: int = 0
    restarts: int = 0
    consecutive_failures: int = 0
    last_start: float | None = None
    last_end: float | None = None
    last_success: float | None = None
    last_duration: float | None = None
    total_duration: float = 0.0
    errors: collections.deque[loop_mod.LoopError] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=MAX_ERRORS)
    )

    def ended(self, start: float, end: float, error: loop_mod.LoopError | None) -> None:
        self.iterations += 1
        self.last_end = end
        self.last_duration = end - start
        self.total_duration += end - start
        if error is None:
            self.last_success = end
            self.consecutive_failures = 0
        else:
            self.failures += 1
            self.consecutive_failures += 1
            self.errors.append(error)


def loop_error(error: BaseException, at: float) -> loop_mod.LoopError:
    message = str(error)[:MAX_MESSAGE]
    return loop_mod.LoopError(at=at, error_type=type(error).__qualname__, message=message)


class LoopRunner:
    """Runs one loop until stopped; `statistics()` is its snapshot."""

    def __init__(
        self,
        loop: loop_mod.Loop,
        *,
        clock: clock_mod.Clock,
        restart: settings.BackoffSettings,
        rand: Callable[[], float],
        observe: IterationObserver | None = None,
        probe: Probe | None = None,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        self.loop = loop
        self._clock = clock
        self._restart = restart
        self._rand = rand
        self._observe = observe
        self._probe = probe
        self._probe_interval = probe_interval
        self._attempts = 0  # crashes counted by the backoff (reset when the store is back)
        self._store_away = False  # the last crash was the store's
        self._stop = anyio.Event()
        self._pending_reload: tuple[settings.CodeLocationSettings, ...] | None = None
        self._state = loop_mod.LoopState.STARTING
        self._progress = _Progress()

    @property
    def name(self) -> str:
        return self.loop.name

    def statistics(self) -> loop_mod.LoopStatistics:
        p = self._progress
        return loop_mod.LoopStatistics(
            name=self.loop.name,
            interval=self.loop.interval,
            timeout=self.loop.timeout,
            state=self._state,
            iterations=p.iterations,
            failures=p.failures,
            restarts=p.restarts,
            last_iteration_start=p.last_start,
            last_iteration_end=p.last_end,
            last_success=p.last_success,
            last_duration=p.last_duration,
            errors=tuple(p.errors),
            consecutive_failures=p.consecutive_failures,
            started_at=p.started_at,
            total_duration=p.total_duration,
        )

    def stop(self) -> None:
        """Start no more iterations; `run` returns once the current one (if any) ends."""
        self._stop.set()

    def request_reload(self, workspace: Sequence[settings.CodeLocationSettings]) -> None:
        """Hand the loop a reloaded workspace before its next iteration, which starts now."""
        self._pending_reload = tuple(workspace)
        self.loop.wake.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Iterate until `stop()`, then return. A loop's own errors never leave here."""
        if self._progress.started_at is None:
            self._progress.started_at = self._clock.now()
        task_status.started()
        try:
            deadline = self._clock.now()
            while await self._wait(deadline):
                deadline = await self._turn()
            await self.loop.drain()
        finally:
            self._state = loop_mod.LoopState.STOPPED

    async def _wait(self, deadline: float) -> bool:
        """Wait for the deadline or a wake-up (not in backoff); False once stopped."""
        if self._state is loop_mod.LoopState.BACKOFF and self._store_away:
            await self._wait_for_store(deadline)
        elif self._state is loop_mod.LoopState.BACKOFF:
            await clock_mod.wait_any(self._clock, deadline, self._stop)
        else:
            self._state = loop_mod.LoopState.IDLE
            await clock_mod.wait_any(self._clock, deadline, self._stop, self.loop.wake)
        return not self._stop.is_set()

    async def _wait_for_store(self, deadline: float) -> None:
        """Back off until the deadline, or until the store is seen to come back."""
        back = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_store, back)
            await clock_mod.wait_any(self._clock, deadline, self._stop, back)
            tg.cancel_scope.cancel()
        if back.is_set() and not self._stop.is_set():
            self._attempts = 0
            logger.info(
                "loop %s: the store answers again; restarting now",
                self.name,
                extra={"event": "loop.store_back", "loop": self.name},
            )

    async def _watch_store(self, back: anyio.Event) -> None:
        """Probe now and every interval; set `back` once an answer follows a failure."""
        seen_away = False
        while True:
            if not await self._store_answers():
                seen_away = True
            elif seen_away:
                back.set()
                return
            await self._clock.sleep_until(self._clock.now() + self._probe_interval)

    async def _store_answers(self) -> bool:
        assert self._probe is not None
        with anyio.move_on_after(PROBE_TIMEOUT):
            try:
                await self._probe()
            except Exception:  # any failure means: not back yet
                return False
            return True
        return False

    async def _turn(self) -> float:
        """One iteration; returns when the next one is due."""
        if self._state is loop_mod.LoopState.BACKOFF:
            self._progress.restarts += 1
            logger.info(
                "loop %s restarted",
                self.name,
                extra={"event": "loop.restarted", "loop": self.name},
            )
        self.loop.wake.clear()
        start = self._clock.now()
        self._state = loop_mod.LoopState.RUNNING
        self._progress.last_start = start
        error = await self._iterate()
        end = self._clock.now()
        self._progress.ended(start, end, None if error is None else loop_error(error, end))
        self._report(end - start)
        if error is not None:
            return self._back_off(error, end)
        self._attempts = 0
        self._state = loop_mod.LoopState.IDLE
        due = start + self.loop.interval
        sooner = self.loop.due_sooner()
        return due if sooner is None else max(end, min(due, sooner))

    async def _iterate(self) -> BaseException | None:
        try:
            if self._pending_reload is not None:
                workspace, self._pending_reload = self._pending_reload, None
                await self.loop.reload(workspace)
            await self.loop.iterate()
        except (Exception, SystemExit) as exc:
            return exc
        return None

    def _back_off(self, error: BaseException, end: float) -> float:
        self._state = loop_mod.LoopState.BACKOFF
        self._attempts += 1
        self._store_away = self._probe is not None and store_unavailable(error)
        delay = restart_delay(self._restart, self._attempts, self._rand)
        logger.warning(
            "loop %s crashed (%s in a row); restarting in %.2fs",
            self.name,
            self._progress.consecutive_failures,
            delay,
            exc_info=error,
            extra={
                "event": "loop.crashed",
                "loop": self.name,
                "error": loop_error(error, end).headline,
                "restart_in": round(delay, 3),
                "store_away": self._store_away,
            },
        )
        return end + delay

    def _report(self, seconds: float) -> None:
        if self._observe is None:
            return
        try:
            self._observe(self.name, seconds)
        except Exception:
            logger.exception("iteration observer failed", extra={"event": "daemon.observer_error"})


def restart_delay(
    policy: settings.BackoffSettings, attempt: int, rand: Callable[[], float]
) -> float:
    """Seconds before restart number `attempt` (1-based) of a crashed loop or service."""
    return backoff.exponential_backoff(
        attempt,
        base=policy.base,
        factor=policy.factor,
        cap=policy.cap,
        jitter=policy.jitter,
        rand=rand,
    )


def store_unavailable(error: BaseException) -> bool:
    """Whether the store being away caused `error`: a `StoreUnavailable` in its causes,
    its context (unless suppressed with `from None`), or the members of a group."""
    return any(isinstance(e, errors.StoreUnavailable) for e in _related(error, set()))


def _related(error: BaseException, seen: set[int]) -> Iterator[BaseException]:
    if id(error) in seen:
        return
    seen.add(id(error))
    yield error
    context = None if error.__suppress_context__ else error.__context__
    for linked in (error.__cause__, context):
        if linked is not None:
            yield from _related(linked, seen)
    if isinstance(error, BaseExceptionGroup):
        for member in error.exceptions:
            yield from _related(member, seen)
