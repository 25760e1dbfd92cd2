"""Heartbeat writers against a fake store; the info codec."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from tests.daemon.fakes import HeartbeatStore, ManualClock
from vigil import errors
from vigil.daemon import heartbeat, loop

IDENTITY = heartbeat.DaemonIdentity("d1", "box", 42, 900.0)
DEADLINE = 10


def stats(**changes: Any) -> loop.LoopStatistics:
    return loop.LoopStatistics(
        name="q",
        interval=2.0,
        timeout=8.0,
        state=loop.LoopState.IDLE,
        iterations=3,
        failures=1,
        restarts=1,
        last_iteration_start=990.0,
        last_iteration_end=991.5,
        last_success=991.5,
        last_duration=1.5,
        errors=(loop.LoopError(985.0, "KeyError", "'x'"),),
        consecutive_failures=0,
        started_at=950.0,
        total_duration=4.0,
        **changes,
    )


def writer(store: HeartbeatStore, clock: ManualClock, **kwargs: Any) -> heartbeat.HeartbeatWriter:
    def read() -> dict[str, Any]:
        return heartbeat.loop_info(stats(), IDENTITY, 5.0)

    return heartbeat.HeartbeatWriter(
        store, IDENTITY, "q", read, clock=clock, interval=5.0, **kwargs
    )


def test_loop_info_round_trips_to_statistics() -> None:
    info = heartbeat.loop_info(stats(), IDENTITY, 5.0)
    assert info["kind"] == "loop"
    assert info["state"] == "idle"
    assert info["errors"] == [{"at": 985.0, "type": "KeyError", "message": "'x'"}]
    assert (info["heartbeat_interval"], info["daemon_started_at"]) == (5.0, 900.0)
    assert info["stopped"] is False
    assert heartbeat.statistics_from_info("q", info) == stats()


def test_statistics_from_sparse_info_take_defaults() -> None:
    read = heartbeat.statistics_from_info("q", {"state": "unknown-state", "errors": [{}]})
    assert read.state is loop.LoopState.STARTING
    assert (read.iterations, read.last_iteration_end) == (0, None)
    assert read.errors == (loop.LoopError(0.0, "Error", ""),)


def test_supervisor_info_names_its_loops() -> None:
    info = heartbeat.supervisor_info("running", ["a", "b"], IDENTITY, 5.0)
    assert info == {
        "kind": "supervisor",
        "state": "running",
        "loops": ["a", "b"],
        "daemon_started_at": 900.0,
        "heartbeat_interval": 5.0,
        "stopped": False,
    }


async def test_a_writer_beats_at_once_then_every_interval() -> None:
    clock, store = ManualClock(1000.0), HeartbeatStore()
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(writer(store, clock).run)
            first = await store.writes.get()
            assert (first.daemon_id, first.loop, first.host, first.pid) == ("d1", "q", "box", 42)
            assert first.last_heartbeat == 1000.0
            assert first.info["iterations"] == 3
            await clock.sleeping_until(1005.0)
            clock.advance(5.0)
            assert (await store.writes.get()).last_heartbeat == 1005.0
            await clock.sleeping_until(1010.0)
            tg.cancel_scope.cancel()


async def test_a_refused_write_is_logged_once_and_retried_every_second_until_it_passes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock, store = ManualClock(1000.0), HeartbeatStore()
    store.fail_next = 2
    refused: list[errors.StoreError] = []
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(writer(store, clock, on_store_error=refused.append).run)
            for moment in (1001.0, 1002.0):  # RETRY_INTERVAL, not the 5 s interval
                await clock.sleeping_until(moment)
                clock.advance_to(moment)
            assert (await store.writes.get()).last_heartbeat == 1002.0
            await clock.sleeping_until(1007.0)  # written: back to the interval
            tg.cancel_scope.cancel()
    assert len(refused) == 2
    assert all(isinstance(e, errors.StoreUnavailable) for e in refused)
    names = [getattr(r, "event", None) for r in caplog.records]
    assert names.count("heartbeat.failed") == 1
    assert names.count("heartbeat.recovered") == 1


async def test_a_cancelled_writer_writes_a_final_stopped_heartbeat() -> None:
    clock, store = ManualClock(1000.0), HeartbeatStore()
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(writer(store, clock).run)
            await store.writes.get()
            await clock.sleeping_until(1005.0)
            clock.advance(1.0)
            tg.cancel_scope.cancel()
    final = store.rows[("d1", "q")]
    assert final.last_heartbeat == 1001.0
    assert final.info["stopped"] is True
    assert final.info["state"] == "stopped"


async def test_a_final_write_the_store_refuses_is_not_raised() -> None:
    clock, store = ManualClock(1000.0), HeartbeatStore()
    with anyio.fail_after(DEADLINE):
        async with anyio.create_task_group() as tg:
            await tg.start(writer(store, clock).run)
            await store.writes.get()
            store.fail_next = 1
            tg.cancel_scope.cancel()
    assert store.rows[("d1", "q")].info["stopped"] is False
