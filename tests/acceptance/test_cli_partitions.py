"""Partitioned jobs through the CLI as a user drives it: `--partition KEY` is checked
against the job's partitions before anything is submitted, and the step sees its key and
window."""

from __future__ import annotations

import datetime
import subprocess

from tests.acceptance.harness import Instance, run_id_of

LABEL = "daily partitions from 2026-01-01 (Europe/Berlin)"


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_launch_a_partition_the_step_reads_key_and_window(instance: Instance) -> None:
    out = instance.ok("run", "launch", "daily_sales", "--partition", "2026-03-29", "--wait")
    run_id = run_id_of(out)
    assert out.strip().endswith(f"{run_id} SUCCESS")
    assert instance.show(run_id)["tags"] == {"vigil/partition": "2026-03-29"}
    events = instance.ok("run", "events", run_id, "--json")
    assert "sales of 2026-03-29" in events
    assert '"start": "2026-03-29T00:00:00+01:00"' in events


def test_bad_partitions_are_refused_in_one_line_and_nothing_is_submitted(
    instance: Instance,
) -> None:
    refused = {
        ("daily_sales", "2026-02-30"): (
            f"error: job 'daily_sales': partition '2026-02-30' is not a key of {LABEL}: "
            "expected a day as %Y-%m-%d"
        ),
        ("daily_sales", "2025-12-31"): (
            f"error: job 'daily_sales': partition '2025-12-31' is not a key of {LABEL}: "
            "before the first partition 2026-01-01"
        ),
        (
            "hello",
            "2026-01-01",
        ): "error: job 'hello' has no partitions (partition '2026-01-01' given)",
    }
    for (job, key), message in refused.items():
        assert one_line_error(instance.vigil("run", "launch", job, "--partition", key)) == message
    later = one_line_error(
        instance.vigil("run", "launch", "daily_sales", "--partition", "2099-01-01")
    )
    assert later.startswith("error: job 'daily_sales': partition '2099-01-01' is not a key")
    assert "not complete yet (it ends at 2099-01-02 00:00:00+01:00)" in later
    unnamed = one_line_error(instance.vigil("run", "launch", "daily_sales"))
    assert unnamed.startswith(
        f"error: job 'daily_sales' is partitioned ({LABEL}): pass --partition KEY (latest: "
    )
    assert instance.ok("run", "list").strip() == "no runs"


def test_a_partition_tag_is_checked_like_the_option(sqlite_instance: Instance) -> None:
    tagged = sqlite_instance.vigil("run", "launch", "daily_sales", "--tag", "vigil/partition=x")
    assert one_line_error(tagged).startswith("error: job 'daily_sales': partition 'x' is not")
    both = sqlite_instance.vigil(
        "run",
        "launch",
        "daily_sales",
        "--partition",
        "2026-01-02",
        "--tag",
        "vigil/partition=2026-01-01",
    )
    assert one_line_error(both) == (
        "error: job 'daily_sales': --partition '2026-01-02' and tag "
        "vigil/partition='2026-01-01' differ"
    )


def test_job_execute_takes_a_partition(sqlite_instance: Instance) -> None:
    out = sqlite_instance.ok("job", "execute", "daily_sales", "--partition", "2026-01-01")
    run_id = run_id_of(out)
    assert out.strip() == f"{run_id} SUCCESS"
    assert sqlite_instance.show(run_id)["tags"] == {"vigil/partition": "2026-01-01"}
    bad = sqlite_instance.vigil("job", "execute", "daily_sales", "--partition", "soon")
    assert one_line_error(bad).startswith("error: job 'daily_sales': partition 'soon' is not")


def test_schedule_preview_names_the_partition_of_each_tick(sqlite_instance: Instance) -> None:
    lines = sqlite_instance.ok("schedule", "preview", "nightly_sales", "--count", "2").splitlines()
    assert len(lines) == 2
    for line in lines:
        local_day = datetime.date.fromisoformat(line.split()[0])
        yesterday = (local_day - datetime.timedelta(days=1)).isoformat()
        assert line.endswith(f"UTC)  partition {yesterday}"), line
