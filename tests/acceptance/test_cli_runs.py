"""The CLI through whole runs: success, failure, cancellation, in-process execution."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import psutil

from tests.acceptance.harness import Instance, run_id_of


def test_successful_run_is_recorded_end_to_end(instance: Instance) -> None:
    out = instance.ok("run", "launch", "orders", "--wait", "--tag", "team=data")
    run_id = run_id_of(out)
    assert out.strip().endswith(f"{run_id} SUCCESS")

    run = instance.show(run_id)
    assert run["status"] == "SUCCESS"
    assert run["tags"] == {"team": "data"}
    assert run["worker"] is not None
    assert {name: s["status"] for name, s in run["steps"].items()} == {
        "load_orders": "SUCCESS",
        "revenue": "SUCCESS",
        "typical_order": "SUCCESS",
        "large_orders": "SUCCESS",
        "summary": "SUCCESS",
    }

    types = [
        json.loads(line)["type"]
        for line in instance.ok("run", "events", run_id, "--json").splitlines()
    ]
    assert types[0] == "RUN_STARTING"
    assert "RUN_START" in types
    assert types[-1] == "RUN_SUCCESS"
    assert types.count("STEP_SUCCESS") == 5

    logs = instance.ok("run", "logs", run_id, "summary")
    assert "[summary stdout] revenue" in logs
    assert run_id[:8] in instance.ok("run", "list", "--status", "SUCCESS", "--job", "orders")


def test_failing_run_shows_the_step_error(instance: Instance) -> None:
    result = instance.vigil("run", "launch", "broken", "--wait")
    assert result.returncode == 1
    run_id = run_id_of(result.stdout)
    assert result.stdout.strip().endswith(f"{run_id} FAILURE")

    shown = instance.ok("run", "show", run_id)
    assert "status    FAILURE" in shown
    assert "fetch_rates              SUCCESS" in shown
    assert "error: ValueError: no rate for currency 'GBP'" in shown
    assert 'examples/pipelines.py", line' in shown  # the traceback points at user code

    events = instance.ok("run", "events", run_id)
    assert "STEP_FAILURE   convert" in events
    assert "ValueError: no rate for currency 'GBP'" in events
    assert "RUN_FAILURE" in events


def test_canceled_run_stops_its_worker(instance: Instance) -> None:
    run_id = run_id_of(instance.ok("run", "launch", "sleepy"))
    started = instance.wait_until(run_id, lambda r: "wait_forever" in r["steps"])
    worker_pid = int(started["worker"].split(":")[1])

    out = instance.ok("run", "cancel", run_id)
    assert out.split()[0] == run_id
    run = instance.wait_until(run_id, lambda r: r["status"] == "CANCELED")
    assert run["end_time"] is not None
    assert not psutil.pid_exists(worker_pid) or psutil.Process(worker_pid).status() == "zombie"
    events = instance.ok("run", "events", run_id)
    assert "RUN_CANCELING" in events
    assert "RUN_CANCELED" in events
    assert "after_wait" not in instance.show(run_id)["steps"]


def test_cancel_of_an_ended_run_changes_nothing(instance: Instance) -> None:
    run_id = run_id_of(instance.ok("run", "launch", "hello", "--wait"))
    assert instance.ok("run", "cancel", run_id).split() == [run_id, "SUCCESS"]
    assert instance.show(run_id)["status"] == "SUCCESS"


def test_job_execute_runs_in_process_and_records_the_run(instance: Instance) -> None:
    out = instance.ok("job", "execute", "chatty")
    run_id = run_id_of(out)
    assert out.strip() == f"{run_id} SUCCESS"
    events = instance.ok("run", "events", run_id)
    assert "processing batch 3" in events
    assert "[WARNING] batch 4 was small" in events
    logs = instance.ok("run", "logs", run_id)
    assert "[talk stdout] written to stdout" in logs
    assert "[talk stderr] written to stderr" in logs


def test_run_config_reaches_the_step(instance: Instance) -> None:
    config = instance.home / "run.yaml"
    config.write_text("steps:\n  load_orders:\n    orders: 3\n")
    run_id = run_id_of(instance.ok("run", "launch", "orders", "--config", str(config), "--wait"))
    assert instance.show(run_id)["run_config"] == {"steps": {"load_orders": {"orders": 3}}}
    with (instance.home / "storage" / run_id / "load_orders").open("rb") as fh:
        assert len(pickle.load(fh)) == 3


def test_follow_prints_events_and_logs_until_the_run_ends(instance: Instance) -> None:
    run_id = run_id_of(instance.ok("run", "launch", "sleepy"))
    instance.wait_until(run_id, lambda r: "wait_forever" in r["steps"])
    followers = [
        subprocess.Popen(
            [sys.executable, "-m", "vigil", "run", kind, run_id, "--follow"],
            cwd=instance.cwd,
            env=instance.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for kind in ("events", "logs")
    ]
    try:
        instance.ok("run", "cancel", run_id)
        events_out, _ = followers[0].communicate(timeout=30)
        logs_out, _ = followers[1].communicate(timeout=30)
    finally:
        for follower in followers:
            if follower.poll() is None:
                follower.kill()
                follower.wait()
    assert followers[0].returncode == 0
    assert "waiting to be canceled" in events_out
    assert events_out.rstrip().splitlines()[-1].split()[2] == "RUN_CANCELED"
    assert followers[1].returncode == 0
    assert logs_out == ""  # the step printed nothing, and following ends with the run
