"""Crash points: SIGKILL this process at one store call, from outside the code under test.

The crash tests put this directory first on a child's PYTHONPATH, so Python imports this
module at startup (`site`), and set:

    VIGIL_CRASH_AT=Class.method:before|after:ROLE   e.g. SqlStore.claim_queued_runs:after:daemon
    VIGIL_CRASH_MARKER=/path/of/a/marker/file

With VIGIL_CRASH_AT unset nothing happens: no hook, no patch, nothing of vigil imported.
With it set, an import hook wraps `Class.method` of `vigil.storage.sql` when that module is
imported (no earlier: importing vigil here would cost every process its imports). In a
process of ROLE, the wrapper kills the process with SIGKILL:

- `before`: just before the call;
- `after`: just after the call returned (its transaction committed), only if the call did
  something: a truthy result (a non-empty list, True, a run), or, for a method declared
  `-> None`, non-empty collection arguments (`record_launches({})` records nothing).

Only once per test: the marker is created with O_EXCL first (a JSON line: pid, role, the
crash point, the run ids the call concerned); when it exists already nobody is killed, so
the restarted daemon or the resumed worker runs normally.

Roles, decided at call time: `daemon` is the process started as `... daemon run` (not the
processes it forks); `worker` is a process inside `vigil.worker.worker.run_worker`, also
wrapped here. A worker forked from the worker template (`prefork: true`) keeps the
template's argv, so the wrapper is what recognizes it; a `prefork: false` worker is a
fresh `python -m vigil worker run` and is recognized the same way. Step processes forked
by a worker (another pid) are never taken for it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from importlib import machinery
from types import ModuleType
from typing import Any

SPEC_ENV = "VIGIL_CRASH_AT"
MARKER_ENV = "VIGIL_CRASH_MARKER"
STORE_MODULE = "vigil.storage.sql"
WORKER_MODULE = "vigil.worker.worker"
WHENS = ("before", "after")
ROLES = ("daemon", "worker")

Patch = Callable[[ModuleType], None]
AsyncMethod = Callable[..., Coroutine[Any, Any, Any]]

_MAIN_PID = os.getpid()  # this interpreter's first process (not a fork of it)
_worker_pid: int | None = None  # set while `run_worker` runs in this process


@dataclasses.dataclass(frozen=True)
class CrashPoint:
    """Where to crash: `Class.method:when:role`."""

    cls: str
    method: str
    when: str
    role: str

    @classmethod
    def parse(cls, text: str) -> CrashPoint:
        target, _, rest = text.partition(":")
        when, _, role = rest.partition(":")
        class_name, _, method = target.partition(".")
        if not (class_name and method) or when not in WHENS or role not in ROLES:
            raise ValueError(
                f"{SPEC_ENV}={text!r}: expected Class.method:before|after:daemon|worker"
            )
        return cls(class_name, method, when, role)

    def __str__(self) -> str:
        return f"{self.cls}.{self.method}:{self.when}:{self.role}"


def current_role() -> str | None:
    """What this process is doing now: a run worker, the daemon, or nothing of interest."""
    pid = os.getpid()
    if _worker_pid == pid or (pid == _MAIN_PID and _runs("worker", "run")):
        return "worker"
    if pid == _MAIN_PID and _runs("daemon", "run"):
        return "daemon"
    return None


def _runs(*words: str) -> bool:
    argv = sys.orig_argv
    return any(tuple(argv[i : i + len(words)]) == words for i in range(len(argv)))


# the kill ------------------------------------------------------------------------------
def crash(point: CrashPoint, run_ids: Sequence[str]) -> None:
    """SIGKILL this process, unless the marker says a process was killed already."""
    path = os.environ.get(MARKER_ENV)
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return
    record = {"pid": os.getpid(), "role": point.role, "at": str(point), "run_ids": run_ids}
    os.write(fd, (json.dumps(record) + "\n").encode())
    os.close(fd)
    print(f"vigil crash injection: SIGKILL at {point} ({record})", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def did_something(result: object, bound: inspect.BoundArguments, procedure: bool) -> bool:
    """Whether a call counts for an `after` crash (see the module docstring)."""
    if result is not None or not procedure:
        return bool(result)
    collections = [v for v in bound.arguments.values() if _is_collection(v)]
    return bool(collections) and all(len(v) > 0 for v in collections)


def _is_collection(value: object) -> bool:
    return isinstance(value, Mapping | Sequence) and not isinstance(value, str | bytes)


def run_ids_of(result: object, bound: inspect.BoundArguments) -> list[str]:
    """The run ids a call concerned: its `run_id`, runs or launches in and out, mapping keys."""
    found: list[str] = []
    run_id = bound.arguments.get("run_id")
    if isinstance(run_id, str):
        found.append(run_id)
    for value in (result, *bound.arguments.values()):
        found.extend(_ids_within(value))
    return list(dict.fromkeys(found))


def _ids_within(value: object) -> list[str]:
    if isinstance(value, Mapping):
        return [key for key in value if isinstance(key, str)]
    items = value if _is_collection(value) else [value]
    assert isinstance(items, Sequence)
    return [item.run_id for item in items if isinstance(getattr(item, "run_id", None), str)]


# the wrappers --------------------------------------------------------------------------
def wrap_method(owner: type, point: CrashPoint) -> None:
    """Replace `owner.<method>` by a wrapper that crashes at `point`."""
    original: AsyncMethod | None = getattr(owner, point.method, None)
    if original is None or not inspect.iscoroutinefunction(original):
        raise AttributeError(f"crash injection: {owner.__name__} has no async {point.method}")
    signature = inspect.signature(original)
    procedure = signature.return_annotation in (None, "None")

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        active = current_role() == point.role
        if active and point.when == "before":
            crash(point, run_ids_of(None, signature.bind(*args, **kwargs)))
        result = await original(*args, **kwargs)
        if active and point.when == "after":
            bound = signature.bind(*args, **kwargs)
            if did_something(result, bound, procedure):
                crash(point, run_ids_of(result, bound))
        return result

    setattr(owner, point.method, wrapper)


def patch_store(point: CrashPoint) -> Patch:
    def patch(module: ModuleType) -> None:
        owner = getattr(module, point.cls, None)
        if not isinstance(owner, type):
            raise AttributeError(f"crash injection: {module.__name__} has no class {point.cls}")
        wrap_method(owner, point)

    return patch


def patch_worker(module: ModuleType) -> None:
    """Mark the process as a run worker while `run_worker` runs (forked workers included)."""
    original: AsyncMethod = getattr(module, "run_worker")  # noqa: B009 - a module's attribute

    @functools.wraps(original)
    async def run_worker(*args: Any, **kwargs: Any) -> Any:
        global _worker_pid
        _worker_pid = os.getpid()
        return await original(*args, **kwargs)

    setattr(module, "run_worker", run_worker)  # noqa: B010 - a module's attribute


# the import hook -----------------------------------------------------------------------
class PatchingLoader:
    """Runs a module's own loader, then the patch; anything else goes to that loader."""

    def __init__(self, loader: Any, patch: Patch) -> None:
        self._loader = loader
        self._patch = patch

    def create_module(self, spec: machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class PatchingFinder:
    """A meta path finder that finds nothing itself: it patches what the others find."""

    def __init__(self, patches: Mapping[str, Patch]) -> None:
        self._patches = dict(patches)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> machinery.ModuleSpec | None:
        patch = self._patches.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: machinery.ModuleSpec | None = find(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = PatchingLoader(spec.loader, patch)  # type: ignore[assignment]
                return spec
        return None


def install(text: str) -> None:
    point = CrashPoint.parse(text)
    if not os.environ.get(MARKER_ENV):
        raise RuntimeError(f"{SPEC_ENV} is set but {MARKER_ENV} is not: refusing to crash")
    patches: dict[str, Patch] = {STORE_MODULE: patch_store(point), WORKER_MODULE: patch_worker}
    sys.meta_path.insert(0, PatchingFinder(patches))


if os.environ.get(SPEC_ENV):
    try:
        install(os.environ[SPEC_ENV])
    except (ValueError, RuntimeError) as exc:
        # `site` would only print a line and go on without the crash point: refuse instead.
        print(f"vigil crash injection: {exc}", file=sys.stderr, flush=True)
        os._exit(70)
