"""Instance, config and definitions commands; a user's own launcher from vigil.yaml."""

from __future__ import annotations

import json

from tests.acceptance.harness import IMMEDIATE, Instance, run_id_of, workspace_yaml


def test_migrate_then_info(instance: Instance) -> None:
    first = instance.ok("instance", "migrate")
    assert "migrated from empty to" in first or "already at schema" in first
    assert "already at schema" in instance.ok("instance", "migrate")
    info = instance.ok("instance", "info")
    assert "(current)" in info
    assert "locations examples, testjobs" in info


def test_definitions_list_and_check(instance: Instance) -> None:
    listed = instance.ok("definitions", "list")
    assert (
        "job orders: load_orders -> revenue -> typical_order -> large_orders -> summary" in listed
    )
    assert "job sleepy: wait_forever -> after_wait" in listed
    assert (
        instance.ok("definitions", "check").strip()
        == "ok: 2 code locations, 8 jobs, 2 schedules, 1 sensors"
    )


def test_config_check_accepts_the_instance(instance: Instance) -> None:
    assert instance.ok("config", "check").strip().endswith("vigil.yaml: ok")


def test_a_users_own_launcher_runs_the_job(sqlite_instance: Instance) -> None:
    record = sqlite_instance.home / "calls.jsonl"
    sqlite_instance.write_config(
        workspace_yaml()
        + IMMEDIATE
        + "run_launcher:\n  type: tests.plugins.recording_launcher:RecordingLauncher\n"
        + f"  options:\n    note: custom\n    record_to: {record}\n"
    )
    run_id = run_id_of(sqlite_instance.ok("run", "launch", "hello", "--wait"))
    assert sqlite_instance.show(run_id)["status"] == "SUCCESS"
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert calls == [{"verb": "launch", "run_id": run_id, "note": "custom"}]


def test_in_process_executor_from_config(sqlite_instance: Instance) -> None:
    sqlite_instance.write_config(workspace_yaml() + IMMEDIATE + "executor:\n  type: in_process\n")
    run_id = run_id_of(sqlite_instance.ok("run", "launch", "orders", "--wait"))
    assert sqlite_instance.show(run_id)["status"] == "SUCCESS"
