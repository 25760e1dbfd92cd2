"""Jobs the benchmarks run: one step, a 10-step chain, a step that logs 10,000 lines, one
that hangs until its worker is stopped (the monitor benchmark kills it), and a two-step job
whose second step hangs on its first execution only (bench/celery.py kills its worker and
counts, in files under `$BENCH_COUNT_DIR`, how often each step ran)."""

from __future__ import annotations

import os
import pathlib
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


def _count(run_id: str, name: str) -> int:
    """Append a line to `$BENCH_COUNT_DIR/RUN_ID.name`; how many lines it now has."""
    path = pathlib.Path(os.environ["BENCH_COUNT_DIR"]) / f"{run_id}.{name}"
    with path.open("a") as file:
        file.write("ran\n")
    return len(path.read_text().splitlines())


@step
def first(context: StepContext) -> int:
    return _count(context.run_id, "first")


@step
def second(context: StepContext, first: int) -> int:
    if _count(context.run_id, "second") == 1:
        threading.Event().wait(600)  # the bench kills this worker meanwhile
    return first


defs = Definitions(
    jobs=[
        job("one", [only]),
        job("chain10", [s0, s1, s2, s3, s4, s5, s6, s7, s8, s9]),
        job("log10k", [chatter]),
        job("hang", [hang]),
        job("resumable", [first, second]),
    ]
)
