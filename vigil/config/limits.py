"""Bounds shared by the settings model and the readers that must not import it (the
daemon's health judgement, the read commands' quick path): one definition of each."""

from __future__ import annotations

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
MIN_INTERVAL = 0.01  # seconds: the shortest interval, poll or timeout anywhere
# The longest heartbeat interval: a daemon that died counts as down after 3 of them, so a
# longer one would keep a second daemon out (and `liveness-check` green) for that long.
MAX_HEARTBEAT_INTERVAL = HOUR
MAX_COUNT = 1_000_000  # any count of runs, processes, connections or retries
# The queued coordinator's global limit when vigil.yaml names none.
DEFAULT_MAX_CONCURRENT_RUNS = 10
