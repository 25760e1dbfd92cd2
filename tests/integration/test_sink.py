"""The worker's batching event sink against a real store: writes, and `take`."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from tests import waiting
from vigil import events, storage
from vigil.storage import sql
from vigil.worker import sink as sink_mod

E = events.EventType
RUN = "r1"


def log(message: str) -> events.NewEvent:
    return events.NewEvent(RUN, E.LOG, 1.0, message=message)


async def messages(store: storage.Store) -> list[str]:
    return [e.message for e in await store.get_events(RUN)]


async def test_emitted_events_are_written_in_order(store: sql.SqlStore) -> None:
    async with sink_mod.batching_sink(store) as sink:
        for i in range(5):
            sink.emit(log(f"e{i}"))
    assert await messages(store) == ["e0", "e1", "e2", "e3", "e4"]


async def test_take_hands_back_what_is_not_written_and_writes_later_events_at_the_end(
    store: sql.SqlStore,
) -> None:
    async with sink_mod.batching_sink(store) as sink:
        sink.emit(log("a"))
        sink.emit(log("b"))
        taken = await sink.take()
        sink.emit(log("late"))
        await anyio.wait_all_tasks_blocked()
        written_before_the_end = await messages(store)
    assert [e.message for e in taken] == ["a", "b"]
    assert written_before_the_end == []
    assert await messages(store) == ["late"]


class Writer:
    """An `EventWriter` over the store that records each batch and may hold writes back."""

    def __init__(self, store: storage.Store) -> None:
        self.store = store
        self.batches: list[int] = []
        self.writing = anyio.Event()
        self.release = anyio.Event()
        self.release.set()

    async def append_events(self, batch: Sequence[events.NewEvent]) -> None:
        self.batches.append(len(batch))
        self.writing.set()
        await self.release.wait()
        await self.store.append_events(batch)


async def test_take_waits_for_a_write_under_way(store: sql.SqlStore) -> None:
    writer = Writer(store)
    writer.release = anyio.Event()
    taken: list[events.NewEvent] = []

    async def take(sink: sink_mod.BatchingSink) -> None:
        taken.extend(await sink.take())

    async with sink_mod.batching_sink(writer) as sink, anyio.create_task_group() as tg:
        sink.emit(log("in flight"))
        await writer.writing.wait()
        tg.start_soon(take, sink)
        sink.emit(log("after"))
        await anyio.wait_all_tasks_blocked()
        assert taken == []
        writer.release.set()
    assert [e.message for e in taken] == ["after"]
    assert await messages(store) == ["in flight"]


async def test_events_gathered_within_the_linger_are_written_together_while_the_block_runs(
    store: sql.SqlStore,
) -> None:
    writer = Writer(store)
    async with sink_mod.batching_sink(writer) as sink:
        for message in ("x", "y", "z"):
            sink.emit(log(message))

        async def written() -> bool:
            return await messages(store) == ["x", "y", "z"]

        await waiting.eventually(written)
    assert writer.batches == [3]
