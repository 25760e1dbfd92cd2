"""Partitions: the slices of data a job runs on, one run per key. Pure definitions, no I/O.

A job declares one `PartitionsDef`: time partitions (hourly, daily, weekly, monthly) or a
fixed list of keys (`static_partitions`). A run names its key in the tag `vigil/partition`.

Time partitions are whole periods of local time in their zone, from the first period that
starts at or after `start` to the last one that ends at or before `end` (exclusive; no
`end`: open). Keys are the local start of the period formatted with `fmt`:

    hourly   %Y-%m-%d-%H:%M   daily    %Y-%m-%d
    weekly   %Y-%m-%d (the first day, Monday unless `day_of_week`: 0 Monday .. 6 Sunday)
    monthly  %Y-%m-%d (the 1st of the month)

A period's window is [start, end) in the zone, each boundary a local wall time turned into
an instant by the schedules' rules: a boundary that does not exist (clocks spring forward)
moves forward to the end of the gap, a boundary that happens twice (clocks fall back) takes
its first occurrence. So each wall-clock hour is one key: in Europe/Berlin the spring
forward day has 23 hourly keys (no key 02:00, whose window would be empty) and the fall
back day has 24, the repeated hour being one key whose window lasts two real hours; a
daily window lasts 23 or 25 hours on those days.

`keys(now)` lists only complete partitions (window ended at or before `now`); `check`
refuses any other key with a one-line `PartitionError`.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from vigil import errors

UTC = datetime.UTC
_HOUR = datetime.timedelta(hours=1)
_DAY = datetime.timedelta(days=1)
_WEEK = datetime.timedelta(days=7)
_MAX_STATIC_KEY = 255
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_FORMATS = {
    "hourly": "%Y-%m-%d-%H:%M",
    "daily": "%Y-%m-%d",
    "weekly": "%Y-%m-%d",
    "monthly": "%Y-%m-%d",
}
_PERIOD = {"hourly": "hour", "daily": "day", "weekly": "week", "monthly": "month"}


class PartitionsDef(abc.ABC):
    """The keys of a partitioned job; `describe()` crosses processes (`from_description`)."""

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """A short name for messages: `daily partitions from 2024-01-01 (UTC)`."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON-able description; `from_description(d.describe()) == d`."""

    @abc.abstractmethod
    def keys(self, now: float) -> list[str]:
        """Every key in order; for time partitions only the complete ones at `now`."""

    @abc.abstractmethod
    def check(self, key: str, now: float) -> None:
        """PartitionError unless `key` is one of `keys(now)`."""

    @abc.abstractmethod
    def key_range(self, first: str, last: str, now: float) -> list[str]:
        """The keys from `first` to `last` inclusive, both checked; PartitionError if
        `first` comes after `last`."""

    @abc.abstractmethod
    def window(self, key: str) -> tuple[datetime.datetime, datetime.datetime] | None:
        """The [start, end) of a time partition's key in its zone, complete or not
        (PartitionError for a key that is malformed or out of range); None for static."""

    @abc.abstractmethod
    def last_complete(self, at: datetime.datetime) -> str | None:
        """The latest key whose window ended at or before `at` (None: none yet, or static)."""

    def _refuse(self, key: str, why: str) -> errors.PartitionError:
        return errors.PartitionError(f"partition {key!r} is not a key of {self.label}: {why}")


@dataclasses.dataclass(frozen=True)
class StaticPartitions(PartitionsDef):
    """A fixed list of keys, in the order declared."""

    names: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"static partitions ({len(self.names)} keys)"

    def describe(self) -> dict[str, Any]:
        return {"type": "static", "keys": list(self.names)}

    def keys(self, now: float) -> list[str]:
        return list(self.names)

    def check(self, key: str, now: float) -> None:
        if key not in self.names:
            shown = ", ".join(self.names[:5]) + (", ..." if len(self.names) > 5 else "")
            raise self._refuse(key, f"expected one of {shown}")

    def key_range(self, first: str, last: str, now: float) -> list[str]:
        self.check(first, now)
        self.check(last, now)
        low, high = self.names.index(first), self.names.index(last)
        if low > high:
            raise errors.PartitionError(
                f"partition range {first!r}..{last!r} of {self.label}: "
                f"{first!r} comes after {last!r}"
            )
        return list(self.names[low : high + 1])

    def window(self, key: str) -> None:
        return None

    def last_complete(self, at: datetime.datetime) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class TimePartitions(PartitionsDef):
    """Whole periods of local time; `start` and `end` are aligned naive local wall times."""

    unit: str
    start: datetime.datetime
    end: datetime.datetime | None
    timezone: str
    fmt: str
    day_of_week: int = 0
    zone: zoneinfo.ZoneInfo = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", zoneinfo.ZoneInfo(self.timezone))

    @property
    def label(self) -> str:
        return f"{self.unit} partitions from {self.format(self.start)} ({self.timezone})"

    def describe(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "type": self.unit,
            "start": self.start.isoformat(),
            "end": None if self.end is None else self.end.isoformat(),
            "timezone": self.timezone,
            "format": self.fmt,
        }
        if self.unit == "weekly":
            found["day_of_week"] = self.day_of_week
        return found

    def format(self, wall: datetime.datetime) -> str:
        # The default formats by hand: strftime is most of the cost of 10,000 keys.
        if self.fmt == "%Y-%m-%d":
            return "%04d-%02d-%02d" % (wall.year, wall.month, wall.day)  # noqa: UP031 (twice as fast)
        if self.fmt == "%Y-%m-%d-%H:%M":
            return "%04d-%02d-%02d-%02d:%02d" % (  # noqa: UP031 (twice as fast as f-strings)
                wall.year,
                wall.month,
                wall.day,
                wall.hour,
                wall.minute,
            )
        return wall.strftime(self.fmt)

    # -- wall-time arithmetic --------------------------------------------------------------

    def floor(self, wall: datetime.datetime) -> datetime.datetime:
        """The start of the period holding a wall time."""
        if self.unit == "hourly":
            return wall.replace(minute=0, second=0, microsecond=0)
        day = wall.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.unit == "daily":
            return day
        if self.unit == "weekly":
            return day - datetime.timedelta(days=(day.weekday() - self.day_of_week) % 7)
        return day.replace(day=1)

    def following(self, wall: datetime.datetime) -> datetime.datetime:
        if self.unit == "monthly":
            year, month = divmod(wall.year * 12 + wall.month, 12)
            return wall.replace(year=year, month=month + 1)
        return wall + _STEP[self.unit]

    def preceding(self, wall: datetime.datetime) -> datetime.datetime:
        if self.unit == "monthly":
            year, month = divmod(wall.year * 12 + wall.month - 2, 12)
            return wall.replace(year=year, month=month + 1)
        return wall - _STEP[self.unit]

    def instant(self, wall: datetime.datetime) -> float:
        """The instant a boundary falls on (moved forward out of a gap, first of a fold)."""
        first = wall.replace(tzinfo=self.zone)
        if first.utcoffset() == wall.replace(tzinfo=self.zone, fold=1).utcoffset():
            return first.timestamp()
        return _transition_instant(wall, self.zone)

    def _plain(self, wall: datetime.datetime) -> bool:
        """Whether a wall time is outside any clock change (exists once)."""
        offset = self.zone.utcoffset
        return offset(wall) == offset(wall.replace(fold=1))

    def _empty(self, wall: datetime.datetime) -> bool:
        """Whether a period vanishes in a clock change (hourly 02:00 on a spring-forward day)."""
        if self._plain(wall):
            return False
        return self.instant(wall) >= self.instant(self.following(wall))

    def _walls(
        self, first: datetime.datetime, last: datetime.datetime
    ) -> Iterator[datetime.datetime]:
        """The aligned, non-empty period starts from `first` to `last` inclusive."""
        wall = first
        while wall <= last:
            if self.unit == "hourly" and self._steady_day(wall):
                # A day without clock change: its hours go without checking one by one.
                day_end = min(wall.replace(hour=0) + _DAY, last + _HOUR)
                while wall < day_end:
                    yield wall
                    wall += _HOUR
                continue
            if not self._empty(wall):
                yield wall
            wall = self.following(wall)

    def _steady_day(self, wall: datetime.datetime) -> bool:
        """Whether the local day holding `wall` has one offset throughout (no clock change;
        two changes that cancel within one day are not known in any zone)."""
        offset = self.zone.utcoffset
        start = wall.replace(hour=0)
        end = start + _DAY
        found = offset(start)
        return (
            offset(start.replace(fold=1)) == found
            and offset(end) == found
            and offset(end.replace(fold=1)) == found
        )

    # -- keys --------------------------------------------------------------------------------

    def last_wall(self, at: float) -> datetime.datetime | None:
        """The start of the latest complete period at the instant `at`, or None."""
        wall = self.floor(datetime.datetime.fromtimestamp(at, self.zone).replace(tzinfo=None))
        if self.end is not None and wall >= self.end:
            wall = self.preceding(self.end)
        while wall >= self.start and (self.instant(self.following(wall)) > at or self._empty(wall)):
            wall = self.preceding(wall)
        return wall if wall >= self.start else None

    def keys(self, now: float) -> list[str]:
        last = self.last_wall(now)
        if last is None:
            return []
        return [self.format(wall) for wall in self._walls(self.start, last)]

    def parse(self, key: str) -> datetime.datetime:
        """The period start a key names; PartitionError unless well-formed, aligned, in range."""
        try:
            wall = datetime.datetime.strptime(key, self.fmt)
        except (ValueError, TypeError):
            raise self._refuse(key, f"expected a {_PERIOD[self.unit]} as {self.fmt}") from None
        if self.format(wall) != key:
            raise self._refuse(key, f"expected {self.format(wall)!r} ({self.fmt})")
        if self.floor(wall) != wall:
            raise self._refuse(key, f"not the start of a {_PERIOD[self.unit]}{self._start_day()}")
        if wall < self.start:
            raise self._refuse(key, f"before the first partition {self.format(self.start)}")
        if self.end is not None and wall >= self.end:
            raise self._refuse(key, f"at or after the end {self.format(self.end)}")
        if self._empty(wall):
            raise self._refuse(key, f"the clocks skip it in {self.timezone}")
        return wall

    def _start_day(self) -> str:
        if self.unit == "weekly":
            return f" (weeks start on {_DAYS[self.day_of_week]})"
        return " (the 1st)" if self.unit == "monthly" else ""

    def check(self, key: str, now: float) -> None:
        self._complete(key, self.parse(key), now)

    def _complete(self, key: str, wall: datetime.datetime, now: float) -> None:
        ends = self.instant(self.following(wall))
        if ends > now:
            when = datetime.datetime.fromtimestamp(ends, self.zone).isoformat(sep=" ")
            raise self._refuse(key, f"not complete yet (it ends at {when})")

    def key_range(self, first: str, last: str, now: float) -> list[str]:
        low, high = self.parse(first), self.parse(last)
        if low > high:
            raise errors.PartitionError(
                f"partition range {first!r}..{last!r} of {self.label}: "
                f"{first!r} comes after {last!r}"
            )
        self._complete(last, high, now)
        return [self.format(wall) for wall in self._walls(low, high)]

    def window(self, key: str) -> tuple[datetime.datetime, datetime.datetime]:
        wall = self.parse(key)
        return (
            datetime.datetime.fromtimestamp(self.instant(wall), self.zone),
            datetime.datetime.fromtimestamp(self.instant(self.following(wall)), self.zone),
        )

    def last_complete(self, at: datetime.datetime) -> str | None:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(f"last_complete needs an aware datetime (got {at.isoformat()})")
        wall = self.last_wall(at.timestamp())
        return None if wall is None else self.format(wall)


_STEP = {"hourly": _HOUR, "daily": _DAY, "weekly": _WEEK}


def _transition_instant(wall: datetime.datetime, zone: zoneinfo.ZoneInfo) -> float:
    """A wall time at a clock change: its first occurrence, or the end of the gap it is in."""
    first = wall.replace(tzinfo=zone, fold=0)
    t0, t1 = first.timestamp(), wall.replace(tzinfo=zone, fold=1).timestamp()
    if datetime.datetime.fromtimestamp(t0, zone).replace(tzinfo=None) == wall:
        return min(t0, t1)
    # In a gap: the instant the offset changes, between the two readings (whole seconds).
    after = datetime.datetime.fromtimestamp(max(t0, t1), zone).utcoffset()
    lo, hi = int(min(t0, t1)), int(max(t0, t1)) + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if datetime.datetime.fromtimestamp(mid, zone).utcoffset() == after:
            hi = mid
        else:
            lo = mid + 1
    return float(lo)


# -- factories ----------------------------------------------------------------------------


def _time_partitions(
    unit: str,
    start: str,
    end: str | None,
    timezone: str,
    fmt: str | None,
    day_of_week: int = 0,
) -> TimePartitions:
    what = f"{unit} partitions from {start!r}"
    fmt = _FORMATS[unit] if fmt is None else fmt
    zone = _zone(what, timezone)
    probe = TimePartitions(unit, datetime.datetime(2000, 1, 1), None, zone, fmt, day_of_week)
    first = _wall(what, "start", start, fmt)
    if probe.floor(first) != first:
        first = probe.following(probe.floor(first))
    last = None if end is None else probe.floor(_wall(what, "end", end, fmt))
    if last is not None and last <= first:
        raise errors.DefinitionError(f"{what}: end {end!r} leaves no whole {_PERIOD[unit]}")
    made = TimePartitions(unit, first, last, zone, fmt, day_of_week)
    _check_format(what, made)
    return made


def _zone(what: str, timezone: str) -> str:
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise errors.DefinitionError(f"{what}: unknown time zone {timezone!r}") from None
    return timezone


def _wall(what: str, field: str, text: str, fmt: str) -> datetime.datetime:
    if not isinstance(text, str):
        raise errors.DefinitionError(f"{what}: {field} must be a string (got {text!r})")
    found = _parse_wall(text, fmt)
    if found is None:
        raise errors.DefinitionError(
            f"{what}: {field} {text!r} is not a naive local time as {fmt} or ISO 8601"
        )
    return found


def _parse_wall(text: str, fmt: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(text, fmt)
    except ValueError:
        pass
    try:
        found = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return found if found.tzinfo is None else None


def _check_format(what: str, made: TimePartitions) -> None:
    """The format must name each period once: formatting then parsing gives it back."""
    second = made.following(made.start)
    for wall in (made.start, second):
        key = made.format(wall)
        try:
            back = datetime.datetime.strptime(key, made.fmt)
        except ValueError:
            back = None
        if back != wall:
            raise errors.DefinitionError(
                f"{what}: format {made.fmt!r} does not name each {_PERIOD[made.unit]} "
                f"({wall.isoformat()} gives {key!r})"
            )


def hourly_partitions(
    start: str, *, end: str | None = None, timezone: str = "UTC", fmt: str | None = None
) -> PartitionsDef:
    """One partition per local hour; keys `%Y-%m-%d-%H:%M` unless `fmt`."""
    return _time_partitions("hourly", start, end, timezone, fmt)


def daily_partitions(
    start: str, *, end: str | None = None, timezone: str = "UTC", fmt: str | None = None
) -> PartitionsDef:
    """One partition per local day; keys `%Y-%m-%d` unless `fmt`."""
    return _time_partitions("daily", start, end, timezone, fmt)


def weekly_partitions(
    start: str,
    *,
    end: str | None = None,
    timezone: str = "UTC",
    fmt: str | None = None,
    day_of_week: int = 0,
) -> PartitionsDef:
    """One partition per week starting on `day_of_week` (0 Monday .. 6 Sunday); keys are
    the week's first day, `%Y-%m-%d` unless `fmt`."""
    if isinstance(day_of_week, bool) or day_of_week not in range(7):
        raise errors.DefinitionError(
            f"weekly partitions from {start!r}: day_of_week must be 0 (Monday) to 6 (Sunday), "
            f"got {day_of_week!r}"
        )
    return _time_partitions("weekly", start, end, timezone, fmt, day_of_week)


def monthly_partitions(
    start: str, *, end: str | None = None, timezone: str = "UTC", fmt: str | None = None
) -> PartitionsDef:
    """One partition per month; keys are the 1st, `%Y-%m-%d` unless `fmt` (e.g. `%Y-%m`)."""
    return _time_partitions("monthly", start, end, timezone, fmt)


def static_partitions(keys: Sequence[str]) -> PartitionsDef:
    """A fixed list of keys: unique, non-empty, printable, at most 255 characters each."""
    if isinstance(keys, str) or not isinstance(keys, Sequence):
        raise errors.DefinitionError(
            f"static partitions: keys must be a list of strings ({keys!r})"
        )
    seen: set[str] = set()
    for key in keys:
        _check_static_key(key, seen)
        seen.add(key)
    if not keys:
        raise errors.DefinitionError("static partitions: the list of keys is empty")
    return StaticPartitions(tuple(keys))


def _check_static_key(key: object, seen: set[str]) -> None:
    if not isinstance(key, str) or not key:
        raise errors.DefinitionError(f"static partitions: key {key!r} is not a non-empty string")
    if key in seen:
        raise errors.DefinitionError(f"static partitions: key {key!r} is listed twice")
    if len(key) > _MAX_STATIC_KEY:
        raise errors.DefinitionError(
            f"static partitions: key {key[:40]!r}... is longer than {_MAX_STATIC_KEY} characters"
        )
    if not key.isprintable():
        raise errors.DefinitionError(f"static partitions: key {key!r} holds a control character")


# -- descriptions -------------------------------------------------------------------------


def from_description(data: Mapping[str, Any]) -> PartitionsDef:
    """The partitions a `describe()` made; ValueError naming the field that is wrong."""
    if not isinstance(data, Mapping):
        raise ValueError(f"partitions: expected an object, got {type(data).__name__}")
    kind = data.get("type")
    try:
        if kind == "static":
            return static_partitions(_field(data, "keys", list))
        if kind in _FORMATS:
            return _time_from(str(kind), data)
    except errors.DefinitionError as exc:
        raise ValueError(f"partitions: {exc}") from None
    raise ValueError(f"partitions: field 'type' must be one of static, {', '.join(_FORMATS)}")


def _time_from(kind: str, data: Mapping[str, Any]) -> PartitionsDef:
    end = data.get("end")
    if end is not None and not isinstance(end, str):
        raise ValueError(f"partitions: field 'end' has the wrong type ({end!r})")
    start, zone, fmt = (_field(data, key, str) for key in ("start", "timezone", "format"))
    if kind != "weekly":
        return _time_partitions(kind, start, end, zone, fmt)
    return weekly_partitions(
        start, end=end, timezone=zone, fmt=fmt, day_of_week=_field(data, "day_of_week", int)
    )


def _field(data: Mapping[str, Any], key: str, kind: type) -> Any:
    if key not in data:
        raise ValueError(f"partitions: missing field '{key}'")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"partitions: field '{key}' has the wrong type ({value!r})")
    return value
