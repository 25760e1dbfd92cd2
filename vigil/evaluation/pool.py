"""The evaluation processes of every code location, as the daemon's loops use them.

Each code location gets up to `processes` warm processes, started on first use and kept.
A process that timed out or died is replaced at the next request. A location that fails to
load answers every request with its load error until `retry_after` has passed, when it is
tried again (so a fixed file is picked up without a restart); other locations go on.

`evaluate_all` runs a batch: requests of different locations are interleaved round-robin,
so that a location with many instigators does not starve the others, and at most
`max_concurrent` run at once. Requests and answers are the types of `messages`; a process
that fails to answer gives a failed `Answer` too, so a loop reads one type.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio

from vigil import errors
from vigil.config import settings as settings_mod
from vigil.evaluation import messages
from vigil.evaluation import process as process_mod

LOAD_TIMEOUT = 120.0


@dataclasses.dataclass(frozen=True, slots=True)
class LocationCatalog:
    """What a code location defines, as its process last reported it (its `describe()`s);
    and, while it fails to load, why (its instigators stay known, their ticks fail)."""

    location: str
    schedules: tuple[Mapping[str, Any], ...] = ()
    sensors: tuple[Mapping[str, Any], ...] = ()
    error: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluation:
    """One request for a code location, with its timeout."""

    location: str
    request: messages.Request
    timeout: float


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """An answer (ok or failed), or a failure of the process itself as a failed answer."""

    answer: messages.Answer
    timed_out: bool = False
    seconds: float | None = None  # how long the process took to answer

    @classmethod
    def failed(cls, error: str, timed_out: bool = False) -> Result:
        return cls(messages.Answer.failed(error), timed_out)

    @property
    def ok(self) -> bool:
        return self.answer.ok

    @property
    def error(self) -> str | None:
        return self.answer.error


class LocationEvaluator:
    """The processes of one code location."""

    def __init__(
        self,
        settings: settings_mod.CodeLocationSettings,
        base_dir: pathlib.Path,
        environ: Mapping[str, str],
        processes: int,
        retry_after: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = settings.location_name
        self.settings = settings
        self._spec = json.dumps(
            {"location": settings.model_dump(mode="json"), "base_dir": str(base_dir)}
        )
        self._environ = environ
        self._cwd = str(base_dir)
        self._retry_after = retry_after
        self._monotonic = monotonic
        self._slots = anyio.Semaphore(processes)
        self._idle: list[process_mod.EvaluationProcess] = []
        self._all: set[process_mod.EvaluationProcess] = set()
        self._catalog: LocationCatalog | None = None
        self._failed_at: float | None = None
        self.restarts = 0

    async def catalog(self) -> LocationCatalog:
        """The location's catalog, starting a process if none reported one yet."""
        if self._catalog is None or self._catalog.error is not None:
            async with self._slots:
                proc = await self._take()
                if proc is not None:
                    self._idle.append(proc)
        assert self._catalog is not None
        return self._catalog

    async def evaluate(self, request: messages.Request, timeout: float) -> Result:  # noqa: ASYNC109
        async with self._slots:
            proc = await self._take()
            if proc is None:
                assert self._catalog is not None
                return Result.failed(str(self._catalog.error))
            began = self._monotonic()
            try:
                answer = await proc.call(request, timeout)
            except errors.EvaluationTimeout as exc:
                self._lost(proc)
                return Result.failed(str(exc), timed_out=True)
            except errors.EvaluationError as exc:
                self._lost(proc)
                return Result.failed(str(exc))
            self._idle.append(proc)
            return Result(answer, seconds=self._monotonic() - began)

    async def _take(self) -> process_mod.EvaluationProcess | None:
        """An idle process, or a new one; None while the location fails to load."""
        if self._idle:
            return self._idle.pop()
        failed_at = self._failed_at
        if failed_at is not None and self._monotonic() - failed_at < self._retry_after:
            return None
        proc = process_mod.EvaluationProcess(self._spec, self._environ, self._cwd)
        self._all.add(proc)
        try:
            hello = await proc.start(LOAD_TIMEOUT)
        except errors.EvaluationError as exc:
            error = f"code location '{self.name}' failed to load: {exc}"
            hello = messages.LoadFailure(error)
        if isinstance(hello, messages.LoadFailure):
            self._all.discard(proc)
            await proc.kill()
            self._failed(hello.error)
            return None
        self._failed_at = None
        self._catalog = LocationCatalog(self.name, hello.schedules, hello.sensors)
        return proc

    def _failed(self, error: str) -> None:
        """What it defined when it last loaded stays known: those ticks fail with the error."""
        self._failed_at = self._monotonic()
        last = self._catalog or LocationCatalog(self.name)
        self._catalog = LocationCatalog(self.name, last.schedules, last.sensors, error)

    def _lost(self, proc: process_mod.EvaluationProcess) -> None:
        self._all.discard(proc)
        self.restarts += 1

    async def close(self) -> None:
        """Stop its processes; the next request starts (and imports the code) afresh."""
        procs, self._all, self._idle = list(self._all), set(), []
        self._failed_at = None
        async with anyio.create_task_group() as tg:
            for proc in procs:
                tg.start_soon(proc.close)


Factory = Callable[[settings_mod.CodeLocationSettings], LocationEvaluator]


class EvaluatorPool:
    """Every code location's evaluator; `evaluate_all` is bounded and round-robin."""

    def __init__(
        self,
        locations: Sequence[settings_mod.CodeLocationSettings],
        factory: Factory,
        max_concurrent: int,
    ) -> None:
        self._factory = factory
        self._locations = {loc.location_name: factory(loc) for loc in locations}
        self._limit = anyio.Semaphore(max_concurrent)

    async def reload(self, locations: Sequence[settings_mod.CodeLocationSettings]) -> None:
        """Take a new workspace: every process is stopped, so the code is imported again.

        A location kept by name keeps what it last reported (its instigators stay known).
        """
        old, self._locations = self._locations, {}
        for settings in locations:
            name = settings.location_name
            kept = old.get(name)
            self._locations[name] = (
                kept if kept is not None and kept.settings == settings else self._factory(settings)
            )
        async with anyio.create_task_group() as tg:
            for loc in old.values():
                tg.start_soon(loc.close)

    @property
    def restarts(self) -> int:
        return sum(loc.restarts for loc in self._locations.values())

    async def catalogs(self) -> list[LocationCatalog]:
        found: dict[str, LocationCatalog] = {}

        async def one(loc: LocationEvaluator) -> None:
            found[loc.name] = await loc.catalog()

        async with anyio.create_task_group() as tg:
            for loc in self._locations.values():
                tg.start_soon(one, loc)
        return [found[name] for name in self._locations]

    async def evaluate_all(self, batch: Sequence[Evaluation]) -> list[Result]:
        """Answers in the batch's order; locations take turns, `max_concurrent` at a time."""
        results: list[Result | None] = [None] * len(batch)

        async def one(index: int) -> None:
            item = batch[index]
            loc = self._locations.get(item.location)
            if loc is None:
                error = f"no code location named '{item.location}'"
                results[index] = Result.failed(error)
                return
            async with self._limit:
                results[index] = await loc.evaluate(item.request, item.timeout)

        async with anyio.create_task_group() as tg:
            for index in round_robin(batch):
                tg.start_soon(one, index)
        return [r for r in results if r is not None]

    async def close(self) -> None:
        async with anyio.create_task_group() as tg:
            for loc in self._locations.values():
                tg.start_soon(loc.close)


def round_robin(batch: Sequence[Evaluation]) -> list[int]:
    """Indexes of the batch, taking one of each location in turn (each in its own order)."""
    by_location: dict[str, list[int]] = {}
    for index, item in enumerate(batch):
        by_location.setdefault(item.location, []).append(index)
    turns = itertools.zip_longest(*by_location.values())
    return [index for turn in turns for index in turn if index is not None]


def build(
    locations: Sequence[settings_mod.CodeLocationSettings],
    base_dir: pathlib.Path,
    environ: Mapping[str, str],
    *,
    processes: int,
    max_concurrent: int,
    retry_after: float,
) -> EvaluatorPool:
    def factory(settings: settings_mod.CodeLocationSettings) -> LocationEvaluator:
        return LocationEvaluator(settings, base_dir, environ, processes, retry_after)

    return EvaluatorPool(locations, factory, max_concurrent)
