"""What every command shares: settings built once, the event loop, errors to exit codes.

Imported by every command, `--help` included, so it imports nothing heavy at module level:
the settings loader (pydantic), the store (SQLAlchemy) and anyio are imported when a
command first asks for the settings, the store or the event loop.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import click

from vigil import errors
from vigil.cli import output
from vigil.config import home as home_mod
from vigil.config import redact

if TYPE_CHECKING:
    from vigil.config import quick
    from vigil.config import settings as settings_mod
    from vigil.storage import store as store_mod

P = ParamSpec("P")
T = TypeVar("T")

USAGE_ERRORS = (
    errors.ConfigError,
    errors.DefinitionError,
    errors.NotFound,
    errors.RunConfigError,
    errors.PartitionError,
    errors.PluginError,
    errors.SchemaMismatch,
    errors.InvalidTransition,
    errors.ReexecutionError,
    errors.TagError,
)
EXIT_USAGE = 2
EXIT_FAILURE = 1


@dataclasses.dataclass
class CliState:
    """Per-invocation state: the home and, once asked for, the settings."""

    home: pathlib.Path
    environ: Mapping[str, str]
    _settings: settings_mod.InstanceSettings | None = None
    load_timeout: float | None = None  # --load-timeout, over scheduling.load_timeout

    @property
    def settings(self) -> settings_mod.InstanceSettings:
        if self._settings is None:
            from vigil.config import loader

            self._settings = loader.load_settings(self.home)
        return self._settings

    @functools.cached_property
    def quick(self) -> quick.QuickSettings | None:
        """The store's location read without the settings model; None when not sure."""
        from vigil.config import quick

        return quick.read(self.home, self.environ)


def state() -> CliState:
    return click.get_current_context().find_object(CliState) or _missing_state()


def _missing_state() -> CliState:
    home = home_mod.from_env(os.environ)
    return CliState(home=home, environ=dict(os.environ))


def _remember_timeout(ctx: click.Context, param: click.Parameter, value: float | None) -> None:
    if value is not None:
        state().load_timeout = value


load_timeout_option = click.option(
    "--load-timeout",
    type=click.FloatRange(min=0, min_open=True, max=3600),
    default=None,
    expose_value=False,
    callback=_remember_timeout,
    metavar="SECONDS",
    help="How long each code location may take to load (default: scheduling.load_timeout).",
)


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine function on asyncio with uvloop where it is installed."""
    import anyio

    try:
        import uvloop  # noqa: F401
    except ImportError:
        return anyio.run(fn, backend="asyncio")
    return anyio.run(fn, backend="asyncio", backend_options={"use_uvloop": True})


def handle_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn vigil's errors into one readable message and an exit status."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except errors.PluginError as exc:
            fail(_with_origin(exc), EXIT_USAGE)
        except USAGE_ERRORS as exc:
            fail(str(exc), EXIT_USAGE)
        except errors.VigilError as exc:
            fail(str(exc), EXIT_FAILURE)

    return wrapper


def _with_origin(exc: errors.PluginError) -> str:
    """The plugin error, after the file or environment variable that configured the plugin."""
    if exc.key is None:
        return str(exc)
    from vigil.config import loader

    st = state()
    return f"{loader.origin(st.home, st.environ, exc.key)}: {exc}"


def fail(message: str, code: int) -> NoReturn:
    """Print the error (any credentials in a URL masked) and exit with `code`."""
    click.echo(f"error: {redact.text(message)}", err=True)
    sys.exit(code)


# A run worker's connections are pinged only after this long idle in its pool (seconds).
WORKER_PING_AFTER_IDLE = 1.0


@asynccontextmanager
async def opened_store(
    settings: settings_mod.InstanceSettings, *, worker: bool = False
) -> AsyncIterator[store_mod.Store]:
    """The instance's store for the block; a run worker's (`worker`) is opened for one short
    job: its schema checked in its first transaction, its connections pinged only idle."""
    import anyio

    from vigil.config import loader
    from vigil.storage import engine

    target = loader.store_target(settings)
    if worker:
        target = dataclasses.replace(target, ping_after_idle=WORKER_PING_AFTER_IDLE)
    store = await engine.open_store(target, defer_schema_check=worker)
    try:
        yield store
    finally:
        with anyio.CancelScope(shield=True):
            await store.close()


def read_store(fn: Callable[[store_mod.Glance], Awaitable[T]]) -> T:
    """Run a read command's `fn` on a glance at the store on the bare driver when that can
    answer (`quick`, `glance`: a fraction of the start-up), else on the full store."""
    where = state().quick
    if where is not None:
        import asyncio

        from vigil.storage import glance

        async def glanced() -> T:
            async with glance.opened(where.store) as looked:
                return await fn(looked)

        try:
            return asyncio.run(glanced())
        except glance.Unsure:
            pass  # the full store reports whatever the glance was unsure of

    async def stored() -> T:
        async with opened_store(state().settings) as store:
            return await fn(store)

    return run_async(stored)


def heartbeat_interval() -> float:
    """The daemon's heartbeat interval, from the quick read when it is sure of it."""
    where = state().quick
    if where is not None:
        return where.heartbeat_interval
    return state().settings.daemon.heartbeat_interval


def parse_tags(pairs: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--tag")
        tags[key] = value
    return tags


def read_run_config(path: pathlib.Path | None) -> dict[str, Any]:
    """A run config file (YAML or JSON); errors name the file."""
    if path is None:
        return {}
    from vigil.config import loader

    try:
        data = loader.read_yaml(path)
    except errors.ConfigError as exc:
        raise errors.RunConfigError(str(exc).replace("settings", "run config")) from None
    return data


def echo_json(data: Any) -> None:
    """One JSON document on stdout, encoded by the rules of `output`."""
    output.emit(data)
