"""The workspace as the CLI sees it: each code location loaded in its own process.

The CLI never imports user code itself (`vigil job execute` aside, which runs a job in
its own process on purpose). `find` starts one evaluation process per code location
(`python -m vigil.evaluation.child`, the daemon's), all at once, and returns the first
location whose catalog holds what the command needs, killing the others' processes; `all`
waits for every one. A process that does not load its location within the load timeout is
killed, and that location, like one that raised or exited, is a one-line failure; the
other locations go on. What user code prints there reaches the CLI's stderr, each line
prefixed by its location, cut after `process.OUTPUT_LIMIT` bytes. Leaving `opened` kills
every process the command started (and what they forked).

Commands report failures they ran into as warnings (`warn`) and go on; a name found in no
loaded location while some failed says so (`missing`).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import click

from vigil import errors
from vigil.cli import common
from vigil.config import settings as settings_mod
from vigil.evaluation import messages
from vigil.evaluation import process as process_mod

Output = Callable[[str, str], None]  # (location, line)


@dataclasses.dataclass(frozen=True)
class Location:
    """One code location: its catalog, or the one line saying why it failed to load."""

    name: str
    catalog: messages.Catalog | None = None
    error: str | None = None

    @property
    def jobs(self) -> tuple[messages.JobInfo, ...]:
        return self.catalog.jobs if self.catalog is not None else ()

    @property
    def schedules(self) -> tuple[Mapping[str, Any], ...]:
        return self.catalog.schedules if self.catalog is not None else ()

    @property
    def sensors(self) -> tuple[Mapping[str, Any], ...]:
        return self.catalog.sensors if self.catalog is not None else ()

    def names(self, kind: str) -> list[str]:
        if kind == "job":
            return [j.name for j in self.jobs]
        return [d["name"] for d in (self.schedules if kind == "schedule" else self.sensors)]

    def job(self, name: str) -> messages.JobInfo | None:
        return next((j for j in self.jobs if j.name == name), None)

    def instigator(self, kind: str, name: str) -> Mapping[str, Any] | None:
        described = self.schedules if kind == "schedule" else self.sensors
        return next((d for d in described if d["name"] == name), None)


class Workspace:
    """The code locations of one command, each loaded in its own process on demand."""

    def __init__(
        self,
        locations: Sequence[settings_mod.CodeLocationSettings],
        base_dir: pathlib.Path,
        environ: Mapping[str, str],
        load_timeout: float,
        output: Output,
    ) -> None:
        self._settings = {loc.location_name: loc for loc in locations}
        self._base_dir = base_dir
        self._environ = dict(environ)
        self._load_timeout = load_timeout
        self._output = output
        self._loaded: dict[str, Location] = {}
        self._processes: dict[str, process_mod.EvaluationProcess] = {}

    @property
    def load_timeout(self) -> float:
        return self._load_timeout

    @property
    def failures(self) -> list[Location]:
        """The locations found failing so far, in the workspace's order."""
        return [self._loaded[n] for n in self._settings if n in self._loaded and self._failed(n)]

    def _failed(self, name: str) -> bool:
        return self._loaded[name].error is not None

    def names(self, kind: str) -> list[str]:
        """The jobs, schedules or sensors of the locations loaded so far."""
        return [name for loc in self._loaded.values() for name in loc.names(kind)]

    async def all(self) -> list[Location]:
        """Every location, loaded or failed, in the workspace's order."""
        await self.find(lambda location: False)
        return [self._loaded[name] for name in self._settings]

    async def find(self, wanted: Callable[[Location], bool]) -> Location | None:
        """The first loaded location that is `wanted`; the other loads are stopped then (their
        processes killed). None when every location loaded or failed without one."""
        for location in self._loaded.values():
            if location.catalog is not None and wanted(location):
                return location
        found: list[Location] = []
        async with anyio.create_task_group() as tg:
            for name in self._settings:
                if name not in self._loaded:
                    tg.start_soon(self._load, name, wanted, found, tg.cancel_scope)
        return found[0] if found else None

    async def _load(
        self,
        name: str,
        wanted: Callable[[Location], bool],
        found: list[Location],
        scope: anyio.CancelScope,
    ) -> None:
        proc = process_mod.EvaluationProcess(
            _spec(self._settings[name], self._base_dir),
            self._environ,
            str(self._base_dir),
            output=lambda line, _instigator: self._output(name, line),
        )
        self._processes[name] = proc
        try:
            location = await self._start(name, proc)
        finally:
            if name not in self._loaded:  # stopped: another location had what was wanted
                with anyio.CancelScope(shield=True):
                    await self._forget(name)
        if location.catalog is not None and wanted(location) and not found:
            found.append(location)
            scope.cancel()

    async def _start(self, name: str, proc: process_mod.EvaluationProcess) -> Location:
        try:
            hello = await proc.start(self._load_timeout)
        except (errors.EvaluationError, OSError) as exc:
            hello = messages.LoadFailure(str(exc))
        if isinstance(hello, messages.LoadFailure):
            location = Location(name, error=failure_line(name, hello.error))
            self._loaded[name] = location
            await self._forget(name)
            return location
        location = Location(name, catalog=hello)
        self._loaded[name] = location
        return location

    async def _forget(self, name: str) -> None:
        proc = self._processes.pop(name, None)
        if proc is not None:
            await proc.kill()

    async def ask(
        self,
        location: str,
        request: messages.Request,
        timeout: float,  # noqa: ASYNC109 - the process's deadline
    ) -> messages.Answer:
        """One request to a loaded location's process; EvaluationError (naming the location)
        when the process does not answer in time or dies."""
        proc = self._processes.get(location)
        if proc is None:
            raise errors.EvaluationError(f"code location '{location}' is not loaded")
        try:
            return await proc.call(request, timeout)
        except errors.EvaluationError as exc:
            self._processes.pop(location, None)
            raise type(exc)(f"code location '{location}': {exc}") from None

    async def close(self) -> None:
        """Kill every process still running (and what it forked)."""
        procs, self._processes = list(self._processes.values()), {}
        with anyio.CancelScope(shield=True):
            for proc in procs:
                await proc.kill()


def _spec(location: settings_mod.CodeLocationSettings, base_dir: pathlib.Path) -> str:
    return json.dumps({"location": location.model_dump(mode="json"), "base_dir": str(base_dir)})


def failure_line(name: str, error: str) -> str:
    """`code location 'x' failed to load: ...` in one line (a traceback's last line)."""
    lines = [line for line in error.strip().splitlines() if line.strip()]
    text = lines[-1].strip() if lines else "no reason given"
    if text.startswith(f"code location '{name}'"):
        return text
    return f"code location '{name}' failed to load: {text}"


# The command's side ------------------------------------------------------------------------
def _echo_output(location: str, line: str) -> None:
    click.echo(f"[{location}] {line}", err=True)


@asynccontextmanager
async def opened(output: Output = _echo_output) -> AsyncIterator[Workspace]:
    """The configured workspace for the block; relative paths from the current directory.
    Every process it started is killed when the block ends."""
    st = common.state()
    timeout = st.load_timeout or st.settings.scheduling.load_timeout
    workspace = Workspace(st.settings.workspace, pathlib.Path.cwd(), st.environ, timeout, output)
    try:
        yield workspace
    finally:
        await workspace.close()


load_timeout_option = common.load_timeout_option  # kept here for the commands that use it


async def job_location(workspace: Workspace, job: str) -> Location:
    """The location defining `job` (UnknownJob, naming the failed locations, otherwise)."""
    found = await workspace.find(lambda location: location.job(job) is not None)
    if found is None:
        known = workspace.names("job")
        raise errors.UnknownJob(missing("job", job, known, workspace.failures))
    return found


async def instigator_location(
    workspace: Workspace, kind: str, name: str
) -> tuple[Location, Mapping[str, Any]]:
    """The location defining schedule or sensor `name`, and its `describe()` (else NotFound)."""
    found = await workspace.find(lambda location: location.instigator(kind, name) is not None)
    if found is None:
        known = workspace.names(kind)
        raise errors.NotFound(missing(kind, name, known, workspace.failures))
    described = found.instigator(kind, name)
    assert described is not None
    return found, described


def all_locations() -> list[Location]:
    """Every code location, loaded or failed (for a command of its own)."""

    async def main() -> list[Location]:
        async with opened() as ws:
            return await ws.all()

    return common.run_async(main)


def locate(kind: str, name: str) -> tuple[Location, Mapping[str, Any]]:
    """The schedule or sensor `name`, its location and `describe()`; NotFound (naming the
    locations that failed) when no loaded location defines it. For a command of its own."""

    async def main() -> tuple[Location, Mapping[str, Any]]:
        async with opened() as ws:
            found = await instigator_location(ws, kind, name)
            warn(ws.failures)
            return found

    return common.run_async(main)


def lookup(kind: str, name: str) -> tuple[Location, Mapping[str, Any]] | None:
    """Like `locate`, but None when no loaded location defines it."""

    async def main() -> tuple[Location, Mapping[str, Any]] | None:
        async with opened() as ws:
            found = await ws.find(lambda location: location.instigator(kind, name) is not None)
            warn(ws.failures)
        described = found.instigator(kind, name) if found is not None else None
        return None if found is None or described is None else (found, described)

    return common.run_async(main)


def warn(failures: Iterable[Location]) -> None:
    """One warning line on stderr for each location that failed to load."""
    for location in failures:
        click.echo(f"warning: {location.error}", err=True)


def missing(kind: str, name: str, known: Iterable[str], failures: Sequence[Location]) -> str:
    """`no job named 'x' (known jobs: ...)`, and why some locations could not be asked."""
    listed = ", ".join(sorted(known)) or "none"
    message = f"no {kind} named '{name}' (known {kind}s: {listed})"
    return "; ".join([message, *(str(f.error) for f in failures)])


def conflicts(locations: Sequence[Location]) -> list[str]:
    """Jobs, schedules or sensors that two loaded locations both define."""
    found: list[str] = []
    for kind in ("job", "schedule", "sensor"):
        seen: dict[str, str] = {}
        for location in locations:
            for name in location.names(kind):
                if name in seen:
                    found.append(
                        f"{kind} '{name}' is defined in code locations "
                        f"'{seen[name]}' and '{location.name}'"
                    )
                seen.setdefault(name, location.name)
    return found
