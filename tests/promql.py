"""Metric names read by PromQL expressions, and the names an exposition offers.

Enough of PromQL for the deploy checks (alert rules, Grafana panels): string literals,
label matchers, range and offset brackets and grouping clauses (`by (le)`, `on (job)`)
are removed; every identifier left that is not a function, an aggregation or a keyword is
a metric name. An unknown function name therefore shows up as a metric that is not
exposed, which is the safe way to be wrong.
"""

from __future__ import annotations

import re

from prometheus_client import parser

_WORDS = (
    "abs absent absent_over_time avg_over_time ceil changes clamp clamp_max clamp_min",
    "count_over_time day_of_month day_of_week day_of_year days_in_month delta deriv exp floor",
    "histogram_quantile holt_winters hour idelta increase irate label_join label_replace",
    "last_over_time ln log10 log2 max_over_time min_over_time minute month predict_linear",
    "present_over_time quantile_over_time rate resets round scalar sgn sort sort_desc sqrt",
    "stddev_over_time stdvar_over_time sum_over_time time timestamp vector year",
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile",
    "and or unless bool offset inf nan",
)
FUNCTIONS = frozenset(word for line in _WORDS for word in line.split())
# Series Prometheus makes for each scrape target: never in an exposition.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w.$])[a-zA-Z_:][\w:]*")
_SUFFIXES = {
    "counter": ("", "_total"),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` reads (`rate(x_total{a="b"}[5m])` reads `x_total`)."""
    bare = _STRING.sub('""', expr)
    for pattern in (_MATCHERS, _RANGE, _GROUPING):
        bare = pattern.sub(" ", bare)
    return {name for name in _IDENTIFIER.findall(bare) if name.lower() not in FUNCTIONS}


def offered_names(exposition: str) -> set[str]:
    """Every name a query may read from this text exposition: each family's series names,
    with or without samples yet (a histogram `h` offers `h_bucket`, `h_sum`, `h_count`; a
    counter `c` offers `c_total`)."""
    offered: set[str] = set()
    for family in parser.text_string_to_metric_families(exposition):
        offered.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        offered.update(sample.name for sample in family.samples)
    return offered


def family_names(exposition: str) -> set[str]:
    """The names of the families a text exposition holds, as documented: counters with
    their `_total`, histograms by their base name."""
    names = set()
    for family in parser.text_string_to_metric_families(exposition):
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names
