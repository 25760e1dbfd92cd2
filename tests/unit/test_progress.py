"""`--wait` progress: what the step events tell, as plain lines or one redrawn line."""

from __future__ import annotations

import io

from vigil import events
from vigil.cli import progress

E = events.EventType


def event(kind: events.EventType, step: str, event_id: int = 1) -> events.Event:
    return events.Event(event_id, "r-1", kind, 0.0, step, None, "", {})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_step_events_tell_starts_and_ends_with_the_count() -> None:
    shown = progress.Progress(total=3)
    told = [
        shown.apply(event(E.STEP_START, "extract")),
        shown.apply(event(E.STEP_START, "load")),
        shown.apply(event(E.STEP_SUCCESS, "extract")),
        shown.apply(event(E.STEP_FAILURE, "load")),
        shown.apply(event(E.STEP_SKIPPED, "report")),
        shown.apply(event(E.LOG, "load")),
    ]
    assert told == [
        "step extract started",
        "step load started",
        "step extract succeeded (1/3 steps done)",
        "step load failed (2/3 steps done)",
        "step report skipped (3/3 steps done)",
        None,
    ]


def test_the_terminal_line_names_the_running_steps_and_the_time() -> None:
    shown = progress.Progress(total=None)
    shown.apply(event(E.STEP_START, "a"))
    shown.apply(event(E.STEP_START, "b"))
    assert shown.status(12.4) == "0/? steps done, running a, b, 12s"


def test_piped_lines_are_plain_and_a_terminal_redraws_one_line() -> None:
    clock, piped, terminal = Clock(), io.StringIO(), io.StringIO()
    plain = progress.Display(piped, tty=False, clock=clock)
    redrawn = progress.Display(terminal, tty=True, clock=clock)
    shown = progress.Progress(total=2)
    clock.now += 1.5
    for display in (plain, redrawn):
        display.tell(shown.apply(event(E.STEP_START, "long_step_name")) or "")
        display.redraw(shown)
    shown.apply(event(E.STEP_SUCCESS, "long_step_name"))
    for display in (plain, redrawn):
        display.redraw(shown)
        display.close()
    assert piped.getvalue() == "[1.5s] step long_step_name started\n"
    first = "0/2 steps done, running long_step_name, 2s"
    then = "1/2 steps done, 2s".ljust(len(first))  # covers what was there
    assert terminal.getvalue() == f"\r{first}\r{then}\n"
