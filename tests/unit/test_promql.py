"""The PromQL name extractor the dashboard and alert checks rely on: it must find names."""

from __future__ import annotations

from tests import promql

EXPOSITION = """\
# HELP vigil_runs_launched_total Runs given a worker.
# TYPE vigil_runs_launched_total counter
vigil_runs_launched_total 3.0
# HELP vigil_run_duration_seconds Seconds.
# TYPE vigil_run_duration_seconds histogram
# HELP vigil_runs Runs.
# TYPE vigil_runs gauge
vigil_runs{status="QUEUED"} 1.0
"""


def test_names_without_functions_matchers_ranges_or_grouping_labels() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (job_name, le) (rate(vigil_run_duration_seconds_bucket"
        '{instance=~"$instance", le!="sum(x)"}[$__rate_interval])))'
        " / on (job, instance) group_left (version) vigil_build_info offset 5m"
        " and time() - vigil_runs{status='QUEUED'} > 1e3 unless absent(up)"
    )
    assert promql.metric_names(expr) == {
        "vigil_run_duration_seconds_bucket",
        "vigil_build_info",
        "vigil_runs",
        "up",
    }


def test_a_misspelled_name_or_function_is_not_offered() -> None:
    offered = promql.offered_names(EXPOSITION)
    good = "rate(vigil_runs_launched_total[5m]) + vigil_run_duration_seconds_count + vigil_runs"
    assert promql.metric_names(good) <= offered
    assert not promql.metric_names("rate(vigil_run_launched_total[5m])") <= offered
    assert not promql.metric_names("ratee(vigil_runs_launched_total[5m])") <= offered
    assert not promql.metric_names("vigil_run_duration_seconds") <= offered  # a histogram


def test_families_are_named_as_documented() -> None:
    assert promql.family_names(EXPOSITION) == {
        "vigil_runs_launched_total",
        "vigil_run_duration_seconds",
        "vigil_runs",
    }
