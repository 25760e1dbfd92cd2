"""`vigil run reexecute` and the lineage in `vigil run show`, through the real CLI."""

from __future__ import annotations

import json
from typing import Any

from tests.acceptance.harness import Instance, run_id_of


def events_of(instance: Instance, run_id: str) -> list[dict[str, Any]]:
    out = instance.ok("run", "events", run_id, "--json")
    return [json.loads(line) for line in out.splitlines()]


def started(instance: Instance, run_id: str) -> list[str]:
    return [e["step"] for e in events_of(instance, run_id) if e["type"] == "STEP_START"]


def reexecute(instance: Instance, *args: str) -> tuple[int, str]:
    done = instance.vigil("run", "reexecute", *args, "--wait")
    return done.returncode, run_id_of(done.stdout)


def test_reexecute_from_the_failure_all_steps_or_chosen_steps(instance: Instance) -> None:
    root = run_id_of(instance.vigil("run", "launch", "broken", "--wait").stdout)
    assert instance.show(root)["status"] == "FAILURE"

    code, child = reexecute(instance, root)
    assert code == 1
    assert started(instance, child) == ["convert"]
    reused = [e["data"] for e in events_of(instance, child) if "reused_outputs" in e["data"]]
    assert reused == [{"reused_outputs": {"fetch_rates": root}}]
    shown = instance.show(child)
    assert (shown["parent_run_id"], shown["root_run_id"], shown["retry_number"]) == (root, root, 1)
    assert shown["tags"]["vigil/reexecution"] == "from_failure"

    code, every = reexecute(instance, root, "--all-steps")
    assert code == 1
    assert started(instance, every) == ["fetch_rates", "convert"]

    code, chosen = reexecute(instance, child, "--steps", "fetch_rates")
    assert code == 0
    assert started(instance, chosen) == ["fetch_rates"]
    # One numbering per lineage: root 0, child 1, every 2, chosen 3.
    assert instance.show(chosen)["retry_number"] == 3

    lineage = instance.show(chosen)["lineage"]
    assert lineage[0]["run_id"] == root
    assert {entry["run_id"] for entry in lineage} == {root, child, every, chosen}
    assert lineage[0]["ended"] == "failed: convert"
    assert lineage[0]["reason"] == "step_failure"
    text = instance.ok("run", "show", child)
    assert "lineage   (root first)" in text
    assert f"{child}  FAILURE   (from_failure) failed: convert  <- this run" in text
    assert f"{chosen}  SUCCESS   (steps) 1 steps succeeded" in text


def test_reexecute_refuses_what_it_cannot_do(sqlite_instance: Instance) -> None:
    instance = sqlite_instance
    hello = run_id_of(instance.ok("run", "launch", "hello", "--wait"))
    broken = run_id_of(instance.vigil("run", "launch", "broken", "--wait").stdout)
    cases = [
        (("no-such-run",), "no-such-run"),
        ((hello,), f"run {hello} succeeded: nothing to re-execute from a failure"),
        ((broken, "--steps", "nope"), "job 'broken' has no step named 'nope'"),
        ((broken, "--steps", "convert", "--all-steps"), "--steps and --all-steps exclude each"),
    ]
    for args, message in cases:
        done = instance.vigil("run", "reexecute", *args)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
    sleepy = run_id_of(instance.ok("run", "launch", "sleepy"))
    instance.wait_until(sleepy, lambda r: r["status"] == "STARTED")
    done = instance.vigil("run", "reexecute", sleepy)
    assert done.returncode == 2
    assert f"run {sleepy} is STARTED: only an ended run can be re-executed" in done.stderr
    instance.ok("run", "cancel", sleepy)
    assert len(json.loads(instance.ok("run", "list", "--json"))) == 3
