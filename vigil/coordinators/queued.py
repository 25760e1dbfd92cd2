"""The queued coordinator: runs wait in the store and launch when the limits allow.

`submit` records the run QUEUED (on PostgreSQL a NOTIFY wakes the daemon's queue loop at
once). The queue loop calls `dequeue`: one claim transaction decides, under the store's
admission lock, which queued runs to launch (`admission.admit`, a pure function) and moves
them to STARTING with a RUN_STARTING event recording the attempt; the launches then run
concurrently, each with a timeout, after the claim committed. A launch that fails ends its
run FAILURE with the error; a transient one (store unavailable, no answer in time) is retried
with backoff a bounded number of times first. A launcher whose service is unavailable
(`LauncherUnavailable`: a broker that is down, nothing sent) gives the run back to the
queue, to be claimed again after `unavailable_retry`: however long the outage, no run is
lost and none is launched twice (each claim takes a new launch token).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
import time
from collections.abc import Mapping, Sequence

import anyio
import pydantic

from vigil import errors, events, runs
from vigil.config import limits
from vigil.config import settings as settings_mod
from vigil.coordinators import admission, base
from vigil.launchers import base as launchers
from vigil.scheduling import backoff
from vigil.storage import store as store_mod

logger = logging.getLogger(__name__)
S = runs.RunStatus
PAUSED_FLAG = admission.PAUSED_FLAG


class QueuedOptions(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_concurrent_runs: int = pydantic.Field(
        default=limits.DEFAULT_MAX_CONCURRENT_RUNS, ge=-1, le=settings_mod.MAX_COUNT
    )
    tag_concurrency_limits: tuple[admission.TagLimit, ...] = ()
    poll_interval: settings_mod.Interval = 1.0
    max_inflight_launches: int = pydantic.Field(default=32, ge=1, le=10_000)
    launch_timeout: settings_mod.Interval = 60.0
    launch_retries: int = pydantic.Field(default=3, ge=0, le=100)
    # A run whose launcher's service (a broker) is unavailable waits this long in the queue.
    unavailable_retry: settings_mod.Interval = 5.0

    @property
    def limits(self) -> admission.Limits:
        return admission.Limits(
            max_concurrent_runs=self.max_concurrent_runs,
            tag_limits=self.tag_concurrency_limits,
        )


def reason_kind(reason: str) -> str:
    """A bounded label for a waiting reason: global, tag, paused or batch."""
    if reason == admission.QUEUE_PAUSED:
        return "paused"
    if reason == admission.BATCH_FULL:
        return "batch"
    return reason.split(" ", 1)[0]


QueueEntry = admission.QueueEntry  # what `queue()` lists (defined beside its rule)


class QueuedCoordinator(base.RunCoordinator):
    Options = QueuedOptions

    def __init__(
        self,
        options: pydantic.BaseModel,
        store: base.CoordinatorStore,
        launcher: launchers.RunLauncher,
        clock: base.Clock,
        claimer: str | None = None,
        observer: base.LaunchObserver | None = None,
    ) -> None:
        super().__init__(options, store, launcher, clock, claimer, observer)
        self._held: Mapping[str, int] = {}
        self._launching = 0
        self._launches = LaunchRecorder(store, self.opts.launch_retries, clock)

    def statistics(self) -> base.QueueStatistics:
        return base.QueueStatistics(held=self._held, launches_in_flight=self._launching)

    def run_queue(self) -> base.RunQueue:
        return self

    @property
    def opts(self) -> QueuedOptions:
        assert isinstance(self.options, QueuedOptions)
        return self.options

    @property
    def poll_interval(self) -> float:
        return self.opts.poll_interval

    @property
    def launch_timeout(self) -> float:
        return self.opts.launch_timeout

    @property
    def launch_batch(self) -> int:
        return self.opts.max_inflight_launches

    async def submit(self, run: runs.Run) -> runs.Run:
        queued = dataclasses.replace(run, status=S.QUEUED)
        stored = await self.store.add_run(
            queued, self._event(run.run_id, events.EventType.RUN_ENQUEUED, "queued")
        )
        base.log_submitted([stored])
        return stored

    async def submit_many(self, batch: Sequence[runs.Run]) -> list[runs.Run]:
        """Queue several runs in one transaction (all or nothing)."""
        queued = [dataclasses.replace(run, status=S.QUEUED) for run in batch]
        enqueued = [self._event(r.run_id, events.EventType.RUN_ENQUEUED, "queued") for r in batch]
        stored = await self.store.add_runs(queued, enqueued)
        base.log_submitted(stored)
        return stored

    async def launch_due(self, instigator: str, limit: int = base.DUE_BATCH) -> list[runs.Run]:
        """Nothing: a queued run with a due time is claimed by the queue once it is due."""
        return []

    async def paused(self) -> bool:
        return bool(await self.store.get_flag(PAUSED_FLAG))

    async def set_paused(self, paused: bool) -> None:
        # Resuming wakes the daemon's queue loop (on PostgreSQL, from any process).
        await self.store.set_flag(PAUSED_FLAG, paused, self.clock(), wake_queue=not paused)

    async def dequeue(self) -> list[runs.Run]:
        """Claim what the limits allow and launch it; returns the runs launched."""
        if await self.paused():
            return []
        limits = self.opts.limits
        batch = self.opts.max_inflight_launches

        def admit(
            queued: Sequence[runs.Run], in_flight: Sequence[Mapping[str, str]]
        ) -> Sequence[str]:
            decision = admission.admit(admission.candidates(queued), in_flight, limits, batch)
            self._held = collections.Counter(reason_kind(r) for r in decision.waiting.values())
            return decision.launch

        claimed = await self.store.claim_queued_runs(admit, self.clock(), self.claimer)
        await self._launch_claimed_runs(claimed)
        return claimed

    async def _launch_claimed_runs(self, claimed: Sequence[runs.Run]) -> None:
        """Launch claimed runs concurrently, each with its timeout and retries."""
        async with anyio.create_task_group() as tg:
            for run in claimed:
                tg.start_soon(self._launch_claimed, run)

    async def _launch_claimed(self, run: runs.Run) -> None:
        self._launching += 1
        self._launching_ids.add(run.run_id)
        try:
            await self._launch_with_retries(run)
        finally:
            self._launching -= 1
            self._launching_ids.discard(run.run_id)

    async def _launch_with_retries(self, run: runs.Run) -> None:
        """Launch within `launch_timeout`, retrying transient failures with backoff.

        A launch that timed out may still start its worker (a thread still forking it), so
        before another attempt the claim takes a new launch token (`_reconcile`): a worker
        of the old token then loses its start, and a run its worker already started is
        left alone. Never two workers for one run.
        """
        launch: runs.Run | None = run
        attempt = 0
        while launch is not None:
            attempt += 1
            started = time.perf_counter()
            try:
                with anyio.fail_after(self.opts.launch_timeout):
                    info = await self.launcher.launch(launch)
            except errors.LauncherUnavailable as exc:
                await self._requeue(launch, str(exc))
                return
            except errors.LaunchError as exc:
                await self._fail_launch(launch, str(exc))
                return
            except (errors.StoreUnavailable, TimeoutError) as exc:
                launch = await self._after_failed_attempt(launch, attempt, exc)
            else:
                await self._launches.record(store_mod.Launch(run.run_id, launch.launch_token, info))
                self._observe(run, time.perf_counter() - started)
                base.log_launched(run, info)
                return

    async def _after_failed_attempt(
        self, run: runs.Run, attempt: int, exc: Exception
    ) -> runs.Run | None:
        """The run to launch again (with a new token), or None when done with it."""
        if attempt > self.opts.launch_retries:
            message = f"launch failed after {attempt} attempts: {_describe(exc)}"
            await self._fail_launch(run, message)
            return None
        await anyio.sleep(_retry_delay(attempt))
        return await self._reconcile(run, attempt, exc)

    async def _reconcile(self, run: runs.Run, attempt: int, exc: Exception) -> runs.Run | None:
        """Take a new launch token for a launch that failed or timed out; None when the run
        moved on (its worker started with the old token after all, or it ended)."""
        message = f"launch attempt {attempt} failed ({_describe(exc)}); launching again"
        event = self._event(run.run_id, events.EventType.ENGINE, message)
        for reconcile_attempt in range(1, self.opts.launch_retries + 2):
            try:
                return await self.store.reclaim_launch(
                    run.run_id, run.launch_token, self.clock(), self.claimer, event
                )
            except errors.StoreUnavailable:
                if reconcile_attempt > self.opts.launch_retries:
                    raise
                await anyio.sleep(_retry_delay(reconcile_attempt))
        return None

    def _observe(self, run: runs.Run, launch_seconds: float) -> None:
        if self.observer is not None:
            self.observer.observe_launch(launch_seconds)
            self.observer.observe_queue_wait(max(0.0, self.clock() - run.created_at))

    def _observe_failure(self) -> None:
        if self.observer is not None:
            self.observer.launch_failed()

    async def _requeue(self, run: runs.Run, message: str) -> None:
        """Put back in the queue a run whose launcher's service is unavailable (nothing was
        sent): launched again after `unavailable_retry`, once the limits allow."""
        delay = self.opts.unavailable_retry
        logger.warning(message, extra={"event": "run.launch_requeued", "run_id": run.run_id})
        note = f"{message}; back in the queue, launched again in {delay:g} s or later"
        event = self._event(run.run_id, events.EventType.ENGINE, note)
        now = self.clock()
        await self.store.requeue_launch(run.run_id, run.launch_token, now, now + delay, event)

    async def _fail_launch(self, run: runs.Run, message: str) -> None:
        self._observe_failure()
        logger.error(message, extra={"event": "run.launch_failed", "run_id": run.run_id})
        await self._end(run, S.STARTING, S.FAILURE, message, runs.EndReason.LAUNCH_FAILED)

    async def queue(self) -> list[QueueEntry]:
        """The queued runs in launch order, each with why it waits."""
        return admission.explain(
            await self.store.queued_runs(),
            await self.store.in_flight_tags(),
            self.opts.limits,
            paused=await self.paused(),
            now=self.clock(),
        )


class LaunchRecorder:
    """Records launches with group commit: launches that finish while a write is in flight
    are written together by the next one, so a batch of launches costs a few transactions
    rather than one each.

    A write that fails for a transient reason is retried; the launch itself is never
    repeated for it (the worker is already running). If the store stays unavailable the
    facts are dropped with an error logged: the worker records its own host and pid when
    it starts. A launch whose token was replaced meanwhile is not written (see
    `RunStore.record_launches`).
    """

    def __init__(self, store: store_mod.RunStore, retries: int, clock: base.Clock) -> None:
        self._store = store
        self._retries = retries
        self._clock = clock
        self._pending: dict[str, store_mod.Launch] = {}
        self._writing = anyio.Lock()

    async def record(self, launch: store_mod.Launch) -> None:
        self._pending[launch.run_id] = launch
        async with self._writing:
            if launch.run_id not in self._pending:
                return  # written by the write that held the lock before
            batch, self._pending = list(self._pending.values()), {}
            await self._write(batch)

    async def _write(self, batch: Sequence[store_mod.Launch]) -> None:
        for attempt in range(1, self._retries + 2):
            try:
                await self._store.record_launches(batch, self._clock())
                return
            except errors.StoreUnavailable as exc:
                if attempt > self._retries:
                    logger.error(
                        "could not record the launches of %d runs: %s",
                        len(batch),
                        exc,
                        extra={"event": "run.launch_info_lost"},
                    )
                    return
                await anyio.sleep(_retry_delay(attempt))


def _describe(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer within the launch timeout"
    return str(exc)


def _retry_delay(attempt: int) -> float:
    return backoff.exponential_backoff(
        attempt, base=0.5, factor=2.0, cap=10.0, jitter=0.2, rand=random.random
    )
