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
import pydantic_settings
import yaml
from sqlalchemy.engine import URL

from vigil import display, errors
from vigil.config import environment, redact
from vigil.config import settings as settings_mod
from vigil.storage import engine

CONFIG_FILE = "vigil.yaml"
ENV_PREFIX = environment.PREFIX
SHOWN_INPUT = 80  # characters of a refused value shown in an error


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
    unknown = environment.unknown_variables(environ) + _unknown_top_level(path, data)
    if unknown:
        raise errors.ConfigError("\n".join(unknown))
    try:
        built = settings_mod.InstanceSettings(**data)
    except pydantic.ValidationError as exc:
        raise errors.ConfigError(describe_validation_error(exc, path, data, environ)) from None
    except pydantic_settings.SettingsError as exc:
        raise errors.ConfigError(_unparsable_variable(exc, environ)) from None
    except RecursionError:
        raise errors.ConfigError(f"{path}: the settings are nested too deeply") from None
    return built.model_copy(update={"home": home})


def _unknown_top_level(path: pathlib.Path, data: Mapping[Any, Any]) -> list[str]:
    """Top-level keys that are not names (`null:`, `1:`): pydantic takes only names there."""
    return [f"{path}: {key!r}: unknown key" for key in data if not isinstance(key, str)]


def _unparsable_variable(exc: pydantic_settings.SettingsError, environ: Mapping[str, str]) -> str:
    """pydantic-settings names only the section whose variables it could not read."""
    field = str(exc).partition('field "')[2].partition('"')[0]
    return environment.unparsable(field, environ)


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
    except UnicodeDecodeError as exc:
        raise errors.ConfigError(
            f"{path}: not a text file (UTF-8): byte 0x{exc.object[exc.start]:02x} "
            f"at offset {exc.start}"
        ) from None


def _parse_yaml(path: pathlib.Path, text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"{path}: invalid YAML: {_yaml_reason(exc)}") from None
    except RecursionError:
        raise errors.ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except ValueError as exc:  # an integer of thousands of digits, say
        reason = "a number too long" if "digits" in str(exc) else str(exc)
        raise errors.ConfigError(f"{path}: invalid YAML: {reason}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise errors.ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def _yaml_reason(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not take
        return f"offset {exc.position}: character #x{exc.character:04x} is not allowed"
    mark = getattr(exc, "problem_mark", None)
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    if mark is None:
        return problem
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def describe_validation_error(
    exc: pydantic.ValidationError,
    path: pathlib.Path,
    data: Mapping[str, Any],
    environ: Mapping[str, str],
) -> str:
    lines = [display.printable(_describe_one(err, path, data, environ)) for err in exc.errors()]
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
    shown = "" if err["type"] in {"extra_forbidden", "missing"} else _shown(loc, err.get("input"))
    return redact.text(f"{source}: {key}: {expected}{shown}")


def _shown(loc: list[str], got: Any) -> str:
    """` (got VALUE)`, secrets masked, cut to SHOWN_INPUT characters."""
    text = repr(redact.value(loc, got))
    if len(text) > SHOWN_INPUT:
        text = text[: SHOWN_INPUT - 3] + "..."
    return f" (got {text})"


def _source_of(
    loc: list[str], path: pathlib.Path, data: Mapping[str, Any], environ: Mapping[str, str]
) -> str:
    variable = environment.variable_of(loc, environ)
    if variable is not None:
        return f"environment variable {variable}"
    if loc and loc[0] in data:
        return str(path)
    below = environment.variables_below(loc[0], environ) if loc else []
    if below:
        return f"environment variable {', '.join(below)}"
    return f"{path} (or environment variable {environment.name_of(loc)})"


def origin(home: pathlib.Path, environ: Mapping[str, str], key: str) -> str:
    """Where the setting at this key path (`run_launcher.options.env`) came from."""
    path = home / CONFIG_FILE
    try:
        data = read_yaml(path)
    except errors.ConfigError:
        data = {}
    return _source_of(key.split("."), path, data, environ)


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
    """The effective settings as plain data, every secret masked (see `redact`)."""
    dumped: dict[str, Any] = redact.tree(instance.model_dump(mode="json"))
    return dumped
