"""Hostile user code on import, beside a healthy code location, through the real CLI.

Each hostile location hangs, exits 0, calls sys.exit, segfaults, forks children that sleep
forever, or prints 100 MB when imported. The CLI loads code locations only in evaluation
processes that it times out (here after 3 s) and kills: `run launch hello` still creates a
run, `definitions check` names the bad location and exits 2, `definitions list` lists
hello and warns, and no process the hostile code started outlives the command.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess

import pytest

from tests.acceptance.harness import IMMEDIATE, Instance, run_id_of

LOAD_TIMEOUT = 3
HEALTHY = """\
import sys
import threading

from vigil import Definitions, job, schedule, sensor, step


@step
def greet() -> None:
    print("hello")


hello = job("hello", [greet])


@schedule(cron="0 3 * * *", job=hello)
def nightly() -> None: ...


@sensor(job=hello, timeout=2)
def stuck() -> None:
    sys.stdout.write("y" * 10**7)
    sys.stdout.flush()
    threading.Event().wait()


defs = Definitions(jobs=[hello], schedules=[nightly], sensors=[stuck])
"""
# Each hostile module first appends the pid of every process it runs in to PIDS.
RECORD = """\
import os


def record() -> None:
    fd = os.open({pids!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{{os.getpid()}}\\n".encode())
    os.close(fd)


record()
"""
HOSTILE = {
    "hang": ("import threading\nthreading.Event().wait()\n", f"timed out after {LOAD_TIMEOUT} s"),
    "exit0": ("os._exit(0)\n", "exit code 0"),
    "sysexit": ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
    "segfault": ("import ctypes\nctypes.string_at(0)\n", "killed by signal 11"),
    "forks": (
        "import threading\n"
        "for _ in range(5):\n"
        "    if os.fork() == 0:\n"
        "        record()\n"
        "        threading.Event().wait()\n"
        "threading.Event().wait()\n",
        f"timed out after {LOAD_TIMEOUT} s",
    ),
}


def configure(instance: Instance, tmp_path: pathlib.Path, hostile: str) -> pathlib.Path:
    """The healthy location `good` and the hostile one `bad`; the file of recorded pids."""
    pids = tmp_path / "pids"
    (tmp_path / "good.py").write_text(HEALTHY)
    (tmp_path / "bad.py").write_text(RECORD.format(pids=str(pids)) + hostile)
    instance.write_config(
        "workspace:\n"
        f"  - name: good\n    file: {tmp_path / 'good.py'}\n"
        f"  - name: bad\n    file: {tmp_path / 'bad.py'}\n"
        + IMMEDIATE
        + f"scheduling:\n  load_timeout: {LOAD_TIMEOUT}\n"
    )
    return pids


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def assert_none_left(pids: pathlib.Path) -> None:
    recorded = [int(line) for line in pids.read_text().split()] if pids.exists() else []
    assert [pid for pid in recorded if alive(pid)] == []


def cut_bytes(stderr: str) -> int:
    """The bytes of output the notes say were cut."""
    return sum(int(n) for n in re.findall(r"\.\.\. (\d+) more bytes of output cut", stderr))


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_location_fails_alone(
    sqlite_instance: Instance, tmp_path: pathlib.Path, kind: str
) -> None:
    code, reason = HOSTILE[kind]
    pids = configure(sqlite_instance, tmp_path, code)

    launched = sqlite_instance.vigil("run", "launch", "hello")
    assert launched.returncode == 0, launched
    shown = sqlite_instance.show(run_id_of(launched.stdout))
    assert (shown["job"], shown["code_location"]) == ("hello", "good")
    assert_none_left(pids)

    checked = sqlite_instance.vigil("definitions", "check")
    assert checked.returncode == 2, checked
    assert "error: code location 'bad' failed to load: " in checked.stderr
    assert reason in checked.stderr
    assert "'good'" not in checked.stderr
    assert_no_traceback(checked)
    assert_none_left(pids)

    listed = sqlite_instance.vigil("definitions", "list")
    assert listed.returncode == 0, listed
    assert "job hello: greet" in listed.stdout
    warning = [line for line in listed.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1
    assert "code location 'bad' failed to load" in warning[0]
    assert reason in warning[0]
    assert_none_left(pids)


def test_launch_does_not_wait_for_a_location_that_hangs(
    sqlite_instance: Instance, tmp_path: pathlib.Path
) -> None:
    """With a load timeout far past the harness's own, only not waiting lets it finish."""
    pids = configure(sqlite_instance, tmp_path, HOSTILE["hang"][0])

    launched = sqlite_instance.vigil("run", "launch", "hello", "--load-timeout", "3600")

    assert launched.returncode == 0, launched
    assert sqlite_instance.show(run_id_of(launched.stdout))["status"] != "NOT_STARTED"
    assert_none_left(pids)


def test_instigator_commands_warn_and_go_on(
    sqlite_instance: Instance, tmp_path: pathlib.Path
) -> None:
    configure(sqlite_instance, tmp_path, HOSTILE["sysexit"][0])

    listed = sqlite_instance.vigil("schedule", "list", "--json")
    assert listed.returncode == 0, listed
    assert [row["name"] for row in json.loads(listed.stdout)] == ["nightly"]
    assert "warning: code location 'bad' failed to load" in listed.stderr

    ticks = sqlite_instance.vigil("schedule", "ticks", "nightly")
    assert ticks.returncode == 0, ticks
    assert ticks.stdout.strip() == "no ticks"
    assert sqlite_instance.ok("schedule", "preview", "nightly", "--count", "2").count("UTC") == 2


def test_a_name_not_found_while_a_location_failed_says_both(
    sqlite_instance: Instance, tmp_path: pathlib.Path
) -> None:
    configure(sqlite_instance, tmp_path, HOSTILE["sysexit"][0])

    missing = sqlite_instance.vigil("run", "launch", "nope")

    assert missing.returncode == 2, missing
    assert missing.stderr.startswith(
        "error: no job named 'nope' (known jobs: hello); code location 'bad' failed to load: "
    )
    assert "SystemExit: 3" in missing.stderr
    assert_no_traceback(missing)
    assert "no runs" in sqlite_instance.ok("run", "list")


def test_output_of_user_code_is_bounded_and_kept_off_stdout(
    sqlite_instance: Instance, tmp_path: pathlib.Path
) -> None:
    flood = (
        "import sys\n"
        "from vigil import Definitions, job, step\n"
        "sys.stdout.write('x' * 10**8)\n"
        "sys.stdout.flush()\n"
        "@step\ndef shout() -> None: ...\n"
        "defs = Definitions(jobs=[job('noisy', [shout])])\n"
    )
    configure(sqlite_instance, tmp_path, flood)

    listed = sqlite_instance.vigil("definitions", "list", "--load-timeout", "60")

    assert listed.returncode == 0, listed
    assert "job hello: greet" in listed.stdout
    assert "job noisy: shout" in listed.stdout
    assert "x" * 100 not in listed.stdout
    assert listed.stderr.startswith("[bad] xxxx")
    assert len(listed.stderr) < 2 * 1024 * 1024
    assert cut_bytes(listed.stderr) > 10**8 - 2 * 1024 * 1024


def test_a_sensor_that_floods_and_hangs_in_sensor_test_is_cut_and_killed(
    sqlite_instance: Instance, tmp_path: pathlib.Path
) -> None:
    configure(sqlite_instance, tmp_path, HOSTILE["sysexit"][0])

    tested = sqlite_instance.vigil("sensor", "test", "stuck")

    assert tested.returncode == 1, tested
    assert "error: code location 'good': timed out after 2 s" in tested.stderr
    assert 0 < cut_bytes(tested.stderr) < 10**7
    assert len(tested.stderr) < 2 * 1024 * 1024
    assert tested.stdout == ""
    assert_no_traceback(tested)
