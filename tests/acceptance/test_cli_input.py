"""Bad input through the CLI, as a user gives it: one line naming the file or variable,
exit status 2, no traceback, secrets masked, the store unchanged."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.acceptance.harness import Instance, run_id_of, workspace_yaml

BINARY = b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary"


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], result.stderr
    return lines[0]


def run_count(instance: Instance) -> int:
    return len(json.loads(instance.ok("run", "list", "--json")))


def test_a_binary_run_config_is_one_line_and_creates_no_run(sqlite_instance: Instance) -> None:
    config = sqlite_instance.cwd / "config.bin"
    config.write_bytes(BINARY)
    result = sqlite_instance.vigil("run", "launch", "hello", "--config", str(config))
    one_line_error(result, f"{config}: not a text file (UTF-8)")
    deep = sqlite_instance.cwd / "deep.yaml"
    deep.write_text("steps: " + "[" * 5000 + "]" * 5000 + "\n")
    one_line_error(
        sqlite_instance.vigil("run", "launch", "hello", "--config", str(deep)), "nested too deeply"
    )
    assert run_count(sqlite_instance) == 0


@pytest.mark.parametrize("command", [("config", "show"), ("daemon", "run")])
def test_a_binary_settings_file_is_one_line(
    sqlite_instance: Instance, command: tuple[str, ...]
) -> None:
    (sqlite_instance.home / "vigil.yaml").write_bytes(BINARY)
    path = sqlite_instance.home / "vigil.yaml"
    one_line_error(sqlite_instance.vigil(*command), f"{path}: not a text file (UTF-8)")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("store: 5\n", "store: Input should be a valid dictionary"),
        ("daemon: [1, 2]\n", "daemon: Input should be a valid dictionary"),
        ("daemon: {heartbeat_interval: abc}\n", "daemon.heartbeat_interval: Input should be"),
        ("daemon: {heartbeat_interval: 1e308}\n", "daemon.heartbeat_interval: Input should be"),
        ("workspace: [[1, [2]]]\n", "workspace.0: Input should be a valid dictionary"),
        ("run_launcher: {type: subprocess, options: {env: 5}}\n", "run_launcher.options.env"),
        ("daemon: {loops: [{type: 'nowhere:Loop'}]}\n", "daemon.loops.0.type"),
    ],
)
def test_a_bad_settings_file_is_named_by_every_command(
    sqlite_instance: Instance, text: str, key: str
) -> None:
    sqlite_instance.write_config(workspace_yaml() + text)
    path = sqlite_instance.home / "vigil.yaml"
    one_line_error(sqlite_instance.vigil("daemon", "run"), f"{path}: {key}")
    if ".type" in key or ".options" in key:  # the plugins: what `config check` adds
        one_line_error(sqlite_instance.vigil("config", "check"), f"{path}: {key}")


def test_a_mistyped_variable_is_refused_with_a_suggestion(sqlite_instance: Instance) -> None:
    env = {"VIGIL_DAEMON_HEARTBEAT_INTERVAL": "1"}
    for command in (("config", "show"), ("run", "launch", "hello")):
        one_line_error(
            sqlite_instance.vigil(*command, env=env),
            "environment variable VIGIL_DAEMON_HEARTBEAT_INTERVAL: no such setting; "
            "did you mean VIGIL_DAEMON__HEARTBEAT_INTERVAL?",
        )
    assert run_count(sqlite_instance) == 0


def test_a_section_variable_that_is_not_json_names_the_variable(sqlite_instance: Instance) -> None:
    result = sqlite_instance.vigil("config", "show", env={"VIGIL_DAEMON": "{not json"})
    one_line_error(result, "environment variable VIGIL_DAEMON: not valid JSON")


def test_secrets_never_printed(sqlite_instance: Instance) -> None:
    sqlite_instance.write_config(
        workspace_yaml()
        + "run_launcher:\n  type: subprocess\n  options:\n"
        + "    env: {AWS_SECRET_ACCESS_KEY: planted-aws-secret}\n"
        + "daemon:\n  loops:\n    - type: nowhere:Loop\n"
        + "      options: {dsn: 'postgresql://bob:planted-url-pw@db/x'}\n"
    )
    shown = sqlite_instance.ok("config", "show")
    assert "AWS_SECRET_ACCESS_KEY: '***'" in shown
    assert "bob:***@db" in shown
    as_json = sqlite_instance.ok("config", "show", "--json")
    for output in (shown, as_json):
        assert "planted-aws-secret" not in output
        assert "planted-url-pw" not in output
    sqlite_instance.write_config("store:\n  postgres:\n    password: 12345\n")
    line = one_line_error(sqlite_instance.vigil("config", "show"), "store.postgres.password")
    assert "12345" not in line
    assert line.endswith("(got '***')")


SENSORS = """
from vigil import Definitions, RunRequest, job, sensor, step

@step
def hello() -> int:
    return 1

hello_job = job("hello", [hello])

@sensor(job=hello_job)
def returns_42():
    return 42

@sensor(job=hello_job)
def raises():
    return helper()

def helper():
    raise ValueError("user broke it")

defs = Definitions(jobs=[hello_job], sensors=[returns_42, raises])
"""


def test_sensor_test_says_what_was_wrong_without_vigils_traceback(
    sqlite_instance: Instance,
) -> None:
    location = sqlite_instance.cwd / "sensors.py"
    location.write_text(SENSORS)
    sqlite_instance.write_config(f"workspace:\n  - file: {location}\n")
    wrong = sqlite_instance.vigil("sensor", "test", "returns_42")
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == (
        "sensor 'returns_42' returned 42: expected a RunRequest, a list of them, "
        "a SkipReason or None"
    )
    raised = sqlite_instance.vigil("sensor", "test", "raises")
    assert raised.returncode == 1
    lines = raised.stderr.strip().splitlines()
    assert lines[0] == "sensor 'raises' raised ValueError: user broke it"
    assert lines[-1] == "ValueError: user broke it"
    assert f'File "{location}"' in raised.stderr
    assert "vigil/evaluation" not in raised.stderr


def test_a_tag_with_a_newline_stays_on_its_line(sqlite_instance: Instance) -> None:
    tag = "team\nx=data\x1b[31m\nengineering"
    run_id = run_id_of(sqlite_instance.ok("run", "launch", "hello", "--tag", tag, "--wait"))
    shown = sqlite_instance.ok("run", "show", run_id).splitlines()
    assert "tags      team\\nx=data\\x1b[31m\\nengineering" in shown
    assert sqlite_instance.show(run_id)["tags"] == {"team\nx": "data\x1b[31m\nengineering"}


def test_a_refused_tag_creates_no_run(sqlite_instance: Instance) -> None:
    one_line_error_usage = sqlite_instance.vigil("run", "launch", "hello", "--tag", "=value")
    assert one_line_error_usage.returncode == 2
    assert "Traceback" not in one_line_error_usage.stderr
    assert run_count(sqlite_instance) == 0


@pytest.mark.parametrize(
    "tag",
    [
        "vigil/max_runtime=abc",
        "vigil/max_runtime=-5",
        "vigil/max_retries=x",
        "vigil/retry_strategy=?",
    ],
)
def test_a_vigil_tag_the_daemon_could_not_read_is_refused_at_launch(
    sqlite_instance: Instance, tag: str
) -> None:
    """Before, such a run was accepted and only the monitor or retries loop refused it."""
    name = tag.split("=")[0]
    one_line_error(sqlite_instance.vigil("run", "launch", "hello", "--tag", tag), f"tag {name}=")
    assert run_count(sqlite_instance) == 0


def test_a_run_config_refused_by_its_job_names_the_file(sqlite_instance: Instance) -> None:
    config = sqlite_instance.cwd / "flaky.yaml"
    config.write_text("steps: {fail_once: {config: {marker: [1, 2]}}}\n")
    line = one_line_error(sqlite_instance.vigil("run", "launch", "flaky", "--config", str(config)))
    assert line.startswith(f"error: {config}: run config: ")
    assert run_count(sqlite_instance) == 0
