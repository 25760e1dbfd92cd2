"""Cron expressions and time zones, checked once when the definitions load.

An expression has 5 fields (minute hour day-of-month month day-of-week) or 6 with a
leading seconds field (second minute hour day-of-month month day-of-week); the aliases
@yearly, @annually, @monthly, @weekly, @daily, @midnight and @hourly stand for their
5-field forms. An expression that can never fire (`0 0 30 2 *`) is refused too.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import zoneinfo
from collections.abc import Iterator
from typing import Any

import croniter

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EVERY = ("*", "*/1")
_PROBE_START = datetime.datetime(2000, 1, 1)


@dataclasses.dataclass(frozen=True, slots=True)
class Cron:
    """A checked expression; `walls_after` iterates the local wall times it matches."""

    expression: str
    fields: tuple[str, ...]

    @property
    def has_seconds(self) -> bool:
        return len(self.fields) == 6

    @property
    def every_hour(self) -> bool:
        """Whether it matches every hour: such a schedule fires in both runs of a repeated hour."""
        return self.fields[-4] in _EVERY

    def walls_after(self, wall: datetime.datetime) -> Iterator[datetime.datetime]:
        """The naive local wall times it matches, strictly after `wall`, in order."""
        it = _iterator(self.fields)
        it.set_current(wall, force=True)
        while True:
            yield it.get_next(datetime.datetime)


@functools.lru_cache(maxsize=4096)
def _iterator(fields: tuple[str, ...]) -> Any:
    """A croniter per distinct expression: parsing is most of its cost, so it is reused.

    Callers move it with `set_current` and read it at once (no await in between), so the
    daemon's one thread never sees it moved under its feet.
    """
    return croniter.croniter(" ".join(fields), _PROBE_START, second_at_beginning=len(fields) == 6)


def parse_cron(expression: str) -> Cron:
    """A Cron, or ValueError saying what is wrong with the expression."""
    if not isinstance(expression, str):
        raise ValueError(f"a cron expression must be a string (got {expression!r})")
    text = ALIASES.get(expression.strip().lower(), expression.strip())
    fields = tuple(text.split())
    if len(fields) not in (5, 6):
        raise ValueError(
            f"cron {expression!r} has {len(fields)} fields; expected 5 "
            "(minute hour day month weekday) or 6 (second first)"
        )
    cron = Cron(expression=expression, fields=fields)
    try:
        next(cron.walls_after(_PROBE_START))
    except (croniter.CroniterError, ValueError, KeyError) as exc:
        raise ValueError(f"cron {expression!r} is not valid: {exc}") from None
    return cron


def parse_zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone of this name, or ValueError."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"time zone {name!r} is not an IANA zone name")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} ({exc})") from None
