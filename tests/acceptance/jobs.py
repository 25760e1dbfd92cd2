"""Jobs the acceptance tests need beyond the examples.

- sleepy: hangs until canceled.
- stubborn: hangs and ignores SIGTERM (a cancel it does not obey).
- flaky: fails the first time it runs, succeeds after (run config names a marker file).
"""

from __future__ import annotations

import pathlib
import signal
import threading

import pydantic

from vigil import Definitions, StepContext, job, step


@step
def wait_forever(context: StepContext) -> None:
    context.log.info("waiting to be canceled")
    threading.Event().wait(600)


@step
def after_wait(wait_forever: None) -> None:
    return wait_forever


@step
def ignore_sigterm(context: StepContext) -> None:
    """A step that will not stop when asked (its process ignores SIGTERM)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    context.log.info("ignoring SIGTERM")
    threading.Event().wait(600)


class MarkerConfig(pydantic.BaseModel):
    marker: str


@step
def fail_once(config: MarkerConfig) -> str:
    """Fails the first time (leaving the marker file), succeeds after."""
    marker = pathlib.Path(config.marker)
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("failing the first time on purpose")
    return "second time lucky"


@step
def prepare() -> int:
    return 41


@step
def finish(prepare: int, fail_once: str) -> int:
    return prepare + 1


defs = Definitions(
    jobs=[
        job("sleepy", [wait_forever, after_wait]),
        job("stubborn", [ignore_sigterm]),
        job("flaky", [prepare, fail_once, finish]),
    ]
)
