"""Build the instance settings once, at the edge: vigil.yaml, then VIGIL_* overrides.

Every failure becomes one `ConfigError` naming the file (or environment variable), the key
path and what was expected.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

import pydantic
import yaml
from sqlalchemy.engine import URL

from vigil import errors
from vigil.config import settings as settings_mod
from vigil.storage import engine

CONFIG_FILE = "vigil.yaml"
ENV_PREFIX = "VIGIL_"


def home_from_env(environ: Mapping[str, str]) -> pathlib.Path:
    return pathlib.Path(environ.get("VIGIL_HOME", ".vigil")).absolute()


class _Built:
    """The settings last built in this process and exactly what they were built from.

    Settings are a pure function of the home, the text of its vigil.yaml and the
    environment, so the same three give the same (frozen) settings back without parsing
    and validating again. A run worker forked from the worker template, which built them
    before forking, gets them for the price of reading the file.
    """

    def __init__(self) -> None:
        self._source: tuple[pathlib.Path, str | None, tuple[tuple[str, str], ...]] | None = None
        self._settings: settings_mod.InstanceSettings | None = None

    def get(
        self, home: pathlib.Path, text: str | None, environ: Mapping[str, str]
    ) -> settings_mod.InstanceSettings:
        source = (home, text, tuple(sorted(environ.items())))
        if self._settings is None or source != self._source:
            self._settings = _build(home, text, environ)
            self._source = source
        return self._settings


_built = _Built()


def load_settings(home: pathlib.Path) -> settings_mod.InstanceSettings:
    """Read `home/vigil.yaml` (optional) and the VIGIL_* environment into frozen settings."""
    return _built.get(home, _read_text(home / CONFIG_FILE), os.environ)


def _build(
    home: pathlib.Path, text: str | None, environ: Mapping[str, str]
) -> settings_mod.InstanceSettings:
    path = home / CONFIG_FILE
    data = {} if text is None else _parse_yaml(path, text)
    try:
        built = settings_mod.InstanceSettings(**data)
    except pydantic.ValidationError as exc:
        raise errors.ConfigError(describe_validation_error(exc, path, data, environ)) from None
    return built.model_copy(update={"home": home})


def read_yaml(path: pathlib.Path) -> dict[str, Any]:
    text = _read_text(path)
    return {} if text is None else _parse_yaml(path, text)


def _read_text(path: pathlib.Path) -> str | None:
    """The file's text; None when there is no such file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise errors.ConfigError(f"{path}: cannot read the file: {exc.strerror}") from None


def _parse_yaml(path: pathlib.Path, text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"{path}: invalid YAML: {_yaml_reason(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise errors.ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def describe_validation_error(
    exc: pydantic.ValidationError,
    path: pathlib.Path,
    data: Mapping[str, Any],
    environ: Mapping[str, str],
) -> str:
    lines = [_describe_one(err, path, data, environ) for err in exc.errors()]
    return "\n".join(lines)


def _describe_one(
    err: Any, path: pathlib.Path, data: Mapping[str, Any], environ: Mapping[str, str]
) -> str:
    loc = [str(part) for part in err["loc"]]
    key = ".".join(loc) or "(top level)"
    source = _source_of(loc, path, data, environ)
    expected = err["msg"]
    if err["type"] == "extra_forbidden":
        expected = "unknown key"
    got = err.get("input")
    shown = "" if err["type"] in {"extra_forbidden", "missing"} else f" (got {got!r})"
    return f"{source}: {key}: {expected}{shown}"


def _source_of(
    loc: list[str], path: pathlib.Path, data: Mapping[str, Any], environ: Mapping[str, str]
) -> str:
    env_name = ENV_PREFIX + "__".join(part.upper() for part in loc)
    for size in range(len(loc), 0, -1):
        name = ENV_PREFIX + "__".join(part.upper() for part in loc[:size])
        if name in environ:
            return f"environment variable {name}"
    if loc and loc[0] in data:
        return str(path)
    return f"{path} (or environment variable {env_name})"


def store_target(instance: settings_mod.InstanceSettings) -> engine.StoreTarget:
    """Where and how to open the store, with its secret resolved."""
    store = instance.store
    if store.kind == "sqlite":
        url = URL.create("sqlite+aiosqlite", database=str(instance.sqlite_path))
        return engine.StoreTarget(url=url, busy_timeout=store.busy_timeout)
    pg = store.postgres
    url = URL.create(
        "postgresql+asyncpg",
        username=pg.user,
        password=_postgres_password(pg),
        host=pg.host,
        port=pg.port,
        database=pg.database,
    )
    return engine.StoreTarget(
        url=url,
        pool_size=pg.pool_size,
        max_overflow=pg.max_overflow,
        connect_timeout=pg.connect_timeout,
    )


def _postgres_password(pg: settings_mod.PostgresSettings) -> str | None:
    if pg.password is not None:
        return pg.password.get_secret_value()
    if pg.password_file is None:
        return None
    try:
        return pg.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise errors.ConfigError(
            f"store.postgres.password_file: cannot read {pg.password_file}: {exc.strerror}"
        ) from None


def redacted(instance: settings_mod.InstanceSettings) -> dict[str, Any]:
    """The effective settings as plain data; secrets (SecretStr) dump as '**********'."""
    dumped: dict[str, Any] = instance.model_dump(mode="json")
    return dumped
