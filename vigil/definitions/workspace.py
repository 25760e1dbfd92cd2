"""The workspace: code locations loaded from the user's modules or files.

Loading imports user code, so any error it raises is turned into one readable
CodeLocationLoadError naming the file and line where the user's code went wrong.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import pathlib
import re
import sys
import sysconfig
import traceback
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from vigil import errors
from vigil.definitions import definitions as definitions_mod
from vigil.definitions import job as job_mod
from vigil.definitions import schedule as schedule_mod
from vigil.definitions import sensor as sensor_mod

if TYPE_CHECKING:  # not at run time: an evaluation process never imports pydantic-settings
    from vigil.config import settings as settings_mod

_VIGIL_DIR = pathlib.Path(__file__).resolve().parent.parent
_STDLIB_DIRS = tuple(
    pathlib.Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "platstdlib")
)
_LIBRARY_DIRS = tuple(
    pathlib.Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")
)


@dataclasses.dataclass(frozen=True)
class CodeLocation:
    """One loaded code location and the Definitions it exposes."""

    name: str
    settings: settings_mod.CodeLocationSettings
    definitions: definitions_mod.Definitions


class Workspace:
    """The loaded code locations; a job name is unique across all of them."""

    def __init__(self, locations: Iterable[CodeLocation]) -> None:
        self.locations = tuple(locations)
        self._jobs = _index_jobs(self.locations)
        _check_instigators(self.locations)

    @property
    def job_names(self) -> tuple[str, ...]:
        return tuple(self._jobs)

    def find_job(self, name: str) -> tuple[CodeLocation, job_mod.JobDef]:
        try:
            location = self._jobs[name]
        except KeyError:
            known = ", ".join(sorted(self._jobs)) or "none"
            raise errors.UnknownJob(f"no job named '{name}' (known jobs: {known})") from None
        return location, location.definitions.get_job(name)

    def find_schedule(self, name: str) -> tuple[CodeLocation, schedule_mod.ScheduleDef]:
        for location in self.locations:
            found = location.definitions.get_schedule(name)
            if found is not None:
                return location, found
        known = ", ".join(
            sorted(s.name for loc in self.locations for s in loc.definitions.schedules)
        )
        raise errors.NotFound(f"no schedule named '{name}' (known schedules: {known or 'none'})")

    def find_sensor(self, name: str) -> tuple[CodeLocation, sensor_mod.SensorDef]:
        for location in self.locations:
            found = location.definitions.get_sensor(name)
            if found is not None:
                return location, found
        known = ", ".join(sorted(s.name for loc in self.locations for s in loc.definitions.sensors))
        raise errors.NotFound(f"no sensor named '{name}' (known sensors: {known or 'none'})")


def load_workspace(
    settings_seq: Sequence[settings_mod.CodeLocationSettings], base_dir: pathlib.Path
) -> Workspace:
    return Workspace(load_location(s, base_dir) for s in settings_seq)


def load_location(
    settings: settings_mod.CodeLocationSettings, base_dir: pathlib.Path
) -> CodeLocation:
    """Import a code location once per process; later calls return the same object."""
    return _load_cached(settings, base_dir.resolve())


@functools.cache
def _load_cached(
    settings: settings_mod.CodeLocationSettings, base_dir: pathlib.Path
) -> CodeLocation:
    name = settings.location_name
    _add_to_path(settings.working_directory, base_dir)
    if settings.module is not None:
        module = _import_module(name, settings.module, base_dir)
        source = f"module '{settings.module}'"
    else:
        assert settings.file is not None
        path = _resolve(settings.file, base_dir)
        module = _import_file(name, path, base_dir)
        source = f"file '{_display(path, base_dir)}'"
    defs = _find_definitions(name, module, settings.attribute, source)
    return CodeLocation(name=name, settings=settings, definitions=defs)


def _index_jobs(locations: Sequence[CodeLocation]) -> dict[str, CodeLocation]:
    jobs: dict[str, CodeLocation] = {}
    for location in locations:
        for job_name in location.definitions.job_names:
            if job_name in jobs:
                raise errors.DefinitionError(
                    f"job '{job_name}' is defined in code locations "
                    f"'{jobs[job_name].name}' and '{location.name}'"
                )
            jobs[job_name] = location
    return jobs


def _check_instigators(locations: Sequence[CodeLocation]) -> None:
    """A schedule or sensor name is unique across the code locations (its store identity)."""
    seen: dict[str, str] = {}
    for location in locations:
        defs = location.definitions
        for instigator in [s.instigator for s in defs.schedules] + [
            s.instigator for s in defs.sensors
        ]:
            if instigator in seen:
                kind, name = instigator.split(":", 1)
                raise errors.DefinitionError(
                    f"{kind} '{name}' is defined in code locations "
                    f"'{seen[instigator]}' and '{location.name}'"
                )
            seen[instigator] = location.name


def _resolve(path: pathlib.Path, base_dir: pathlib.Path) -> pathlib.Path:
    return path if path.is_absolute() else base_dir / path


def _add_to_path(working_directory: pathlib.Path | None, base_dir: pathlib.Path) -> None:
    directory = str(_resolve(working_directory, base_dir) if working_directory else base_dir)
    if directory not in sys.path:
        sys.path.insert(0, directory)


def _import_module(name: str, module_name: str, base_dir: pathlib.Path) -> types.ModuleType:
    try:
        return importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:
        raise _load_error(name, exc, base_dir) from exc


def _import_file(name: str, path: pathlib.Path, base_dir: pathlib.Path) -> types.ModuleType:
    if not path.is_file():
        raise errors.CodeLocationLoadError(
            f"code location '{name}' failed to load: no file {_display(path, base_dir)}"
        )
    module_name = "vigil_location_" + re.sub(r"\W", "_", name)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise errors.CodeLocationLoadError(
            f"code location '{name}' failed to load: cannot import {_display(path, base_dir)}"
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(module_name, None)
        raise _load_error(name, exc, base_dir) from exc
    return module


def _find_definitions(
    name: str, module: types.ModuleType, attribute: str | None, source: str
) -> definitions_mod.Definitions:
    if attribute is not None:
        found = getattr(module, attribute, None)
        if not isinstance(found, definitions_mod.Definitions):
            raise errors.DefinitionError(
                f"code location '{name}': {source} has no Definitions named '{attribute}'"
            )
        return found
    candidates = _definitions_in(vars(module))
    if len(candidates) != 1:
        found_names = ", ".join(candidates) or "none"
        raise errors.DefinitionError(
            f"code location '{name}': {source} must define exactly one Definitions object "
            f"(found: {found_names}); set 'attribute' to choose one"
        )
    return next(iter(candidates.values()))


def _definitions_in(namespace: Mapping[str, object]) -> dict[str, definitions_mod.Definitions]:
    found: dict[str, definitions_mod.Definitions] = {}
    for attr, value in namespace.items():
        is_new = all(value is not seen for seen in found.values())
        if isinstance(value, definitions_mod.Definitions) and is_new:
            found[attr] = value
    return found


def _load_error(name: str, exc: BaseException, base_dir: pathlib.Path) -> errors.DefinitionError:
    where = _where(exc, base_dir)
    prefix = f"{where}: " if where else ""
    text = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return errors.CodeLocationLoadError(f"code location '{name}' failed to load: {prefix}{detail}")


def _where(exc: BaseException, base_dir: pathlib.Path) -> str | None:
    """The file and line to blame: the syntax error's, else the innermost user frame.

    User frames are those outside vigil, the standard library (importlib) and installed
    libraries; a location that is itself an installed package falls back to library frames.
    """
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{_display(pathlib.Path(exc.filename), base_dir)}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _is_internal(f.filename)]
    user_frames = [f for f in frames if not _is_under(f.filename, _LIBRARY_DIRS)]
    chosen = user_frames or frames
    if not chosen:
        return None
    return f"{_display(pathlib.Path(chosen[-1].filename), base_dir)}:{chosen[-1].lineno}"


def _is_internal(filename: str) -> bool:
    if filename.startswith("<") or _is_under(filename, (_VIGIL_DIR,)):
        return True
    return _is_under(filename, _STDLIB_DIRS) and not _is_under(filename, _LIBRARY_DIRS)


def _is_under(filename: str, directories: Iterable[pathlib.Path]) -> bool:
    path = pathlib.Path(filename).resolve()
    return any(path.is_relative_to(d) for d in directories)


def _display(path: pathlib.Path, base_dir: pathlib.Path) -> str:
    resolved = path.resolve()
    if resolved.is_relative_to(base_dir):
        return str(resolved.relative_to(base_dir))
    return str(path)
