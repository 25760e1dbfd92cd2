"""`vigil schedule ...`, `vigil sensor ...` and bad schedules, through the real CLI."""

from __future__ import annotations

import json
import pathlib

import pytest

from tests.acceptance.harness import REPO, Instance

INSTIGATORS = REPO / "tests" / "integration" / "instigators.py"
OTHER = REPO / "tests" / "daemon" / "other_instigators.py"


def use(instance: Instance, *files: pathlib.Path) -> None:
    workspace = "".join(f"  - name: {f.stem}\n    file: {f}\n" for f in files)
    instance.write_config(f"workspace:\n{workspace}run_coordinator:\n  type: immediate\n")


@pytest.fixture
def cli(sqlite_instance: Instance) -> Instance:
    use(sqlite_instance, INSTIGATORS)
    return sqlite_instance


def listed(instance: Instance, kind: str) -> dict[str, dict[str, str]]:
    return {row["name"]: row for row in json.loads(instance.ok(kind, "list", "--json"))}


def test_schedules_are_listed_started_and_stopped(cli: Instance) -> None:
    before = listed(cli, "schedule")
    assert before["every_minute"]["status"] == "stopped (default)"
    assert before["every_minute"]["timezone"] == "Europe/Berlin"
    assert before["every_minute"]["cron"] == "* * * * *"

    assert cli.ok("schedule", "start", "every_minute").strip() == "schedule every_minute running"
    assert listed(cli, "schedule")["every_minute"]["status"] == "running"
    cli.ok("schedule", "stop", "every_minute")
    assert listed(cli, "schedule")["every_minute"]["status"] == "stopped"
    assert "every_minute" in cli.ok("schedule", "list")


def test_preview_shows_the_next_ticks_in_the_schedules_zone(cli: Instance) -> None:
    lines = cli.ok("schedule", "preview", "every_minute", "--count", "3").splitlines()

    assert len(lines) == 3
    assert all(line.split()[1].endswith(":00+01:00") for line in lines)


def test_a_schedule_without_ticks_says_so(cli: Instance) -> None:
    assert cli.ok("schedule", "ticks", "every_minute").strip() == "no ticks"
    assert json.loads(cli.ok("schedule", "ticks", "every_minute", "--json")) == []


@pytest.mark.parametrize(
    "args",
    [
        ("schedule", "start", "nope"),
        ("schedule", "preview", "nope"),
        ("sensor", "start", "nope"),
        ("sensor", "test", "nope"),
        ("schedule", "stop", "nope"),
    ],
)
def test_an_unknown_instigator_is_refused_by_name(cli: Instance, args: tuple[str, ...]) -> None:
    done = cli.vigil(*args)

    assert done.returncode == 2
    assert "'nope'" in done.stderr


def test_a_sensor_cursor_is_shown_set_and_cleared(cli: Instance) -> None:
    assert cli.ok("sensor", "cursor", "files").strip() == "(none)"
    assert cli.ok("sensor", "cursor", "files", "--set", "7").strip() == "7"
    assert listed(cli, "sensor")["files"]["cursor"] == "7"
    assert cli.ok("sensor", "cursor", "files").strip() == "7"
    assert cli.ok("sensor", "cursor", "files", "--clear").strip() == "(none)"


def test_sensor_test_evaluates_once_and_launches_nothing(cli: Instance) -> None:
    cli.ok("sensor", "cursor", "files", "--set", "4")
    out = cli.ok("sensor", "test", "files")

    assert "run request: job other run_key file-4" in out
    assert "new cursor (not stored): 5" in out
    assert cli.ok("sensor", "cursor", "files").strip() == "4"
    assert cli.ok("run", "list").strip() == "no runs"


def test_sensor_test_shows_the_functions_error(cli: Instance) -> None:
    done = cli.vigil("sensor", "test", "no_job_named")

    assert done.returncode == 1
    assert "name one in RunRequest(job=...)" in done.stderr


def test_an_instigator_whose_definition_is_gone_is_listed_orphaned(cli: Instance) -> None:
    cli.ok("schedule", "start", "every_minute")
    cli.ok("sensor", "start", "files")
    use(cli, OTHER)

    assert listed(cli, "schedule")["every_minute"]["status"] == "orphaned"
    assert listed(cli, "sensor")["files"]["status"] == "orphaned"
    assert listed(cli, "sensor")["elsewhere"]["status"] == "stopped (default)"
    assert cli.ok("schedule", "stop", "every_minute").strip() == "schedule every_minute stopped"
    assert cli.vigil("schedule", "start", "every_minute").returncode == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('cron="0 25 * * *"', "schedule 'broken': cron '0 25 * * *' is not valid"),
        ('cron="0 3 * * *", timezone="Moon/Base"', "unknown time zone 'Moon/Base'"),
        ('cron="0 3 * * *", job="nope"', "schedule 'broken': no job named 'nope'"),
    ],
)
def test_a_bad_schedule_fails_the_definitions_check_naming_it(
    sqlite_instance: Instance, tmp_path: pathlib.Path, options: str, message: str
) -> None:
    source = tmp_path / "bad.py"
    job = "" if "job=" in options else ", job=hello_job"
    source.write_text(
        "from vigil import Definitions, job, schedule, step\n"
        "@step\ndef hello() -> None: ...\n"
        "hello_job = job('hello', [hello])\n"
        f"@schedule({options}{job})\ndef broken() -> None: ...\n"
        "defs = Definitions(jobs=[hello_job], schedules=[broken])\n"
    )
    use(sqlite_instance, source)

    done = sqlite_instance.vigil("definitions", "check")
    assert done.returncode == 2
    assert "code location 'bad' failed to load" in done.stderr
    assert message in done.stderr
