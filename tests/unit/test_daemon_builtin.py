"""Which built-in loops and services the daemon runs, from the settings."""

from __future__ import annotations

import pathlib

import pytest

from tests.daemon.fakes import ManualClock, UnusedStore
from tests.integration.test_retries import NoLauncher
from vigil import coordinators, launchers
from vigil.config import settings as settings_mod
from vigil.coordinators import queued
from vigil.daemon import builtin


def coordinator(kind: str, tmp_path: pathlib.Path) -> coordinators.RunCoordinator:
    context = launchers.LaunchContext(tmp_path, tmp_path, {}, tmp_path)
    launcher = NoLauncher(NoLauncher.Options(), context)
    store = UnusedStore()  # never touched while loops are only built
    if kind == "queued":
        return queued.QueuedCoordinator(queued.QueuedOptions(), store, launcher, float)
    return coordinators.ImmediateCoordinator(
        coordinators.RunCoordinator.Options(), store, launcher, float
    )


@pytest.mark.parametrize(
    ("kind", "values", "loops", "services"),
    [
        (
            "queued",
            {},
            ["queue", "backfills", "retries", "monitor"],
            ["queue-notices", "worker-exits"],
        ),
        ("immediate", {}, ["retries", "monitor"], ["worker-exits"]),
        (
            "immediate",
            {"run_monitoring": {"enabled": False}, "run_retries": {"enabled": False}},
            [],
            [],
        ),
        ("immediate", {"run_monitoring": {"enabled": False}}, ["retries"], ["worker-exits"]),
        (
            "immediate",
            {"retention": {"success_days": 30}},
            ["retries", "monitor", "retention"],
            ["worker-exits"],
        ),
        (
            "immediate",
            {"retention": {"success_days": 30, "enabled": False}},
            ["retries", "monitor"],
            ["worker-exits"],
        ),
        (
            "queued",
            {
                "run_monitoring": {"enabled": False},
                "run_retries": {"enabled": False},
                "backfills": {"enabled": False},
            },
            ["queue"],
            ["queue-notices", "worker-exits"],  # an exit frees a slot in the queue
        ),
    ],
)
def test_builtin_loops_follow_the_settings(
    tmp_path: pathlib.Path,
    kind: str,
    values: dict[str, object],
    loops: list[str],
    services: list[str],
) -> None:
    settings = settings_mod.InstanceSettings.model_validate(values)
    built = builtin.build(settings, UnusedStore(), coordinator(kind, tmp_path), ManualClock())
    assert [loop.name for loop in built.loops] == loops
    assert [service.name for service in built.services] == services
    assert (built.monitor_loop is not None) == ("monitor" in loops)
    assert (built.retries_loop is not None) == ("retries" in loops)
    assert (built.backfill_loop is not None) == ("backfills" in loops)
    assert (built.retention_loop is not None) == ("retention" in loops)


def test_the_monitor_loop_takes_its_interval_from_the_settings(tmp_path: pathlib.Path) -> None:
    settings = settings_mod.InstanceSettings.model_validate(
        {"run_monitoring": {"poll_interval": 0.5}, "run_retries": {"poll_interval": 3}}
    )
    built = builtin.build(
        settings, UnusedStore(), coordinator("immediate", tmp_path), ManualClock()
    )
    assert built.monitor_loop is not None
    assert built.retries_loop is not None
    assert (built.monitor_loop.interval, built.retries_loop.interval) == (0.5, 3)
