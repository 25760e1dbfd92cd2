"""`--json` of each command, run as a user does, checked against its schema in docs/cli-json/.

Several commands share one instance per test. The commands that need a daemon (daemon
status, liveness, the queue and backfills) are in tests/daemon/test_daemon_json.py; the
unit test tests/unit/test_cli_json.py checks that every command has a schema.
"""

from __future__ import annotations

import subprocess
from typing import Any

from tests.acceptance import schemas
from tests.acceptance.harness import REPO, Instance

INSTIGATORS = REPO / "tests" / "integration" / "instigators.py"
OTHER = REPO / "tests" / "daemon" / "other_instigators.py"


def checked(instance: Instance, *args: str, code: int = 0) -> Any:
    """`vigil ARGS --json`, exiting `code`, its output valid by the command's schema."""
    done = instance.vigil(*args, "--json")
    assert done.returncode == code, f"vigil {' '.join(args)}: {done.stdout}{done.stderr}"
    return schemas.check(command_of(args), done.stdout)


def command_of(args: tuple[str, ...]) -> str:
    """The command's words in ARGS (`run launch` of `run launch orders --wait`)."""
    groups = {"run", "instance", "config", "definitions", "job", "daemon", "queue"}
    groups |= {"schedule", "sensor", "backfill"}
    return " ".join(args[:2]) if args[0] in groups and len(args) > 1 else args[0]


def one_line_error(done: subprocess.CompletedProcess[str], code: int) -> None:
    assert done.returncode == code
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("error: ")


def test_runs_as_json(instance: Instance) -> None:
    ok = checked(instance, "run", "launch", "orders", "--wait")
    assert ok["status"] == "SUCCESS"
    assert ok["end_time"] >= ok["start_time"] >= ok["created_at"]
    failed = checked(instance, "run", "launch", "broken", "--wait", code=1)
    assert failed["status"] == "FAILURE"
    child = checked(instance, "run", "reexecute", failed["run_id"], "--wait", code=1)
    assert (child["parent_run_id"], child["retry_number"]) == (failed["run_id"], 1)

    listed = checked(instance, "run", "list")
    assert [r["run_id"] for r in listed] == [child["run_id"], failed["run_id"], ok["run_id"]]
    assert listed[1] == failed  # one shape for a run, wherever it is printed
    shown = checked(instance, "run", "show", failed["run_id"][:8])
    assert shown["steps"]["convert"]["status"] == "FAILURE"
    assert shown["steps"]["fetch_rates"]["error"] is None
    assert isinstance(shown["steps"]["fetch_rates"]["duration"], float)
    assert [e["run_id"] for e in shown["lineage"]] == [failed["run_id"], child["run_id"]]

    events = checked(instance, "run", "events", ok["run_id"])
    assert events[-1]["type"] == "RUN_SUCCESS"
    assert events[-1]["timestamp"] == ok["end_time"]
    logs = checked(instance, "run", "logs", ok["run_id"], "summary")
    assert {(line["step"], line["stream"]) for line in logs} == {("summary", "stdout")}
    assert any(line["line"].startswith("revenue ") for line in logs)

    still = checked(instance, "run", "cancel", ok["run_id"])  # ended: changes nothing
    assert still == ok
    executed = checked(instance, "job", "execute", "hello")
    assert executed["status"] == "SUCCESS"
    assert executed["worker"] is not None
    info = checked(instance, "instance", "info")
    assert info["runs"] == {"SUCCESS": 2, "FAILURE": 2}


def test_a_canceled_run_and_errors_as_json(sqlite_instance: Instance) -> None:
    instance = sqlite_instance
    launched = checked(instance, "run", "launch", "sleepy")
    assert launched["end_time"] is None
    instance.wait_until(launched["run_id"], lambda r: "wait_forever" in r["steps"])
    canceled = checked(instance, "run", "cancel", launched["run_id"])
    assert canceled["status"] == "CANCELED"
    assert canceled["end_time"] is not None

    # An error is as without --json: one line on stderr, nothing on stdout, the same code.
    one_line_error(instance.vigil("run", "show", "nope", "--json"), 2)
    one_line_error(instance.vigil("run", "launch", "nope", "--json"), 2)
    one_line_error(instance.vigil("schedule", "preview", "nope", "--json"), 2)


def test_instance_config_and_definitions_as_json(sqlite_instance: Instance) -> None:
    instance = sqlite_instance
    migrated = checked(instance, "instance", "migrate")
    assert (migrated["from"], migrated["migrated"]) == (None, True)
    again = checked(instance, "instance", "migrate")
    assert (again["from"], again["to"], again["migrated"]) == (
        migrated["to"],
        migrated["to"],
        False,
    )
    assert checked(instance, "config", "show")["home"] == str(instance.home)
    assert checked(instance, "config", "check")["config_file"] == str(instance.home / "vigil.yaml")

    locations = {loc["name"]: loc for loc in checked(instance, "definitions", "list")}
    assert set(locations) == {"examples", "testjobs"}
    jobs = {job["name"]: job for job in locations["examples"]["jobs"]}
    assert jobs["orders"]["steps"][0] == "load_orders"
    assert jobs["daily_sales"]["partitioned"] is True
    counts = checked(instance, "definitions", "check")
    assert counts["code_locations"] == 2
    assert counts["jobs"] == sum(len(loc["jobs"]) for loc in locations.values())

    none = checked(instance, "daemon", "liveness-check", code=1)
    assert none == {"live": False, "message": "no heartbeats: no daemon has run on this store"}
    assert checked(instance, "daemon", "status") == []


def use(instance: Instance, *files: Any) -> None:
    workspace = "".join(f"  - name: {f.stem}\n    file: {f}\n" for f in files)
    instance.write_config(f"workspace:\n{workspace}run_coordinator:\n  type: immediate\n")


def test_schedules_and_sensors_as_json(sqlite_instance: Instance) -> None:
    instance = sqlite_instance
    use(instance, INSTIGATORS)
    schedules = {s["name"]: s for s in checked(instance, "schedule", "list")}
    assert schedules["every_minute"]["timezone"] == "Europe/Berlin"
    assert schedules["every_minute"]["next_tick"].endswith(":00.000Z")
    started = checked(instance, "schedule", "start", "every_minute")
    assert started == {"kind": "schedule", "name": "every_minute", "status": "running"}
    ticks = checked(instance, "schedule", "preview", "every_minute", "--count", "3")
    times = [t["time"] for t in ticks]
    assert times == sorted(set(times))
    assert ticks[0]["partition"] is None
    assert checked(instance, "schedule", "ticks", "every_minute") == []

    sensors = {s["name"]: s for s in checked(instance, "sensor", "list")}
    assert isinstance(sensors["files"]["minimum_interval"], float)
    assert sensors["files"]["cursor"] is None
    assert checked(instance, "sensor", "cursor", "files", "--set", "4")["cursor"] == "4"
    asked = checked(instance, "sensor", "test", "files")
    assert [r["run_key"] for r in asked["run_requests"]] == ["file-4"]
    assert (asked["cursor_updated"], asked["cursor"]) == (True, "5")
    assert checked(instance, "sensor", "cursor", "files", "--clear") == {
        "sensor": "files",
        "cursor": None,
    }
    assert checked(instance, "sensor", "start", "files")["status"] == "running"
    assert checked(instance, "sensor", "ticks", "files") == []

    use(instance, OTHER)  # their code is gone: listed orphaned, with nulls
    orphan = {s["name"]: s for s in checked(instance, "schedule", "list")}["every_minute"]
    assert (orphan["status"], orphan["cron"], orphan["stored_status"]) == (
        "orphaned",
        None,
        "RUNNING",
    )
    assert {s["name"]: s for s in checked(instance, "sensor", "list")}["files"]["jobs"] is None
    assert checked(instance, "schedule", "stop", "every_minute")["status"] == "stopped"
    assert checked(instance, "sensor", "stop", "files")["status"] == "stopped"
