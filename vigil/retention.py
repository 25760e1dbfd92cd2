"""Run retention: which ended runs go, and the files they leave behind.

A run is purged (its row, tags and events, then its compute logs and outputs) when it
ended long enough ago for its end status (`Rule.ended_before`), and only when nobody may
still need it:

- never a run that has not ended (terminal statuses never change, so the age is the age
  of `updated_at`);
- never a FAILURE or CANCELED run whose end the retries loop has not passed yet (its
  cursor): its retry may still be submitted, and reads the run (`spare_retries`);
- a lineage (a root run and its retries and re-executions, which read their parents'
  outputs) goes only when every run of it may go, so no run loses the outputs it reuses;
- never a run of a backfill still submitting its runs (its progress is read from them).

The rows go in one store transaction per batch, which also records the run ids in a
journal (`purged_runs`); the files are removed after that commits, and the journal entries
after that. A process killed in between leaves journal entries, whose files the next purge
removes first: nothing is left behind, and a file already gone is no error.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from vigil import blobs, runs

if TYPE_CHECKING:  # pydantic stays out of the store's plain-data imports
    from vigil.config import settings as settings_mod

S = runs.RunStatus
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
DAY = 86400.0
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}
MAX_AGE = 3650 * DAY


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """Which ended runs go: those of each status here that ended before its time."""

    ended_before: Mapping[runs.RunStatus, float]
    batch_size: int = 500
    spare_retries: bool = True  # keep the ends the retries loop has not passed

    def __post_init__(self) -> None:
        if not set(self.ended_before) <= runs.TERMINAL_STATUSES:
            raise ValueError("only ended runs are purged")


@dataclasses.dataclass(frozen=True, slots=True)
class Purged:
    """What a purge removed (or, dry, would remove): runs, their events, run directories."""

    runs: int = 0
    events: int = 0
    files: int = 0

    def __add__(self, other: Purged) -> Purged:
        return Purged(self.runs + other.runs, self.events + other.events, self.files + other.files)


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """One batch's rows, as the store deleted them: the run ids and how many events."""

    run_ids: Sequence[str]
    events: int


def rule_from_settings(
    settings: settings_mod.RunRetentionSettings, now: float, *, spare_retries: bool
) -> Rule | None:
    """The `retention` settings' rule at `now`; None when they keep every run.
    `spare_retries`: the retries loop runs (`run_retries.enabled`)."""
    days = {S.SUCCESS: settings.success_days, S.FAILURE: settings.failure_days}
    days[S.CANCELED] = settings.canceled_days
    before = {s: now - d * DAY for s, d in days.items() if d is not None}
    if not before:
        return None
    return Rule(before, settings.batch_size, spare_retries=spare_retries)


def parse_age(raw: str) -> float:
    """`30d`, `12h`, `90m`, `45s`, `2w` in seconds; ValueError saying what is accepted."""
    match = _AGE.fullmatch(raw.strip())
    seconds = float(match[1]) * _UNITS[match[2]] if match else 0.0
    if not 0 < seconds <= MAX_AGE:
        raise ValueError(
            f"{raw!r} is not an age: give a number and a unit s, m, h, d or w (e.g. 30d), "
            "more than 0 and at most 3650d"
        )
    return seconds


def names_directory(run_id: str) -> bool:
    """Whether a run id can name a directory a worker made (`ROOT/RUN_ID`)."""
    return bool(run_id) and run_id not in (".", "..") and "/" not in run_id and "\\" not in run_id


def remove_files(run_ids: Iterable[str], roots: Sequence[blobs.Root]) -> int:
    """Remove the runs' directories (compute logs, outputs) under each root; how many
    existed. Blocking: call it in a worker thread. A directory already gone is fine; a
    symbolic link is never followed."""
    removed = 0
    for run_id in filter(names_directory, run_ids):
        removed += sum(root.remove_tree(run_id) for root in roots)
    return removed
