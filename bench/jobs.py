"""Jobs the benchmarks run: one step, a 10-step chain, a step that logs 10,000 lines, and
one that hangs until its worker is stopped (the monitor benchmark kills it)."""

from __future__ import annotations

import threading

from vigil import Definitions, StepContext, job, step


@step
def only() -> int:
    return 1


@step
def s0() -> int:
    return 0


@step
def s1(s0: int) -> int:
    return s0 + 1


@step
def s2(s1: int) -> int:
    return s1 + 1


@step
def s3(s2: int) -> int:
    return s2 + 1


@step
def s4(s3: int) -> int:
    return s3 + 1


@step
def s5(s4: int) -> int:
    return s4 + 1


@step
def s6(s5: int) -> int:
    return s5 + 1


@step
def s7(s6: int) -> int:
    return s6 + 1


@step
def s8(s7: int) -> int:
    return s7 + 1


@step
def s9(s8: int) -> int:
    return s8 + 1


@step
def chatter(context: StepContext) -> int:
    log = context.log
    for i in range(10_000):
        log.info(f"line {i} of the benchmark")
    return 10_000


@step
def hang() -> None:
    threading.Event().wait(600)


defs = Definitions(
    jobs=[
        job("one", [only]),
        job("chain10", [s0, s1, s2, s3, s4, s5, s6, s7, s8, s9]),
        job("log10k", [chatter]),
        job("hang", [hang]),
    ]
)
