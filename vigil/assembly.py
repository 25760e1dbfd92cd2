"""Build the configured launcher, coordinator and executor from the instance settings."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping

from vigil import coordinators, errors, executors, launchers, plugins
from vigil.config import settings as settings_mod


def launch_context(
    settings: settings_mod.InstanceSettings, environ: Mapping[str, str], cwd: pathlib.Path
) -> launchers.LaunchContext:
    return launchers.LaunchContext(
        home=settings.home.absolute(),
        logs_dir=settings.compute_logs_dir.absolute(),
        environ=dict(environ),
        working_directory=cwd,
    )


def build_launcher(
    settings: settings_mod.InstanceSettings, context: launchers.LaunchContext
) -> launchers.RunLauncher:
    cls, options = plugins.build(
        "run_launcher", settings.run_launcher, launchers.BUILTIN_LAUNCHERS, launchers.RunLauncher
    )
    return cls(options, context)


def build_executor(settings: settings_mod.InstanceSettings) -> executors.Executor:
    cls, options = plugins.build(
        "executor", settings.executor, executors.BUILTIN_EXECUTORS, executors.Executor
    )
    return cls.for_settings(options, settings)


def build_coordinator(
    settings: settings_mod.InstanceSettings,
    store: coordinators.CoordinatorStore,
    launcher: launchers.RunLauncher,
    clock: Callable[[], float],
    claimer: str | None = None,
    observer: coordinators.LaunchObserver | None = None,
) -> coordinators.RunCoordinator:
    cls, options = plugins.build(
        "run_coordinator",
        settings.run_coordinator,
        coordinators.BUILTIN_COORDINATORS,
        coordinators.RunCoordinator,
    )
    return cls(options, store, launcher, clock, claimer, observer)


def check_plugins(settings: settings_mod.InstanceSettings) -> None:
    """Resolve every pluggable class and validate its options; raises PluginError."""
    plugins.build(
        "run_launcher", settings.run_launcher, launchers.BUILTIN_LAUNCHERS, launchers.RunLauncher
    )
    try:
        build_executor(settings)
    except errors.ConfigError as exc:
        raise errors.PluginError(str(exc), "executor.type") from None
    plugins.build(
        "run_coordinator",
        settings.run_coordinator,
        coordinators.BUILTIN_COORDINATORS,
        coordinators.RunCoordinator,
    )


def check_launcher_reach(settings: settings_mod.InstanceSettings) -> None:
    """Raise PluginError when the launcher's service (a broker) cannot be reached."""
    cls, options = plugins.build(
        "run_launcher", settings.run_launcher, launchers.BUILTIN_LAUNCHERS, launchers.RunLauncher
    )
    try:
        problem = cls.reachable(options)
    except errors.ConfigError as exc:
        raise errors.PluginError(str(exc), "run_launcher.options") from None
    if problem is not None:
        raise errors.PluginError(problem, "run_launcher.options")
