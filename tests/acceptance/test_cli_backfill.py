"""`vigil backfill ...` and `vigil partitions` given bad input: one line, exit status 2,
nothing stored. (Backfills that run are in tests/daemon/test_daemon_backfills.py.)"""

from __future__ import annotations

import json

import pytest

from tests.acceptance.harness import Instance
from tests.daemon.test_daemon_backfills import JOBS


@pytest.fixture
def backfills(sqlite_instance: Instance) -> Instance:
    sqlite_instance.write_config(
        f"workspace:\n  - name: backfills\n    file: {JOBS}\nrun_coordinator:\n  type: queued\n"
    )
    return sqlite_instance


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plain", "--all"], "job 'plain' has no partitions: nothing to backfill"),
        (["nope", "--all"], "no job named 'nope'"),
        (["regions", "--partitions", "a,zz"], "'zz'"),
        (["regions", "--partitions", "a,a"], "partition 'a' is named twice"),
        (["regions", "--partitions", " , "], "--partitions names no partition"),
        (["regions", "--from", "d", "--to", "b"], "job 'regions'"),
        (["regions"], "choose the partitions: --from KEY --to KEY, --partitions or --all"),
        (["regions", "--all", "--partitions", "a"], "choose the partitions"),
        (["regions", "--from", "a"], "--from and --to go together"),
        (["regions", "--all", "--max-concurrent", "0"], "--max-concurrent"),
        (["regions", "--all", "--tag", "vigil/max_retries=many"], "vigil/max_retries"),
    ],
)
def test_bad_backfill_input_is_one_line_and_stores_nothing(
    backfills: Instance, args: list[str], message: str
) -> None:
    result = backfills.vigil("backfill", "launch", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(backfills.ok("backfill", "list", "--json")) == []


def test_a_backfill_needs_the_queued_coordinator(backfills: Instance) -> None:
    text = (backfills.home / "vigil.yaml").read_text().replace("queued", "immediate")
    backfills.write_config(text)
    result = backfills.vigil("backfill", "launch", "regions", "--all")
    assert result.returncode == 2
    assert "run_coordinator.type is 'immediate': a backfill's runs wait in the run queue" in (
        result.stderr
    )


def test_unknown_and_ambiguous_backfill_ids_are_one_line(backfills: Instance) -> None:
    first = backfills.ok("backfill", "launch", "regions", "--partitions", "a").split()[1]
    for command in ("show", "cancel", "rerun-failed"):
        result = backfills.vigil("backfill", command, "nope")
        assert result.returncode == 2
        assert result.stderr.strip() == "error: no backfill with id 'nope'"
    result = backfills.vigil("backfill", "rerun-failed", first.rstrip(":"))
    assert result.returncode == 2
    assert "has no failed partition" in result.stderr
    assert backfills.vigil("partitions", "plain").returncode == 2
    listing = json.loads(backfills.ok("partitions", "regions", "--json"))
    assert [p["partition"] for p in listing] == ["a", "b", "c", "d", "e", "f"]
    assert {p["status"] for p in listing} == {"NOT_RUN"}  # a submitted nothing yet: no daemon
