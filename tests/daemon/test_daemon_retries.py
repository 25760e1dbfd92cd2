"""Run retries end to end: real daemons, real workers, failures retried from the failure."""

from __future__ import annotations

import json
import pathlib
import signal
from typing import Any

from tests.acceptance.harness import Instance, run_id_of
from tests.daemon.process import TICKER, Daemons, configure, wait_for_rows
from tests.daemon.test_daemon_monitor import add_config, events_of


def retries(
    instance: Instance, max_retries: int, initial_delay: float = 0, factor: float = 1
) -> None:
    add_config(
        instance,
        f"run_retries:\n  max_retries: {max_retries}\n  poll_interval: 0.2\n"
        f"  delay: {{initial: {initial_delay}, factor: {factor}, jitter: 0}}\n",
    )


def lineage(instance: Instance, root: str) -> list[dict[str, Any]]:
    every = json.loads(instance.ok("run", "list", "--json", "--limit", "100"))
    chain = [run for run in every if run["root_run_id"] == root]
    return sorted(chain, key=lambda run: run["retry_number"])


def wait_for_lineage(instance: Instance, root: str, statuses: list[str]) -> list[dict[str, Any]]:
    def reached(_: dict[str, Any]) -> bool:
        return [run["status"] for run in lineage(instance, root)] == statuses

    instance.wait_until(root, reached, deadline=120)
    return lineage(instance, root)


def started_steps(instance: Instance, run_id: str) -> list[str]:
    return [e["step"] for e in events_of(instance, run_id) if e["type"] == "STEP_START"]


def reused(instance: Instance, run_id: str) -> dict[str, str]:
    notes = [e for e in events_of(instance, run_id) if "reused_outputs" in e["data"]]
    return notes[0]["data"]["reused_outputs"] if notes else {}


async def test_a_failing_job_is_retried_from_the_failure_reusing_outputs(
    instance: Instance, daemons: Daemons
) -> None:
    retries(instance, max_retries=2)
    configure(instance, TICKER)
    daemons.start()
    await wait_for_rows(instance, {"retries": "healthy"})
    root = run_id_of(instance.vigil("run", "launch", "broken").stdout)

    chain = wait_for_lineage(instance, root, ["FAILURE", "FAILURE", "FAILURE"])
    assert [run["parent_run_id"] for run in chain] == [None, root, chain[1]["run_id"]]
    assert [run["tags"].get("vigil/retry_number") for run in chain] == [None, "1", "2"]
    assert started_steps(instance, root) == ["fetch_rates", "convert"]
    for child in chain[1:]:
        assert child["tags"]["vigil/reexecution"] == "from_failure"
        assert started_steps(instance, child["run_id"]) == ["convert"]
        assert reused(instance, child["run_id"]) == {"fetch_rates": root}
    submitted = [e["data"] for e in events_of(instance, root) if "retry_run_id" in e["data"]]
    assert submitted == [{"retry_run_id": chain[1]["run_id"]}]


async def test_a_retry_that_succeeds_ends_the_chain(
    sqlite_instance: Instance, daemons: Daemons, tmp_path: pathlib.Path
) -> None:
    instance = sqlite_instance
    retries(instance, max_retries=3)
    configure(instance, TICKER)
    daemons.start()
    await wait_for_rows(instance, {"retries": "healthy"})
    config = tmp_path / "run.yaml"
    config.write_text(f"steps:\n  fail_once:\n    marker: {tmp_path / 'marker'}\n")
    root = run_id_of(instance.vigil("run", "launch", "flaky", "--config", str(config)).stdout)

    chain = wait_for_lineage(instance, root, ["FAILURE", "SUCCESS"])
    assert started_steps(instance, chain[1]["run_id"]) == ["fail_once", "finish"]
    assert reused(instance, chain[1]["run_id"]) == {"prepare": root}
    await wait_for_rows(instance, {"retries": "healthy"})
    assert len(lineage(instance, root)) == 2


async def test_a_daemon_killed_while_a_retry_waits_launches_it_once_after_restart(
    instance: Instance, daemons: Daemons
) -> None:
    # Retry 1 is due 1 s after its failure, retry 2 40 s after its own: a wide window for
    # the kill while retry 2 waits, on a loaded machine too.
    retries(instance, max_retries=2, initial_delay=1, factor=40)
    configure(instance, TICKER)
    root = run_id_of(instance.vigil("run", "launch", "broken", "--wait").stdout)
    assert instance.show(root)["status"] == "FAILURE"  # while no daemon ran

    first = daemons.start()  # retries the failure it missed
    # The first retry fails; the second is stored at once, waiting out its delay (NOT_STARTED:
    # the test instance's immediate coordinator leaves it to the retries loop until due).
    waiting = ["FAILURE", "FAILURE", "NOT_STARTED"]
    child = wait_for_lineage(instance, root, waiting)[1]["run_id"]

    def announced(_: dict[str, Any]) -> bool:
        return any(
            "retry 2 of 2" in e["message"] and "due at" in e["message"]
            for e in events_of(instance, child)
        )

    instance.wait_until(root, announced)  # the daemon stored the retry, due in 40 s
    first.send(signal.SIGKILL)
    assert await first.exit_code() == -signal.SIGKILL
    assert len(lineage(instance, root)) == 3  # waiting in the store, not in the daemon
    await wait_for_rows(instance, {"retries": "down"})

    daemons.start()
    chain = wait_for_lineage(instance, root, ["FAILURE", "FAILURE", "FAILURE"])
    assert [run["retry_number"] for run in chain] == [0, 1, 2]
    assert chain[2]["parent_run_id"] == child
    await wait_for_rows(instance, {"retries": "healthy"})
    assert len(lineage(instance, root)) == 3
