"""The CLI's workspace: code locations in real evaluation processes, run checks, output."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pytest

from vigil import errors
from vigil.cli import workspace
from vigil.config import settings
from vigil.evaluation import messages

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
GOOD = settings.CodeLocationSettings(name="good", file=HERE / "instigators.py")
BROKEN = settings.CodeLocationSettings(name="broken", file=HERE / "broken_instigators.py")


@pytest.fixture
async def ws() -> AsyncIterator[workspace.Workspace]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    lines: list[tuple[str, str]] = []
    opened = workspace.Workspace([BROKEN, GOOD], REPO, env, 60.0, lambda *line: lines.append(line))
    try:
        yield opened
    finally:
        await opened.close()


async def test_the_catalog_carries_jobs_and_failures_are_one_line(ws: workspace.Workspace) -> None:
    broken, good = await ws.all()

    counted = good.job("counted")
    assert counted is not None
    assert counted.step_names == ("count",)
    assert counted.tags == {"team": "data"}
    assert broken.catalog is None
    assert broken.error is not None
    assert broken.error.startswith("code location 'broken' failed to load: ")
    assert "\n" not in broken.error
    assert ws.failures == [broken]


async def test_a_run_check_gives_the_run_or_one_line(ws: workspace.Workspace) -> None:
    location = await workspace.job_location(ws, "counted")
    config = {"steps": {"count": {"rows": 2}}}

    ok = await ws.ask(location.name, messages.RunCheckRequest("counted", config, {"a": "b"}), 30)
    bad = await ws.ask(
        location.name, messages.RunCheckRequest("counted", {"steps": {"count": {"rows": "x"}}}), 30
    )
    unknown = await ws.ask(location.name, messages.RunCheckRequest("nope"), 30)

    assert ok.requests == (messages.RequestedRun("counted", config, {"team": "data", "a": "b"}),)
    assert bad.error is not None
    assert bad.error.startswith("run config: steps.count.rows: ")
    assert unknown.error is not None
    assert unknown.error.startswith("no job named 'nope'")


async def test_a_job_found_nowhere_names_the_failed_locations(ws: workspace.Workspace) -> None:
    expected = r"^no job named 'nope' \(known jobs: [a-z, ]+\); code location 'broken' failed"
    with pytest.raises(errors.UnknownJob, match=expected):
        await workspace.job_location(ws, "nope")
