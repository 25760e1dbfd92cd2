"""Jobs the acceptance tests need beyond the examples: one that hangs until canceled."""

from __future__ import annotations

import threading

from vigil import Definitions, StepContext, job, step


@step
def wait_forever(context: StepContext) -> None:
    context.log.info("waiting to be canceled")
    threading.Event().wait(600)


@step
def after_wait(wait_forever: None) -> None:
    return wait_forever


defs = Definitions(jobs=[job("sleepy", [wait_forever, after_wait])])
