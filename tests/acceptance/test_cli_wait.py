"""`run launch --wait` and `run reexecute --wait` show the run's progress on stderr: plain
lines when piped, one line redrawn in place on a terminal; `--timeout` gives up waiting
(exit 124) and leaves the run going."""

from __future__ import annotations

import os
import pathlib
import pty
import re
import subprocess
import sys

from tests.acceptance.harness import COMMAND_TIMEOUT, Instance, run_id_of
from vigil.cli import progress

PLAIN = re.compile(r"^\[\d+\.\ds\] ")
ORDERS_STEPS = ["load_orders", "revenue", "typical_order", "large_orders", "summary"]


def progress_lines(stderr: str) -> list[str]:
    return [line.split("] ", 1)[1] for line in stderr.splitlines() if PLAIN.match(line)]


def test_piped_wait_prints_a_line_per_step_change_and_the_end(instance: Instance) -> None:
    done = instance.vigil("run", "launch", "orders", "--wait")
    assert done.returncode == 0, done.stderr
    run_id = run_id_of(done.stdout)
    assert done.stdout.strip().endswith(f"{run_id} SUCCESS")

    lines = progress_lines(done.stderr)
    assert "\r" not in done.stderr
    assert lines[-1] == f"run {run_id} ended SUCCESS"
    started = [line.split()[1] for line in lines if line.endswith(" started")]
    assert sorted(started) == sorted(ORDERS_STEPS)
    ended = [line for line in lines if " succeeded (" in line]
    assert [line.rsplit("(", 1)[1] for line in ended] == [f"{n}/5 steps done)" for n in range(1, 6)]


def test_a_failed_step_shows_and_the_wait_exits_1(instance: Instance) -> None:
    done = instance.vigil("run", "launch", "broken", "--wait")
    assert done.returncode == 1
    lines = progress_lines(done.stderr)
    assert any(line.startswith("step convert failed (") for line in lines), done.stderr
    assert lines[-1] == f"run {run_id_of(done.stdout)} ended FAILURE"


def test_reexecute_wait_counts_only_the_steps_it_runs(
    instance: Instance, tmp_path: pathlib.Path
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"steps:\n  fail_once:\n    marker: {tmp_path / 'marker'}\n")
    first = instance.vigil("run", "launch", "flaky", "--config", str(config), "--wait")
    assert first.returncode == 1
    counts = [line.rsplit("(", 1)[1] for line in progress_lines(first.stderr) if "(" in line]
    assert counts == ["1/3 steps done)", "2/3 steps done)", "3/3 steps done)"]
    assert any(line.startswith("step fail_once failed (") for line in progress_lines(first.stderr))

    again = instance.vigil("run", "reexecute", run_id_of(first.stdout), "--wait")
    assert again.returncode == 0, again.stderr
    lines = progress_lines(again.stderr)
    assert "step finish succeeded (2/2 steps done)" in lines
    assert not any(line.startswith("step prepare") for line in lines)


def test_timeout_gives_up_waiting_and_the_run_goes_on(instance: Instance) -> None:
    done = instance.vigil("run", "launch", "sleepy", "--wait", "--timeout", "1")
    run_id = run_id_of(done.stdout)
    try:
        assert done.returncode == progress.EXIT_TIMEOUT == 124
        assert done.stderr.splitlines()[-1] == (
            f"error: run {run_id} did not end within --timeout 1 s; it goes on"
        )
        assert instance.show(run_id)["status"] in {"STARTING", "STARTED"}
    finally:
        instance.ok("run", "cancel", run_id)


def test_timeout_without_wait_is_bad_input(instance: Instance) -> None:
    done = instance.vigil("run", "launch", "orders", "--timeout", "5")
    assert done.returncode == 2
    assert "--timeout goes with --wait" in done.stderr


def test_on_a_terminal_one_line_is_redrawn_in_place(sqlite_instance: Instance) -> None:
    text, code, stdout = _with_terminal_stderr(sqlite_instance, "run", "launch", "orders", "--wait")
    assert code == 0, text
    assert stdout.strip().endswith("SUCCESS")
    assert re.search(r"\r5/5 steps done, \d+s\s*\r?\n", text), repr(text)
    assert not any(PLAIN.match(line) for line in text.splitlines())


def _with_terminal_stderr(instance: Instance, *args: str) -> tuple[str, int, str]:
    """Run the CLI with its stderr on a pseudo-terminal: what it wrote there, its exit
    code, its stdout."""
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "vigil", *args],
        cwd=instance.cwd,
        env=instance.env,
        stdout=subprocess.PIPE,
        stderr=follower,
    ) as proc:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: every holder of the terminal's other end closed it
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        assert proc.stdout is not None
        stdout = proc.stdout.read().decode()
        code = proc.wait(timeout=COMMAND_TIMEOUT)
    return b"".join(chunks).decode(errors="replace"), code, stdout
