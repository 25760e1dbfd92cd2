"""The deployment files: the systemd unit, the Dockerfile, compose and Prometheus.

No Docker engine runs here, so the files are parsed and checked against the code they
drive: every vigil command they run exists in the CLI, the ports and paths agree with the
settings, and every metric an alert reads is one `Metrics.render()` really exposes. Where
the tools are installed, `systemd-analyze verify` checks the unit and `promtool` checks
and unit-tests the alert rules; where they are not, the parsed checks still run.
"""

from __future__ import annotations

import configparser
import fnmatch
import importlib.util
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
from typing import Any

import click
import pytest
import yaml
from prometheus_client import parser

from vigil import healthcheck as healthcheck_mod
from vigil import runs
from vigil.cli import main as cli_main
from vigil.config import loader
from vigil.config import settings as settings_mod
from vigil.coordinators import base as coordinators
from vigil.daemon import loop, metrics
from vigil.daemon.loops import instigation, monitor, retries

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "vigil-daemon.service"
COMPOSE = DEPLOY / "compose.yaml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
GRAFANA = DEPLOY / "grafana"
VIGIL_HOME = "/var/lib/vigil"
HTTP_PORT = settings_mod.HttpSettings().port


def shutdown_grace() -> float:
    """The daemon's default shutdown grace, from the settings."""
    return settings_mod.InstanceSettings().daemon.shutdown_grace


def cli_has(words: list[str]) -> bool:
    """Whether `vigil WORDS...` names a command of the real CLI (click introspection)."""
    command: click.Command = cli_main.cli
    context = click.Context(cli_main.cli)
    for word in words:
        if not isinstance(command, click.Group):
            return False
        found = command.get_command(context, word)
        if found is None:
            return False
        command = found
    return True


def seconds(value: str) -> float:
    """A systemd / compose time span ('60', '60s', '1min', '1m30s') in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value.strip())
    assert parts, value
    return sum(float(number) * units[unit] for number, unit in parts)


# -- systemd ---------------------------------------------------------------------------


def unit_service() -> configparser.SectionProxy:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # keys keep their case
    unit.read(UNIT, encoding="utf-8")
    return unit["Service"]


def test_unit_is_a_notify_service_with_a_watchdog() -> None:
    service = unit_service()
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["Restart"] == "on-failure"
    assert seconds(service["WatchdogSec"]) == 30
    exec_start = shlex.split(service["ExecStart"])
    assert pathlib.PurePath(exec_start[0]).name == "vigil"
    assert exec_start[1:] == ["daemon", "run"]
    assert cli_has(exec_start[1:])


def test_unit_never_kills_launched_runs_and_outwaits_the_grace() -> None:
    service = unit_service()
    assert service["KillMode"] == "process"  # runs live in the cgroup; see the unit
    assert service.get("KillSignal", "SIGTERM") == "SIGTERM"
    assert seconds(service["TimeoutStopSec"]) > shutdown_grace()


def test_unit_environment_secrets_and_hardening() -> None:
    service = unit_service()
    text = UNIT.read_text(encoding="utf-8")
    environment = re.findall(r"^Environment=(.*)$", text, re.MULTILINE)
    assert f"VIGIL_HOME={VIGIL_HOME}" in environment
    # The password is a systemd credential read through password_file, never a variable.
    name, _, source = service["LoadCredential"].partition(":")
    assert source.startswith("/etc/")
    assert f"VIGIL_STORE__POSTGRES__PASSWORD_FILE=%d/{name}" in environment
    assert not re.search(r"^[^#]*PASSWORD=", text, re.MULTILINE)
    assert service["EnvironmentFile"].startswith("-/etc/")  # optional, out of the unit
    assert service["User"] not in ("", "root", "0")
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert VIGIL_HOME in service["ReadWritePaths"].split()
    assert service["PrivateTmp"] == "yes"
    assert service["ProtectHome"] == "yes"


def test_unit_passes_systemd_analyze_verify_where_installed(tmp_path: pathlib.Path) -> None:
    """`systemd-analyze verify` on the unit, with ExecStart pointing at this venv's vigil
    (verify insists the binary exists). Where systemd-analyze is missing this test checks
    only that the unit parses with its sections; the tests above check its settings."""
    text = UNIT.read_text(encoding="utf-8")
    assert re.search(r"^\[Unit\]$", text, re.MULTILINE)
    assert re.search(r"^\[Install\]$", text, re.MULTILINE)
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    vigil = pathlib.Path(sys.executable).parent / "vigil"
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("/opt/vigil/bin/vigil", str(vigil)), encoding="utf-8")
    checked = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, check=False
    )
    complaints = [line for line in checked.stderr.splitlines() if UNIT.name in line]
    assert checked.returncode == 0, checked.stderr
    assert complaints == []  # unknown keys and bad values are only warnings to verify


# -- Dockerfile ------------------------------------------------------------------------


def dockerfile() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    stages: list[list[tuple[str, str]]] = []
    for line in filter(None, (line.strip() for line in joined.splitlines())):
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) instruction's words; fails on the shell form."""
    words = json.loads(arguments)
    assert isinstance(words, list), arguments
    assert all(isinstance(word, str) for word in words)
    return words


def environment(stage: list[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for arguments in instructions(stage, "ENV"):
        for pair in shlex.split(arguments):
            key, _, value = pair.partition("=")
            found[key] = value
    return found


def test_dockerfile_builds_a_wheel_then_installs_it_into_a_venv() -> None:
    build, runtime = dockerfile()
    assert build[0][1].endswith(" AS build")
    assert any("pip wheel" in run for run in instructions(build, "RUN"))
    install = " ".join(instructions(runtime, "RUN"))
    assert "python -m venv /opt/vigil" in install
    assert "from=build" in install
    assert "--no-index" in install
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.MULTILINE)
    assert build[0][1].startswith("${PYTHON_IMAGE} ")
    assert runtime[0][1] == "${PYTHON_IMAGE}"


def test_dockerfile_runtime_stage() -> None:
    runtime = dockerfile()[-1]
    user = instructions(runtime, "USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    assert environment(runtime)["VIGIL_HOME"] == VIGIL_HOME
    assert exec_form(instructions(runtime, "VOLUME")[-1]) == [VIGIL_HOME]
    assert instructions(runtime, "EXPOSE") == [str(HTTP_PORT)]
    assert instructions(runtime, "STOPSIGNAL") == ["SIGTERM"]


def test_dockerfile_commands_are_exec_form_and_exist_in_the_cli() -> None:
    runtime = dockerfile()[-1]
    entrypoint = exec_form(instructions(runtime, "ENTRYPOINT")[-1])
    command = exec_form(instructions(runtime, "CMD")[-1])
    assert entrypoint[:2] == ["/usr/bin/tini", "--"]  # PID 1 forwards signals and reaps
    assert entrypoint[2:] == ["vigil"]
    assert command == ["daemon", "run"]
    assert cli_has(command)
    healthcheck = instructions(runtime, "HEALTHCHECK")[-1]
    probe = exec_form(healthcheck.split(" CMD ", 1)[1])
    assert probe == ["python", "-m", "vigil.healthcheck"]  # the venv's python, on PATH
    assert importlib.util.find_spec(probe[2]) is not None
    assert healthcheck_mod.DEFAULT_PORT == HTTP_PORT
    assert environment(runtime)["PATH"].startswith("/opt/vigil/bin:")


def test_dockerignore_keeps_the_build_context_small_but_complete() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)

    for path in (".git", ".venv", ".vigil", "tests", "vigil/__pycache__"):
        assert ignored(path), path
    build = dockerfile()[0]
    copied = [word for arguments in instructions(build, "COPY") for word in arguments.split()[:-1]]
    assert copied, "the build stage copies the sources"
    for path in copied:
        assert (ROOT / path).exists(), path
        assert not ignored(path), path


# -- compose ---------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def vigil_command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    assert isinstance(command, list), "exec form"
    return command


def test_compose_services_and_their_order() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "migrate", "daemon", "daemon-2", "prometheus", "grafana"}
    assert services["postgres"]["image"] == "postgres:15"
    assert "healthcheck" in services["postgres"]
    migrate, daemon = services["migrate"], services["daemon"]
    assert vigil_command(migrate) == ["instance", "migrate"]
    assert vigil_command(daemon) == ["daemon", "run"]
    assert cli_has(vigil_command(migrate))
    assert cli_has(vigil_command(daemon))
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert daemon["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["image"] == daemon["image"]
    assert (COMPOSE.parent / migrate["build"]["context"] / "Dockerfile").is_file()
    assert seconds(daemon["stop_grace_period"]) > shutdown_grace()


def test_compose_database_password_is_a_secret_file() -> None:
    document = compose()
    secret = document["secrets"]["db_password"]["file"]
    assert secret.startswith("./secrets/")
    for name, service in document["services"].items():
        env = service.get("environment", {})
        assert not any(key.endswith("PASSWORD") for key in env), name
    postgres, daemon = document["services"]["postgres"], document["services"]["daemon"]
    assert "db_password" in postgres["secrets"]
    assert "db_password" in daemon["secrets"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/db_password"


def test_compose_daemon_environment_is_valid_vigil_settings(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = compose()["services"]["daemon"]
    for key in [key for key in os.environ if key.startswith("VIGIL_")]:
        monkeypatch.delenv(key)
    for key, value in daemon["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = loader.load_settings(tmp_path)
    assert settings.store.kind == "postgres"
    assert settings.store.postgres.host == "postgres"
    assert str(settings.store.postgres.password_file) == "/run/secrets/db_password"
    assert settings.store.postgres.password is None
    assert (settings.http.host, settings.http.port) == ("0.0.0.0", HTTP_PORT)
    [location] = settings.workspace
    mounts = [volume.split(":") for volume in daemon["volumes"]]
    assert any(str(location.file).startswith(target) for _, target, *_ in mounts)
    assert f"127.0.0.1:{HTTP_PORT}:{HTTP_PORT}" in daemon["ports"]


def test_compose_prometheus_scrapes_the_daemon_with_the_rules() -> None:
    prometheus = compose()["services"]["prometheus"]
    mounts = dict(volume.split(":")[:2] for volume in prometheus["volumes"])
    assert (COMPOSE.parent / "prometheus/prometheus.yml").resolve() == PROMETHEUS
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["./prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"]  # beside prometheus.yml, here and there
    [job] = config["scrape_configs"]
    assert job["job_name"] == "vigil"
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"daemon:{HTTP_PORT}", f"daemon-2:{HTTP_PORT}"]


def test_compose_runs_two_daemons_on_the_one_postgres_store() -> None:
    services = compose()["services"]
    daemon, second = services["daemon"], services["daemon-2"]
    assert vigil_command(second) == ["daemon", "run"]
    assert second["environment"] == daemon["environment"]
    assert second["environment"]["VIGIL_STORE__KIND"] == "postgres"
    assert second["volumes"] == daemon["volumes"]  # outputs and logs readable by both
    assert second["depends_on"] == daemon["depends_on"]
    assert seconds(second["stop_grace_period"]) > shutdown_grace()
    host_ports = [port.rsplit(":", 1)[0] for port in (*daemon["ports"], *second["ports"])]
    assert len(set(host_ports)) == 2


# -- alerts ----------------------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def rendered_samples() -> list[tuple[str, dict[str, str]]]:
    """Every sample a daemon with loops (scheduler among them) and runs exposes."""
    snapshots = [
        loop.LoopStatistics(
            name=name,
            interval=30.0,
            timeout=60.0,
            state=loop.LoopState.RUNNING,
            iterations=4,
            failures=1,
            restarts=1,
            last_iteration_start=1.0,
            last_iteration_end=2.0,
            last_success=2.0,
            last_duration=1.0,
            errors=(),
            consecutive_failures=0,
        )
        for name in ("scheduler", "queue")
    ]
    exported = metrics.Metrics(version="0", started_at=0.0, loops=lambda: snapshots)
    exported.set_run_counts({runs.RunStatus.QUEUED: 1})
    exported.observe_launch(0.1)
    exported.launch_failed()
    exported.store_error()
    exported.observe_iteration("queue", 0.1)
    exported.watch_monitor(lambda: monitor.MonitorStatistics(ended={}, resumes=0, unknown=0))
    exported.watch_retries(lambda: retries.RetriesStatistics(submitted=0, backlog=0, next_due=None))
    queue = coordinators.QueueStatistics(held={"paused": 2}, launches_in_flight=0)
    exported.watch_queue(lambda: queue)
    ticks = {("schedule", "FAILED"): 1}
    timeouts = {"sensor": 1}
    exported.watch_instigation(lambda: instigation.InstigationStatistics(ticks, timeouts, {}))
    text = exported.render().decode("utf-8")
    return [
        (sample.name, dict(sample.labels))
        for family in parser.text_string_to_metric_families(text)
        for sample in family.samples
    ]


SELECTOR = re.compile(r"\b(vigil_[a-zA-Z0-9_:]*)\s*(?:\{([^}]*)\})?")
MATCHER = re.compile(r"(\w+)\s*(=~|!~|!=|=)\s*\"([^\"]*)\"")


def test_alerts_cover_the_issue_and_are_well_formed() -> None:
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    required = {"VigilDaemonDown", "VigilLoopHung", "VigilLoopFailing"}
    assert required | {"VigilQueueGrowing", "VigilScheduleLate"} <= names
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
    schedule = next(rule for rule in rules if rule["alert"] == "VigilScheduleLate")
    assert 'loop="scheduler"' in schedule["expr"]


def test_every_metric_an_alert_reads_is_exposed() -> None:
    """Names, label names and exact label values of every vigil_* selector in alerts.yml
    against a real `Metrics.render()`: an alert can never silently read nothing."""
    exposed = rendered_samples()
    for rule in alert_rules():
        for name, matchers in SELECTOR.findall(rule["expr"]):
            series = [labels for sample, labels in exposed if sample == name]
            assert series, f"{rule['alert']}: {name} is not exposed"
            for label, operator, value in MATCHER.findall(matchers):
                assert any(label in labels for labels in series), (rule["alert"], label)
                if operator == "=":
                    assert any(labels.get(label) == value for labels in series), (name, value)


def test_alerts_read_the_scrape_job() -> None:
    [job] = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))["scrape_configs"]
    for rule in alert_rules():
        for value in re.findall(r'job="([^"]*)"', rule["expr"]):
            assert value == job["job_name"], rule["alert"]


def promtool() -> str | None:
    return shutil.which("promtool")


def test_promtool_checks_rules_and_config_where_installed() -> None:
    """`promtool check rules` (expressions and annotation templates) and `check config`.
    Where promtool is missing, the structural and cross checks above still run."""
    tool = promtool()
    if tool is None:
        assert alert_rules()
        return
    for args in (["check", "rules", str(ALERTS)], ["check", "config", str(PROMETHEUS)]):
        checked = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    merged = {"job": "vigil", "instance": "daemon:9464", **labels}
    inside = ", ".join(f'{key}="{value}"' for key, value in merged.items())
    return {"series": f"{name}{{{inside}}}", "values": values}


def fired(alert: str, at: str, *expected: dict[str, str]) -> dict[str, Any]:
    alerts = [{"exp_labels": {"job": "vigil", "instance": "daemon:9464", **e}} for e in expected]
    return {"eval_time": at, "alertname": alert, "exp_alerts": alerts}


ALERT_CASES: list[dict[str, Any]] = [
    {
        "input_series": [series("up", "0x10")],
        "alert_rule_test": [
            fired("VigilDaemonDown", "1m"),
            fired("VigilDaemonDown", "5m", {"severity": "critical"}),
        ],
    },
    {
        "input_series": [series("vigil_build_info", "1x10", version="1")],
        "alert_rule_test": [
            {
                "eval_time": "8m",
                "alertname": "VigilDaemonAbsent",
                "exp_alerts": [{"exp_labels": {"job": "vigil", "severity": "critical"}}],
            }
        ],
    },
    {
        "input_series": [
            series("vigil_loop_last_iteration_start_timestamp_seconds", "0x10", loop="queue"),
            series("vigil_loop_timeout_seconds", "60x10", loop="queue"),
            series("vigil_loop_state", "1x10", loop="queue", state="running"),
            series("vigil_loop_last_iteration_start_timestamp_seconds", "0x10", loop="monitor"),
            series("vigil_loop_timeout_seconds", "60x10", loop="monitor"),
            series("vigil_loop_state", "0x10", loop="monitor", state="running"),
        ],
        "alert_rule_test": [
            fired("VigilLoopHung", "5m", {"severity": "critical", "loop": "queue"}),
        ],
    },
    {
        "input_series": [
            series("vigil_loop_consecutive_failures", "3x10", loop="sensors"),
            series("vigil_loop_consecutive_failures", "0x10", loop="queue"),
        ],
        "alert_rule_test": [
            fired("VigilLoopFailing", "8m", {"severity": "warning", "loop": "sensors"}),
        ],
    },
    {
        "input_series": [
            series("vigil_loop_last_success_timestamp_seconds", "0x10", loop="scheduler"),
            series("vigil_loop_interval_seconds", "30x10", loop="scheduler"),
            series("vigil_loop_last_success_timestamp_seconds", "0x10", loop="monitor"),
            series("vigil_loop_interval_seconds", "30x10", loop="monitor"),
            series("vigil_loop_last_success_timestamp_seconds", "0+60x10", loop="queue"),
            series("vigil_loop_interval_seconds", "30x10", loop="queue"),
        ],
        "alert_rule_test": [
            fired("VigilScheduleLate", "5m", {"severity": "critical", "loop": "scheduler"}),
            fired("VigilLoopLate", "5m", {"severity": "warning", "loop": "monitor"}),
        ],
    },
    {
        "input_series": [
            series("vigil_runs", "20+1x60", status="QUEUED"),
            series("vigil_runs", "50x60", status="QUEUED", instance="other:9464"),
        ],
        "alert_rule_test": [
            fired("VigilQueueGrowing", "20m"),
            fired("VigilQueueGrowing", "50m", {"severity": "warning", "status": "QUEUED"}),
        ],
    },
    {
        "input_series": [
            series("vigil_ticks_total", "0 0 1x10", kind="schedule", status="FAILED"),
            series("vigil_ticks_total", "0x12", kind="sensor", status="FAILED"),
            series("vigil_evaluation_timeouts_total", "0 0 0 2x10", kind="sensor"),
            series("vigil_evaluation_timeouts_total", "0x12", kind="schedule"),
        ],
        "alert_rule_test": [
            fired(
                "VigilTicksFailing",
                "5m",
                {"severity": "warning", "kind": "schedule", "status": "FAILED"},
            ),
            fired("VigilEvaluationTimeouts", "5m", {"severity": "warning", "kind": "sensor"}),
        ],
    },
    {
        "input_series": [
            series("vigil_runs", "3x60", status="QUEUED"),
            series("vigil_runs_launched_total", "0x60"),
            series("vigil_queue_held_runs", "3x60", reason="global"),
            series("vigil_runs", "3x60", status="QUEUED", instance="busy:9464"),
            series("vigil_runs_launched_total", "0+1x60", instance="busy:9464"),
            series("vigil_runs", "3x60", status="QUEUED", instance="paused:9464"),
            series("vigil_runs_launched_total", "0x60", instance="paused:9464"),
            series("vigil_queue_held_runs", "3x60", reason="paused", instance="paused:9464"),
        ],
        "alert_rule_test": [
            fired("VigilQueueStuck", "10m"),
            fired("VigilQueueStuck", "40m", {"severity": "warning", "status": "QUEUED"}),
        ],
    },
]


def test_alerts_fire_when_they_should_with_promtool_where_installed(
    tmp_path: pathlib.Path,
) -> None:
    """`promtool test rules` drives each alert with synthetic series: it fires on the bad
    case, stays quiet on the healthy one. Annotations are left out of the copy under test
    (their templates are checked by `promtool check rules`). Without promtool only the
    cases' metric names are checked against the exposition."""
    exposed = {name for name, _ in rendered_samples()} | {"up"}
    for case in ALERT_CASES:
        for item in case["input_series"]:
            assert item["series"].split("{")[0] in exposed
    tool = promtool()
    if tool is None:
        return
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(document), encoding="utf-8")
    tests = [{"interval": "1m", **case} for case in ALERT_CASES]
    suite = {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(suite), encoding="utf-8")
    checked = subprocess.run(
        [tool, "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# -- grafana ---------------------------------------------------------------------------
# tests/daemon/test_daemon_dashboards.py checks every dashboard query against a real
# daemon's /metrics; here the provisioning is checked against compose and the dashboards.


def grafana_yaml(path: str) -> dict[str, Any]:
    loaded = yaml.safe_load((GRAFANA / path).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_compose_grafana_is_pinned_provisioned_and_keeps_its_password_in_a_secret() -> None:
    document = compose()
    grafana = document["services"]["grafana"]
    image, _, tag = grafana["image"].partition(":")
    assert image == "grafana/grafana-oss"
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), "pinned by version"
    mounts = {source: target for source, target, *_ in (v.split(":") for v in grafana["volumes"])}
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    [provider] = grafana_yaml("provisioning/dashboards/vigil.yml")["providers"]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    env = grafana["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "grafana_admin_password" in grafana["secrets"]
    assert document["secrets"]["grafana_admin_password"]["file"].startswith("./secrets/")
    assert "127.0.0.1:3000:3000" in grafana["ports"]


def test_grafana_datasource_is_the_compose_prometheus_and_every_panel_uses_it() -> None:
    [source] = grafana_yaml("provisioning/datasources/prometheus.yml")["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose()["services"]
    dashboards = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        titles = {panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"}
        assert titles >= {"Queue", "Launches", "Run outcomes and durations", "Ticks"}
        assert titles >= {"Loop health", "Daemon resources"}
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == source["uid"], panel["title"]
                assert target["expr"].strip(), panel["title"]
