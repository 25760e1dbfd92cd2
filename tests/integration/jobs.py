"""Jobs for the worker and launcher integration tests."""

from __future__ import annotations

import threading

import pydantic

from vigil import Definitions, job, step


class Flaky(pydantic.BaseModel):
    fail: bool = False


@step
def a() -> int:
    return 1


@step
def b(a: int) -> int:
    return a + 1


@step
def c(b: int, config: Flaky) -> int:
    if config.fail:
        raise RuntimeError("c was told to fail")
    return b * 10


@step
def hang() -> None:
    threading.Event().wait(600)


defs = Definitions(jobs=[job("abc", [a, b, c]), job("hang", [hang])])
