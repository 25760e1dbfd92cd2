"""The Grafana dashboard, the alert rules and the README against a real daemon's /metrics.

A real `vigil daemon run` (queued coordinator, schedules and sensors on, a job run through
it) is scraped; every metric name a dashboard panel, a dashboard variable or an alert
reads must be one it offers, and every vigil_* and process_* family it exposes must be
in the README's metrics table (and nothing there that it does not expose).
"""

from __future__ import annotations

import json
import pathlib
import re
import signal
from typing import Any

import yaml

from tests import promql
from tests.acceptance.harness import IMMEDIATE, Instance, run_id_of
from tests.daemon.process import TICKER, Daemons, configure, free_port
from tests.daemon.test_daemon_http import answers

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
QUEUED = "run_coordinator:\n  type: queued\n  options:\n    poll_interval: 0.5\n"
# Every built-in loop runs, the retention loop too (it is built when an age is set), so
# the scrape holds every metric a daemon can export.
RETENTION = "retention:\n  success_days: 3650\n"
RUN_END = 'vigil_runs_ended_total{job_name="hello",status="SUCCESS"}'


async def scrape_after_a_run(instance: Instance, daemons: Daemons) -> str:
    """/metrics of a real daemon once a run it launched has ended and been counted."""
    config = (instance.home / "vigil.yaml").read_text()
    instance.write_config(config.replace(IMMEDIATE, QUEUED) + RETENTION)
    port = free_port()
    configure(instance, TICKER, http_port=port, scheduling=True)
    daemon = daemons.start()
    await answers(port, "/readyz", 200)
    run_id = run_id_of(instance.ok("run", "launch", "hello"))
    instance.wait_until(run_id, lambda run: run["status"] == "SUCCESS")
    exposition = await answers(port, "/metrics", 200, containing=RUN_END)
    assert 'vigil_run_duration_seconds_count{job_name="hello"} 1.0' in exposition
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0
    return exposition


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable of every dashboard."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']}", target["expr"]))
        for variable in dashboard.get("templating", {}).get("list", []):
            query = re.fullmatch(r"label_values\((\w+),\s*\w+\)", variable["definition"])
            assert query, variable["definition"]
            found.append((f"{path.name}: ${variable['name']}", query[1]))
    return found


def alert_queries() -> list[tuple[str, str]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [(rule["alert"], rule["expr"]) for g in document["groups"] for rule in g["rules"]]


def readme_metrics() -> set[str]:
    """The metric names in the first column of the README's metrics table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("| metric | type | labels | meaning |", 1)[1].split("\n\n", 1)[0]
    cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for cell in cells for name in re.findall(r"`([a-z_:]+)`", cell)}


async def test_every_dashboard_and_alert_query_reads_exposed_metrics(
    sqlite_instance: Instance, daemons: Daemons
) -> None:
    offered = promql.offered_names(await scrape_after_a_run(sqlite_instance, daemons))
    queries = dashboard_queries() + alert_queries()
    assert len(queries) > 40
    read = set()
    for where, expr in queries:
        names = promql.metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        missing = names - offered - promql.SCRAPE_SERIES
        assert not missing, f"{where}: {sorted(missing)} not exposed by the daemon"
        read |= names
    for name in ("vigil_runs_ended_total", "vigil_run_duration_seconds_bucket", "process_open_fds"):
        assert name in read, name


async def test_the_readme_documents_every_metric_the_daemon_exposes(
    sqlite_instance: Instance, daemons: Daemons
) -> None:
    exposed = promql.family_names(await scrape_after_a_run(sqlite_instance, daemons))
    ours = {name for name in exposed if name.startswith(("vigil_", "process_"))}
    documented = readme_metrics()
    assert {"vigil_runs_ended_total", "process_resident_memory_bytes"} <= ours
    undocumented, stale = sorted(ours - documented), sorted(documented - ours)
    assert not undocumented, f"exposed but not in the README's metrics table: {undocumented}"
    assert not stale, f"in the README's metrics table but not exposed: {stale}"
