"""Where the store is, read from vigil.yaml and VIGIL_* without the settings model.

The read commands (`run list`, `run show`, `daemon status`, `daemon liveness-check`) need
only the store's location and the heartbeat interval. Building the whole settings model
(pydantic) and opening the store through SQLAlchemy costs them most of a second on a small
machine, so they first try this: `read` returns those few values when it can read them
exactly as the settings model would, and None whenever it cannot be sure (a value of
another type or out of bounds, a key or variable it does not handle, a file it cannot
read). None sends the command down the full path, which validates everything and reports
any error in its usual words. Tests pin both paths to the same answer.

Only the `store` section and `daemon.heartbeat_interval` are read here: a mistake elsewhere
in vigil.yaml is reported by the commands that use that part, and by `vigil config check`.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from vigil.config import limits, names

CONFIG_FILE = "vigil.yaml"
# The safe loader, in C where PyYAML has it (the settings loader's `safe_load` reads the same).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The top-level keys of vigil.yaml (InstanceSettings' fields; a test pins the two).
TOP_LEVEL = frozenset(
    {
        "home", "store", "logs_dir", "storage_dir", "workspace", "run_launcher",
        "run_coordinator", "executor", "daemon", "http", "scheduling", "run_monitoring",
        "run_retries", "backfills", "run_worker", "retention",
    }
)  # fmt: skip


class Unsure(Exception):
    """A value this module cannot read exactly as the settings model would."""


@dataclasses.dataclass(frozen=True, slots=True)
class Sqlite:
    path: pathlib.Path
    busy_timeout: float


@dataclasses.dataclass(frozen=True, slots=True)
class Postgres:
    host: str
    port: int
    user: str
    database: str
    password: str | None = dataclasses.field(repr=False)
    connect_timeout: float


@dataclasses.dataclass(frozen=True, slots=True)
class QueueLimits:
    """The built-in queued coordinator's limits: its global one and its tag limits (each
    the keys of `admission.TagLimit`)."""

    max_concurrent_runs: int
    tag_limits: tuple[Mapping[str, Any], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class QuickSettings:
    store: Sqlite | Postgres
    heartbeat_interval: float
    # None: another coordinator, or options not read here (`vigil queue` takes the full path)
    queue: QueueLimits | None = None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise Unsure
    return value


def _number(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, str) and value == value.strip() and value:
            try:
                value = float(value)
            except ValueError:
                raise Unsure from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Unsure
        if not math.isfinite(value) or not low <= value <= high:
            raise Unsure
        return float(value)

    return parse


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise Unsure
        return value

    return parse


def _kind(value: Any) -> str:
    if value not in ("sqlite", "postgres"):
        raise Unsure
    return str(value)


def _path(value: Any) -> pathlib.Path:
    return pathlib.Path(_text(value))


# Every key this module reads, by key path, with its parser: the settings model's types
# and bounds (vigil/config/settings.py).
_KEYS: dict[tuple[str, ...], Callable[[Any], Any]] = {
    ("store", "kind"): _kind,
    ("store", "sqlite_path"): _path,
    ("store", "busy_timeout"): _number(limits.MIN_INTERVAL, limits.DAY),
    ("store", "postgres", "host"): _text,
    ("store", "postgres", "port"): _integer(1, 65535),
    ("store", "postgres", "user"): _text,
    ("store", "postgres", "database"): _text,
    ("store", "postgres", "password"): _text,
    ("store", "postgres", "password_file"): _path,
    ("store", "postgres", "pool_size"): _integer(1, 1000),
    ("store", "postgres", "max_overflow"): _integer(0, 1000),
    ("store", "postgres", "connect_timeout"): _number(limits.MIN_INTERVAL, limits.DAY),
    ("daemon", "heartbeat_interval"): _number(limits.MIN_INTERVAL, limits.MAX_HEARTBEAT_INTERVAL),
}
_VARIABLES = {names.PREFIX + names.DELIMITER.join(key).upper(): key for key in _KEYS}
_DEFAULTS: dict[tuple[str, ...], Any] = {
    ("store", "kind"): "sqlite",
    ("store", "busy_timeout"): 30.0,
    ("store", "postgres", "host"): "127.0.0.1",
    ("store", "postgres", "port"): 5432,
    ("store", "postgres", "user"): "vigil",
    ("store", "postgres", "database"): "vigil",
    ("store", "postgres", "connect_timeout"): 10.0,
    ("daemon", "heartbeat_interval"): 5.0,
}


_UNSURE = (Unsure, OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError, ValueError)


def read(home: pathlib.Path, environ: Mapping[str, str]) -> QuickSettings | None:
    """The store's location and the heartbeat interval, or None when not sure of them."""
    try:
        data = _file(home / CONFIG_FILE)
        values = {**_from_file(data), **_from_environment(environ)}
        found = _settings(home, {key: _KEYS[key](value) for key, value in values.items()})
    except _UNSURE:
        return None
    try:
        section = data.get("run_coordinator", {"type": "queued"})
        return dataclasses.replace(found, queue=_queue(section))
    except _UNSURE:
        return found


def _file(path: pathlib.Path) -> dict[Any, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    data = yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    if data is None:
        return {}
    if not isinstance(data, dict) or not set(data) <= TOP_LEVEL:
        raise Unsure
    return data


def _from_file(data: Mapping[Any, Any]) -> dict[tuple[str, ...], Any]:
    found: dict[tuple[str, ...], Any] = {}
    _leaves(data.get("store", {}), ("store",), found, strict=True)
    _leaves(data.get("daemon", {}), ("daemon",), found, strict=False)
    return found


def _leaves(
    section: Any, path: tuple[str, ...], found: dict[tuple[str, ...], Any], *, strict: bool
) -> None:
    """The values below `path`; any key not read here is Unsure when `strict`."""
    if not isinstance(section, dict):
        raise Unsure
    for key, value in section.items():
        where = (*path, key)
        if where in _KEYS:
            found[where] = value
        elif where == ("store", "postgres"):
            _leaves(value, where, found, strict=True)
        elif strict:
            raise Unsure


def _from_environment(environ: Mapping[str, str]) -> dict[tuple[str, ...], Any]:
    found: dict[tuple[str, ...], Any] = {}
    for variable, value in environ.items():
        upper = variable.upper()
        if not upper.startswith(names.PREFIX) or upper == names.HOME:
            continue
        if upper not in _VARIABLES and not names.is_not_setting(upper):
            raise Unsure  # another setting, or a typo the full path reports
        if upper in _VARIABLES:
            found[_VARIABLES[upper]] = value
    return found


def _settings(home: pathlib.Path, values: Mapping[tuple[str, ...], Any]) -> QuickSettings:
    def get(*key: str) -> Any:
        return values.get(key, _DEFAULTS.get(key))

    interval = get("daemon", "heartbeat_interval")
    if get("store", "kind") == "sqlite":
        path = get("store", "sqlite_path") or home / "vigil.db"
        return QuickSettings(Sqlite(path, get("store", "busy_timeout")), interval)
    pg = ("store", "postgres")
    store = Postgres(
        host=get(*pg, "host"),
        port=get(*pg, "port"),
        user=get(*pg, "user"),
        database=get(*pg, "database"),
        password=_password(get(*pg, "password"), get(*pg, "password_file")),
        connect_timeout=get(*pg, "connect_timeout"),
    )
    return QuickSettings(store, interval)


def _password(password: str | None, password_file: pathlib.Path | None) -> str | None:
    if password is not None or password_file is None:
        return password
    return password_file.read_text(encoding="utf-8").rstrip("\r\n")


# The queued coordinator's options (coordinators/queued.py QueuedOptions), by parser.
_QUEUE_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "max_concurrent_runs": _integer(-1, limits.MAX_COUNT),
    "poll_interval": _number(limits.MIN_INTERVAL, limits.DAY),
    "max_inflight_launches": _integer(1, 10_000),
    "launch_timeout": _number(limits.MIN_INTERVAL, limits.DAY),
    "launch_retries": _integer(0, 100),
}
_TAG_LIMIT: dict[str, Callable[[Any], Any]] = {
    "key": _text,
    "value": lambda value: None if value is None else _text(value),
    "limit": _integer(0, 1_000_000),
    "per_value": lambda value: _exactly(value, bool),
}


def _queue(section: Any) -> QueueLimits:
    """The built-in queued coordinator's limits (the default coordinator); Unsure of any
    other coordinator, or of options not exactly as its options model reads them."""
    if not isinstance(section, dict) or not set(section) <= {"type", "options"}:
        raise Unsure
    if section.get("type") != "queued":  # a section names its type
        raise Unsure
    if not isinstance(options := section.get("options", {}), dict):
        raise Unsure
    options = dict(options)
    tag_limits = options.pop("tag_concurrency_limits", [])
    if not set(options) <= set(_QUEUE_OPTIONS) or not isinstance(tag_limits, list):
        raise Unsure
    parsed = {name: _QUEUE_OPTIONS[name](value) for name, value in options.items()}
    return QueueLimits(
        max_concurrent_runs=parsed.get("max_concurrent_runs", limits.DEFAULT_MAX_CONCURRENT_RUNS),
        tag_limits=tuple(_tag_limit(entry) for entry in tag_limits),
    )


def _tag_limit(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict) or not {"key", "limit"} <= set(entry) <= set(_TAG_LIMIT):
        raise Unsure
    parsed = {name: _TAG_LIMIT[name](value) for name, value in entry.items()}
    if not parsed["key"] or (parsed.get("per_value") and parsed.get("value") is not None):
        raise Unsure
    return parsed


def _exactly(value: Any, kind: type) -> Any:
    if type(value) is not kind:
        raise Unsure
    return value
