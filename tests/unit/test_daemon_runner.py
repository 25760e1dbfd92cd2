"""The loop runner: iterations on a manual clock, crashes, restart backoff, stop, reload."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.lowlevel
import pytest

from tests.daemon.fakes import BLOCK, ManualClock, ScriptedLoop
from vigil import errors
from vigil.config import settings
from vigil.daemon import health, loop, runner

S = loop.LoopState
BACKOFF = settings.BackoffSettings(base=1.0, factor=2.0, cap=60.0, jitter=0.1)
DEADLINE = 10  # real seconds a test may take before it is failed


def make(
    loop_: ScriptedLoop,
    clock: ManualClock,
    *,
    rand: Callable[[], float] = lambda: 0.5,  # 0.5: no jitter
    restart: settings.BackoffSettings = BACKOFF,
    observe: runner.IterationObserver | None = None,
) -> runner.LoopRunner:
    return runner.LoopRunner(loop_, clock=clock, restart=restart, rand=rand, observe=observe)


@contextlib.asynccontextmanager
async def running(r: runner.LoopRunner) -> AsyncIterator[None]:
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(r.run)
            yield
            tg.cancel_scope.cancel()


async def test_iterates_at_once_then_an_interval_after_each_start() -> None:
    clock, q = ManualClock(1000.0), ScriptedLoop("q", interval=10.0)
    r = make(q, clock)
    async with running(r):
        assert await q.started.get() == 1
        clock.advance(2.0)
        q.replies.put(None)
        await clock.sleeping_until(1010.0)
        s = r.statistics()
        assert (s.state, s.iterations, s.failures, s.last_success) == (S.IDLE, 1, 0, 1002.0)
        assert (s.last_iteration_start, s.last_iteration_end) == (1000.0, 1002.0)
        assert (s.last_duration, s.total_duration, s.started_at) == (2.0, 2.0, 1000.0)
        clock.advance(8.0)
        assert await q.step() == 2
        await clock.sleeping_until(1020.0)
        assert r.statistics().iterations == 2


async def test_a_wake_up_starts_the_next_iteration_at_once() -> None:
    clock, q = ManualClock(1000.0), ScriptedLoop("q", interval=10.0)
    async with running(make(q, clock)):
        await q.step()
        await clock.sleeping_until(1010.0)
        q.wake.set()
        assert await q.step() == 2
        assert clock.now() == 1000.0


class Sooner(ScriptedLoop):
    """A scripted loop that asks for its next iteration at a given time."""

    sooner: float | None = None

    def due_sooner(self) -> float | None:
        return self.sooner


async def test_a_loop_may_ask_for_its_next_iteration_sooner_than_its_interval() -> None:
    clock, q = ManualClock(1000.0), Sooner("q", interval=10.0)
    q.sooner = 1003.0
    async with running(make(q, clock)):
        await q.step()
        await clock.sleeping_until(1003.0)
        q.sooner = 2000.0  # later than the interval: the interval wins
        clock.advance(3.0)
        assert await q.step() == 2
        await clock.sleeping_until(1013.0)


async def test_a_crash_is_recorded_and_restarted_with_growing_backoff() -> None:
    clock, q = ManualClock(1000.0), ScriptedLoop("q", interval=10.0)
    r = make(q, clock)
    async with running(r):
        await q.step(ValueError("boom"))
        await clock.sleeping_until(1001.0)  # 1 s: the first crash in a row
        s = r.statistics()
        assert (s.state, s.consecutive_failures, s.failures, s.restarts) == (S.BACKOFF, 1, 1, 0)
        assert s.errors == (loop.LoopError(1000.0, "ValueError", "boom"),)
        assert s.last_success is None

        clock.advance(1.0)
        await q.step(ValueError("again"))
        await clock.sleeping_until(1003.0)  # 2 s: the second in a row
        assert r.statistics().restarts == 1

        clock.advance(2.0)
        await q.step(None)
        await clock.sleeping_until(1013.0)  # back to the interval
        s = r.statistics()
        assert (s.state, s.consecutive_failures, s.failures, s.restarts) == (S.IDLE, 0, 2, 2)
        assert (s.iterations, s.last_success) == (3, 1003.0)
        assert [e.message for e in s.errors] == ["boom", "again"]


async def test_the_backoff_is_capped_and_jittered_by_the_injected_random_source() -> None:
    clock, q = ManualClock(1000.0), ScriptedLoop("q")
    policy = settings.BackoffSettings(base=1.0, factor=10.0, cap=5.0, jitter=0.1)
    async with running(make(q, clock, rand=lambda: 1.0, restart=policy)):
        await q.step(ValueError("1"))
        await clock.sleeping_until(1001.1)  # 1 s + 10 %
        clock.advance_to(1001.1)
        await q.step(ValueError("2"))
        await clock.sleeping_until(1001.1 + 5.5)  # min(10, 5) + 10 %


async def test_a_wake_up_does_not_cut_a_backoff_short() -> None:
    clock, q = ManualClock(1000.0), ScriptedLoop("q")
    async with running(make(q, clock)):
        await q.step(ValueError("boom"))
        await clock.sleeping_until(1001.0)
        q.wake.set()
        await anyio.wait_all_tasks_blocked()
        assert q.calls == 1
        clock.advance(1.0)
        assert await q.step() == 2


async def test_only_the_last_five_errors_are_kept() -> None:
    clock, q = ManualClock(1000.0), ScriptedLoop("q")
    policy = settings.BackoffSettings(base=1.0, factor=1.0, cap=1.0, jitter=0.0)
    r = make(q, clock, restart=policy)
    async with running(r):
        for n in range(7):
            await q.step(RuntimeError(f"e{n}"))
            await clock.sleeping_until(clock.now() + 1.0)
            clock.advance(1.0)
        await q.started.get()
        s = r.statistics()
        assert [e.message for e in s.errors] == ["e2", "e3", "e4", "e5", "e6"]
        assert (s.failures, s.consecutive_failures) == (7, 7)


async def test_system_exit_from_a_loop_is_a_crash_not_an_exit() -> None:
    clock, q = ManualClock(1000.0), ScriptedLoop("q")
    r = make(q, clock)
    async with running(r):
        await q.step(SystemExit(3))
        await clock.sleeping_until(1001.0)
        assert r.statistics().errors[-1] == loop.LoopError(1000.0, "SystemExit", "3")


async def test_an_iteration_past_its_timeout_is_judged_hung_and_left_running() -> None:
    clock, q = ManualClock(1000.0), ScriptedLoop("q", interval=1.0, timeout=5.0)
    r = make(q, clock)
    async with running(r):
        await q.step(BLOCK)
        await anyio.wait_all_tasks_blocked()
        clock.advance(5.0)
        assert health.judge_statistics(r.statistics(), clock.now()).health is not health.Health.HUNG
        clock.advance(0.5)
        verdict = health.judge_statistics(r.statistics(), clock.now())
        assert verdict.health is health.Health.HUNG
        assert r.statistics().state is S.RUNNING


async def test_stop_while_waiting_returns_at_once() -> None:
    clock, q = ManualClock(1000.0), ScriptedLoop("q")
    r = make(q, clock)
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(r.run)
            await q.step()
            await clock.sleeping_until(1010.0)
            r.stop()
    assert r.statistics().state is S.STOPPED
    assert clock.deadlines == []


async def test_stop_while_running_lets_the_iteration_finish_first() -> None:
    clock, q = ManualClock(1000.0), ScriptedLoop("q")
    r = make(q, clock)
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(r.run)
            await q.started.get()
            r.stop()
            await anyio.wait_all_tasks_blocked()
            assert r.statistics().state is S.RUNNING
            q.replies.put(None)
    s = r.statistics()
    assert (s.state, s.iterations, q.calls) == (S.STOPPED, 1, 1)


async def test_a_reload_is_handed_to_the_loop_before_an_iteration_that_starts_now() -> None:
    clock, q = ManualClock(1000.0), ScriptedLoop("q")
    r = make(q, clock)
    workspace = (settings.CodeLocationSettings(name="x", module="pipelines"),)
    async with running(r):
        await q.step()
        await clock.sleeping_until(1010.0)
        r.request_reload(workspace)
        assert await q.step() == 2
        assert q.reloads == [workspace]
        clock.advance(10.0)
        await q.step()  # reloaded once only
        assert q.reloads == [workspace]


async def test_each_iteration_is_reported_to_the_observer(caplog: pytest.LogCaptureFixture) -> None:
    clock, q = ManualClock(1000.0), ScriptedLoop("q")
    seen: list[tuple[str, float]] = []

    def observe(name: str, seconds: float) -> None:
        seen.append((name, seconds))
        if len(seen) == 2:
            raise RuntimeError("observer bug")

    r = make(q, clock, observe=observe)
    async with running(r):
        await q.started.get()
        clock.advance(0.5)
        q.replies.put(None)
        q.wake.set()
        await q.step(ValueError("x"))
        await clock.sleeping_until(1001.5)
        clock.advance(1.0)
        await q.step()
        await clock.sleeping_until(1011.5)
    assert seen == [("q", 0.5), ("q", 0.0), ("q", 0.0)]
    assert any(r.event == "daemon.observer_error" for r in caplog.records)  # type: ignore[attr-defined]


async def test_a_crash_is_logged_with_its_loop_error_and_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock, q = ManualClock(1000.0), ScriptedLoop("q")
    async with running(make(q, clock)):
        await q.step(ValueError("boom"))
        await clock.sleeping_until(1001.0)
    crashed = [r for r in caplog.records if getattr(r, "event", None) == "loop.crashed"]
    assert len(crashed) == 1
    assert crashed[0].loop == "q"  # type: ignore[attr-defined]
    assert crashed[0].error == "ValueError: boom"  # type: ignore[attr-defined]
    assert crashed[0].restart_in == 1.0  # type: ignore[attr-defined]
    assert crashed[0].exc_info is not None


# a crash because the store was away ------------------------------------------------------
SLOW = settings.BackoffSettings(base=30.0, factor=2.0, cap=600.0, jitter=0.0)
AWAY = errors.StoreUnavailable("cannot reach the store at test://: connection refused")


class Store:
    """The probe: the store's `ping`, answering while `up`; counts the times it was asked."""

    def __init__(self) -> None:
        self.up = False
        self.pings = 0
        self.hang = False

    async def ping(self) -> None:
        self.pings += 1
        if self.hang:
            await anyio.sleep_forever()
        await anyio.lowlevel.checkpoint()
        if not self.up:
            raise AWAY


def probed(q: ScriptedLoop, clock: ManualClock, store: Store) -> runner.LoopRunner:
    return runner.LoopRunner(
        q, clock=clock, restart=SLOW, rand=lambda: 0.5, probe=store.ping, probe_interval=1.0
    )


async def test_a_loop_the_store_failed_restarts_as_soon_as_the_store_answers_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock, q, store = ManualClock(1000.0), ScriptedLoop("q"), Store()
    r = probed(q, clock, store)
    async with running(r):
        await q.step(AWAY)
        await clock.sleeping_until(1030.0)  # the backoff stands...
        await clock.sleeping_until(1001.0)  # ...while the store is asked every second
        assert store.pings == 1
        clock.advance(1.0)
        await clock.sleeping_until(1002.0)
        store.up = True
        clock.advance(1.0)
        assert await q.step() == 2  # at once, not at 1030
        assert clock.now() == 1002.0
        await clock.sleeping_until(1012.0)
        s = r.statistics()
        assert (s.state, s.restarts, s.consecutive_failures) == (S.IDLE, 1, 0)
    assert any(getattr(rec, "event", None) == "loop.store_back" for rec in caplog.records)


async def test_the_backoff_starts_again_from_the_base_once_the_store_answered() -> None:
    clock, q, store = ManualClock(1000.0), ScriptedLoop("q"), Store()
    async with running(probed(q, clock, store)):
        await q.step(AWAY)
        await clock.sleeping_until(1001.0)
        store.up = True
        clock.advance(1.0)
        await q.step(AWAY)  # the store answers pings, yet the loop fails again
        await clock.sleeping_until(1001.0 + 30.0)  # the first delay again, not 60 s
        assert clock.deadlines[-1] == 1031.0


async def test_a_store_that_answers_at_once_does_not_cut_the_backoff_short() -> None:
    # A loop that fails "unavailable" while pings answer is not restarted every second.
    clock, q, store = ManualClock(1000.0), ScriptedLoop("q"), Store()
    store.up = True
    async with running(probed(q, clock, store)):
        await q.step(AWAY)
        for moment in (1001.0, 1002.0, 1003.0):
            await clock.sleeping_until(moment)
            clock.advance_to(moment)
        await clock.sleeping_until(1004.0)
        assert (q.calls, store.pings) == (1, 4)
        clock.advance_to(1030.0)
        assert await q.step() == 2


async def test_a_crash_caused_by_the_store_deep_in_its_causes_probes_too() -> None:
    clock, q, store = ManualClock(1000.0), ScriptedLoop("q"), Store()
    try:
        raise RuntimeError("tick failed") from AWAY
    except RuntimeError as exc:
        wrapped = exc
    async with running(probed(q, clock, store)):
        await q.step(ExceptionGroup("loop", [ValueError("x"), wrapped]))
        await clock.sleeping_until(1001.0)
        store.up = True
        clock.advance(1.0)
        assert await q.step() == 2


async def test_other_crashes_never_probe_the_store() -> None:
    clock, q, store = ManualClock(1000.0), ScriptedLoop("q"), Store()
    async with running(probed(q, clock, store)):
        await q.step(errors.StoreError("the store at test:// failed: bad SQL"))
        await clock.sleeping_until(1030.0)
        await anyio.wait_all_tasks_blocked()
        assert store.pings == 0
        assert clock.deadlines == [1030.0]


async def test_a_probe_that_hangs_counts_as_unanswered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "PROBE_TIMEOUT", 0.01)  # real seconds a probe may take
    clock, q, store = ManualClock(1000.0), ScriptedLoop("q"), Store()
    store.hang = True
    async with running(probed(q, clock, store)):
        await q.step(AWAY)
        await clock.sleeping_until(1001.0)
        store.hang, store.up = False, True
        clock.advance(1.0)
        assert await q.step() == 2


async def test_stop_while_waiting_for_the_store_returns_at_once() -> None:
    clock, q, store = ManualClock(1000.0), ScriptedLoop("q"), Store()
    r = probed(q, clock, store)
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(r.run)
            await q.step(AWAY)
            await clock.sleeping_until(1001.0)
            r.stop()
    assert r.statistics().state is S.STOPPED
    assert clock.deadlines == []


def test_the_store_is_found_in_causes_contexts_and_groups() -> None:
    assert runner.store_unavailable(AWAY)
    assert not runner.store_unavailable(ValueError("x"))
    assert not runner.store_unavailable(errors.StoreError("refused"))
    handling = KeyError("raised while handling it")
    handling.__context__ = AWAY
    assert runner.store_unavailable(handling)
    handling.__suppress_context__ = True  # `raise ... from None`: not the cause
    assert not runner.store_unavailable(handling)
    group = BaseExceptionGroup("g", [ExceptionGroup("inner", [AWAY])])
    assert runner.store_unavailable(group)
