"""`--wait`: a run's progress on stderr while the CLI waits for its end.

On a terminal one line is redrawn in place (carriage return): steps done of the total, the
steps running, the time since the wait began. Piped, a plain line is written for each
change (a step started or ended, the run ended), each led by that elapsed time. The events
are read from the store, from a cursor, every `POLL` seconds. `watch` gives up after
`timeout` seconds (None: never) raising `WaitTimedOut`: the run goes on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection
from typing import Protocol, TextIO

import anyio

from vigil import events, runs
from vigil.storage import store as store_mod

E = events.EventType
POLL = 0.25
EXIT_TIMEOUT = 124  # `--wait --timeout` ran out before the run ended (as timeout(1) exits)
WATCHED = (E.STEP_START, E.STEP_SUCCESS, E.STEP_FAILURE, E.STEP_SKIPPED)
ENDED = {E.STEP_SUCCESS: "succeeded", E.STEP_FAILURE: "failed", E.STEP_SKIPPED: "skipped"}


class WaitTimedOut(Exception):
    """The run did not end within `--timeout`; the message names it."""


class WatchStore(store_mod.RunReader, store_mod.EventReader, Protocol):
    """What watching reads: the run and its events."""


@dataclasses.dataclass
class Progress:
    """What the events of a run told so far; `total` is the steps it will run, if known."""

    total: int | None
    done: set[str] = dataclasses.field(default_factory=set)
    running: list[str] = dataclasses.field(default_factory=list)

    def apply(self, event: events.Event) -> str | None:
        """Take in one event; the plain line that tells of it (None: nothing to tell)."""
        step = event.step or "?"
        if event.event_type is E.STEP_START:
            if step not in self.running:
                self.running.append(step)
            return f"step {step} started"
        if event.event_type in ENDED:
            if step in self.running:
                self.running.remove(step)
            self.done.add(step)
            return f"step {step} {ENDED[event.event_type]} ({self.count()})"
        return None

    def count(self) -> str:
        total = "?" if self.total is None else str(self.total)
        return f"{len(self.done)}/{total} steps done"

    def status(self, elapsed: float) -> str:
        """The one line a terminal shows."""
        running = f", running {', '.join(self.running)}" if self.running else ""
        return f"{self.count()}{running}, {elapsed:.0f}s"


class Display:
    """Where progress goes: a line redrawn in place on a terminal, else plain lines."""

    def __init__(self, out: TextIO, tty: bool, clock: Callable[[], float] = time.monotonic):
        self._out = out
        self._tty = tty
        self._clock = clock
        self._began = clock()
        self._width = 0

    def elapsed(self) -> float:
        return self._clock() - self._began

    def tell(self, line: str) -> None:
        if not self._tty:
            self._out.write(f"[{self.elapsed():.1f}s] {line}\n")
            self._out.flush()

    def redraw(self, progress: Progress) -> None:
        if self._tty:
            text = progress.status(self.elapsed())
            self._out.write("\r" + text.ljust(self._width))
            self._width = len(text)
            self._out.flush()

    def close(self) -> None:
        if self._tty and self._width:
            self._out.write("\n")
            self._out.flush()


async def watch(
    store: WatchStore,
    run_id: str,
    progress: Progress,
    display: Display,
    timeout: float | None,  # noqa: ASYNC109 - the wait's own deadline
) -> runs.Run:
    """Show the run's progress until it ends; WaitTimedOut once `timeout` passed."""
    found: runs.Run | None = None
    with anyio.move_on_after(timeout):
        found = await _follow(store, run_id, progress, display)
    display.close()
    if found is None:
        raise WaitTimedOut(f"run {run_id} did not end within --timeout {timeout:g} s; it goes on")
    return found


async def _follow(store: WatchStore, run_id: str, progress: Progress, display: Display) -> runs.Run:
    cursor = 0
    while True:
        run = await store.get_run(run_id)  # read first: the events below include its end
        cursor = _show(await _new_events(store, run_id, cursor, WATCHED), progress, display, cursor)
        display.redraw(progress)
        if run.status.is_terminal:
            display.tell(f"run {run.run_id} ended {run.status}")
            return run
        await anyio.sleep(POLL)


async def _new_events(
    store: WatchStore, run_id: str, cursor: int, kinds: Collection[events.EventType]
) -> list[events.Event]:
    return await store.get_events(run_id, after_id=cursor, event_types=kinds)


def _show(found: list[events.Event], progress: Progress, display: Display, cursor: int) -> int:
    for event in found:
        line = progress.apply(event)
        if line is not None:
            display.tell(line)
        cursor = event.event_id
    return cursor
