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
import functools
import itertools
import json
import logging
import pathlib
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from vigil import errors
from vigil.config import settings as settings_mod
from vigil.evaluation import messages
from vigil.evaluation import process as process_mod

LOAD_TIMEOUT = 120.0
CATALOG_WAIT = 2.0
logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class LocationCatalog:
    """What a code location defines, as its process last reported it (its `describe()`s);
    and, while it fails to load, why (its instigators stay known, their ticks fail)."""

    location: str
    schedules: tuple[Mapping[str, Any], ...] = ()
    sensors: tuple[Mapping[str, Any], ...] = ()
    error: str | None = None
    loading: bool = False  # a load is under way and no process is ready yet


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
    """The processes of one code location.

    A process is loaded in the background when the pool serves (`EvaluatorPool.serve`), so
    a location that is slow or hangs on import holds back nobody: `catalog` waits for it at
    most `catalog_wait` and says it is still loading (the loops leave its instigators for
    later). A load that passes `load_timeout` is killed and counts as a failed load.
    """

    def __init__(
        self,
        settings: settings_mod.CodeLocationSettings,
        base_dir: pathlib.Path,
        environ: Mapping[str, str],
        limits: Limits,
        hooks: Hooks,
    ) -> None:
        self.name = settings.location_name
        self.settings = settings
        self._spec = json.dumps(
            {"location": settings.model_dump(mode="json"), "base_dir": str(base_dir)}
        )
        self._environ = environ
        self._cwd = str(base_dir)
        self._limits = limits
        self._hooks = hooks
        self._slots = anyio.Semaphore(limits.processes)
        self._idle: list[process_mod.EvaluationProcess] = []
        self._all: set[process_mod.EvaluationProcess] = set()
        self._catalog: LocationCatalog | None = None
        self._failed_at: float | None = None
        self._loading: anyio.Event | None = None
        self._loading_since: float | None = None
        self._generation = 0
        self.restarts = 0

    async def catalog(self) -> LocationCatalog:
        """What the location last reported; a load is begun (and waited for at most
        `catalog_wait`) when no process runs. While the location loads and no process is
        ready, the catalog says so (`loading`), so its instigators wait for it."""
        if not self._all:
            loading = self._begin_load()
            if loading is not None:
                await self._await_load(loading, self._limits.catalog_wait)
        last = self._catalog or LocationCatalog(self.name)
        loading_now = self._loading is not None and not self._idle
        return dataclasses.replace(last, loading=loading_now)

    async def evaluate(self, request: messages.Request, timeout: float) -> Result:  # noqa: ASYNC109
        async with self._slots:
            proc = await self._take()
            if proc is None:
                return Result.failed(self._not_ready())
            began = self._limits.monotonic()
            generation = self._generation
            try:
                answer = await proc.call(request, timeout)
            except errors.EvaluationTimeout as exc:
                self._lost(proc)
                return Result.failed(str(exc), timed_out=True)
            except errors.EvaluationError as exc:
                self._lost(proc)
                return Result.failed(str(exc))
            except BaseException:  # cancelled halfway through an answer: not to be reused
                self._all.discard(proc)
                await proc.kill()
                raise
            self._answered(proc, generation)
            return Result(answer, seconds=self._limits.monotonic() - began)

    def _answered(self, proc: process_mod.EvaluationProcess, generation: int) -> None:
        """Back to the idle ones; unless the location was closed while it answered (the
        workspace reloaded): then it runs the code as it was, and is closed now."""
        if generation == self._generation:
            self._idle.append(proc)
        else:
            self._hooks.spawn(proc.close)

    def _not_ready(self) -> str:
        error = None if self._catalog is None else self._catalog.error
        return error or f"code location '{self.name}' did not load"

    async def _take(self) -> process_mod.EvaluationProcess | None:
        """An idle process, or a newly loaded one (a load ends within `load_timeout`);
        None while the location fails to load."""
        while not self._idle:
            loading = self._loading or self._begin_load()
            if loading is None:
                return None
            await loading.wait()
        return self._idle.pop()

    def _begin_load(self) -> anyio.Event | None:
        """Start loading a process unless one is loading or the last load failed lately."""
        if self._loading is not None:
            return self._loading
        failed_at = self._failed_at
        limits = self._limits
        if failed_at is not None and limits.monotonic() - failed_at < limits.retry_after:
            return None
        loading = self._loading = anyio.Event()
        self._loading_since = self._limits.monotonic()
        proc = process_mod.EvaluationProcess(
            self._spec, self._environ, self._cwd, self._hooks.output_of(self.name)
        )
        self._all.add(proc)
        self._hooks.spawn(functools.partial(self._load, proc, loading, self._generation))
        return loading

    async def _await_load(self, loading: anyio.Event, wait: float) -> None:
        with anyio.move_on_after(max(wait, 0.0)):
            await loading.wait()

    async def _load(
        self, proc: process_mod.EvaluationProcess, loading: anyio.Event, generation: int
    ) -> None:
        """Load one process; its outcome is recorded before anyone waiting is told."""
        try:
            hello = await self._hello(proc)
            if generation != self._generation:  # closed meanwhile: the workspace was reloaded
                await proc.kill()
            elif isinstance(hello, messages.LoadFailure):
                self._all.discard(proc)
                self._failed(hello.error)
                await proc.kill()
            else:
                self._failed_at = None
                self._catalog = LocationCatalog(self.name, hello.schedules, hello.sensors)
                self._idle.append(proc)
        except BaseException:
            self._all.discard(proc)
            await proc.kill()
            raise
        finally:
            if self._loading is loading:
                self._loading = None
            loading.set()
        self._hooks.loaded()

    async def _hello(
        self, proc: process_mod.EvaluationProcess
    ) -> messages.Catalog | messages.LoadFailure:
        try:
            return await proc.start(self._limits.load_timeout)
        except errors.EvaluationError as exc:
            return messages.LoadFailure(f"code location '{self.name}' failed to load: {exc}")

    def _failed(self, error: str) -> None:
        """What it defined when it last loaded stays known: those ticks fail with the error."""
        self._failed_at = self._limits.monotonic()
        last = self._catalog or LocationCatalog(self.name)
        self._catalog = LocationCatalog(self.name, last.schedules, last.sensors, error)

    def _lost(self, proc: process_mod.EvaluationProcess) -> None:
        self._all.discard(proc)
        self.restarts += 1

    async def close(self) -> None:
        """Stop its processes: the idle ones now, one still loading at once (killed), one
        answering a request once it has answered (`_answered`), so a reload fails no
        evaluation in flight. The next request starts (and imports the code) afresh."""
        idle = self._idle
        loading_procs = [proc for proc in self._all if not proc.started]
        self._all, self._idle = set(), []
        self._generation += 1
        self._failed_at = None
        loading, self._loading = self._loading, None
        if loading is not None:
            loading.set()
        async with anyio.create_task_group() as tg:
            for proc in idle:
                tg.start_soon(proc.close)
            for proc in loading_procs:
                tg.start_soon(proc.kill)


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    processes: int
    retry_after: float
    load_timeout: float = LOAD_TIMEOUT
    catalog_wait: float = CATALOG_WAIT
    monotonic: Callable[[], float] = time.monotonic


class Hooks:
    """What a location's evaluator asks of its pool: the task group of background loads,
    a wake-up when one ends, and where user code's output goes."""

    def __init__(self) -> None:
        self.task_group: anyio.abc.TaskGroup | None = None
        self.listeners: list[Callable[[], None]] = []
        self.pending: list[Callable[[], Coroutine[Any, Any, None]]] = []

    def spawn(self, load: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Load in the pool's task group; asked before the pool is served (a loop that
        started first), the load waits for it."""
        if self.task_group is None:
            self.pending.append(load)
        else:
            self.task_group.start_soon(load)

    def loaded(self) -> None:
        for listener in self.listeners:
            listener()

    def output_of(self, location: str) -> process_mod.Output:
        def output(line: str, instigator: str | None) -> None:
            logger.info(
                "%s",
                line,
                extra={
                    "event": "location.output",
                    "location": location,
                    "instigator": instigator,
                },
            )

        return output


Factory = Callable[[settings_mod.CodeLocationSettings, Hooks], LocationEvaluator]


class EvaluatorPool:
    """Every code location's evaluator; `evaluate_all` is bounded and round-robin.

    `serve` (a daemon service) holds the task group in which processes load; the pool
    answers only while it is served.
    """

    def __init__(
        self,
        locations: Sequence[settings_mod.CodeLocationSettings],
        factory: Factory,
        max_concurrent: int,
    ) -> None:
        self._factory = factory
        self._hooks = Hooks()
        self._locations = {loc.location_name: factory(loc, self._hooks) for loc in locations}
        self._limit = anyio.Semaphore(max_concurrent)

    async def serve(self) -> None:
        async with anyio.create_task_group() as tg:
            self._hooks.task_group = tg
            pending, self._hooks.pending = self._hooks.pending, []
            for load in pending:
                tg.start_soon(load)
            try:
                await anyio.sleep_forever()
            finally:
                self._hooks.task_group = None

    def spawn(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `work` in the pool's task group (work that may outlive its caller, such as
        a location's evaluations); before the pool is served, it waits for it."""
        self._hooks.spawn(work)

    def on_loaded(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever a load ends (a location became ready, or failed)."""
        self._hooks.listeners.append(listener)

    async def reload(self, locations: Sequence[settings_mod.CodeLocationSettings]) -> None:
        """Take a new workspace: every process is stopped, so the code is imported again.

        A location kept by name keeps what it last reported (its instigators stay known).
        """
        old, self._locations = self._locations, {}
        for settings in locations:
            name = settings.location_name
            kept = old.get(name)
            self._locations[name] = (
                kept
                if kept is not None and kept.settings == settings
                else self._factory(settings, self._hooks)
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
    load_timeout: float = LOAD_TIMEOUT,
) -> EvaluatorPool:
    limits = Limits(processes, retry_after, load_timeout)

    def factory(settings: settings_mod.CodeLocationSettings, hooks: Hooks) -> LocationEvaluator:
        return LocationEvaluator(settings, base_dir, environ, limits, hooks)

    return EvaluatorPool(locations, factory, max_concurrent)
