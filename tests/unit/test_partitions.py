"""Partition keys: time zones and clock changes, month ends, leap days, weeks, static keys,
one-line errors, and the description that crosses processes."""

from __future__ import annotations

import datetime
import itertools
import json
import time
import zoneinfo

import hypothesis
import pytest
from hypothesis import strategies as st

from vigil import errors, partitions

UTC = datetime.UTC
LATER = datetime.datetime(2030, 1, 1, tzinfo=UTC).timestamp()


def at(text: str, zone: str = "UTC") -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(zone)).timestamp()


def hours(window: tuple[datetime.datetime, datetime.datetime] | None) -> float:
    assert window is not None
    return (window[1].timestamp() - window[0].timestamp()) / 3600


def test_daily_keys_and_windows_across_new_york_clock_changes() -> None:
    daily = partitions.daily_partitions("2024-03-08", timezone="America/New_York")
    keys = daily.keys(at("2024-03-12T00:00", "America/New_York"))
    assert keys == ["2024-03-08", "2024-03-09", "2024-03-10", "2024-03-11"]
    assert hours(daily.window("2024-03-10")) == 23  # spring forward
    assert hours(daily.window("2024-11-03")) == 25  # fall back
    assert hours(daily.window("2024-11-04")) == 24
    start, end = daily.window("2024-03-10")
    assert start.isoformat() == "2024-03-10T00:00:00-05:00"
    assert end.isoformat() == "2024-03-11T00:00:00-04:00"


def test_hourly_berlin_has_23_keys_in_spring_and_24_in_fall() -> None:
    hourly = partitions.hourly_partitions("2024-01-01-00:00", timezone="Europe/Berlin")
    keys = hourly.keys(at("2025-01-01T00:00", "Europe/Berlin"))
    spring = [k for k in keys if k.startswith("2024-03-31-")]
    fall = [k for k in keys if k.startswith("2024-10-27-")]
    assert len(spring) == 23
    assert "2024-03-31-02:00" not in spring
    assert spring[1:3] == ["2024-03-31-01:00", "2024-03-31-03:00"]
    assert len(fall) == 24
    assert hours(hourly.window("2024-03-31-01:00")) == 1  # 01:00 CET to 03:00 CEST
    assert hours(hourly.window("2024-10-27-02:00")) == 2  # the repeated hour is one key
    assert len(keys) == len(set(keys)) == 366 * 24 - 1
    with pytest.raises(errors.PartitionError, match="the clocks skip it in Europe/Berlin"):
        hourly.check("2024-03-31-02:00", LATER)


def test_hourly_last_complete_in_the_repeated_hour() -> None:
    hourly = partitions.hourly_partitions("2024-10-26-00:00", timezone="Europe/Berlin")
    # 02:30 the second time (CET, +01:00): the repeated hour 02:00 has not ended yet.
    second = datetime.datetime(2024, 10, 27, 1, 30, tzinfo=UTC)
    assert hourly.last_complete(second) == "2024-10-27-01:00"
    assert hourly.last_complete(datetime.datetime(2024, 10, 27, 2, 0, tzinfo=UTC)) == (
        "2024-10-27-02:00"
    )


def test_leap_day_and_month_ends() -> None:
    daily = partitions.daily_partitions("2024-02-27")
    assert daily.key_range("2024-02-28", "2024-03-01", LATER) == [
        "2024-02-28",
        "2024-02-29",
        "2024-03-01",
    ]
    with pytest.raises(errors.PartitionError, match="expected a day as %Y-%m-%d"):
        daily.check("2023-02-29", LATER)
    monthly = partitions.monthly_partitions("2024-01-31")
    # The first whole month starting at or after the start.
    assert monthly.keys(at("2024-06-01T00:00")) == [
        "2024-02-01",
        "2024-03-01",
        "2024-04-01",
        "2024-05-01",
    ]
    assert hours(monthly.window("2024-02-01")) == 29 * 24
    with pytest.raises(errors.PartitionError, match=r"not the start of a month \(the 1st\)"):
        monthly.check("2024-03-15", LATER)


def test_monthly_with_a_year_month_format_and_an_end() -> None:
    monthly = partitions.monthly_partitions("2023-11", end="2024-03", fmt="%Y-%m")
    assert monthly.keys(LATER) == ["2023-11", "2023-12", "2024-01", "2024-02"]
    with pytest.raises(errors.PartitionError, match="at or after the end 2024-03"):
        monthly.check("2024-03", LATER)


def test_weekly_starts_on_its_day() -> None:
    weekly = partitions.weekly_partitions("2024-01-03")
    assert weekly.keys(at("2024-02-01T00:00")) == ["2024-01-08", "2024-01-15", "2024-01-22"]
    sundays = partitions.weekly_partitions("2024-01-01", day_of_week=6)
    assert sundays.keys(at("2024-01-22T00:00")) == ["2024-01-07", "2024-01-14"]
    with pytest.raises(errors.PartitionError, match=r"weeks start on Sunday"):
        sundays.check("2024-01-08", LATER)


def test_only_complete_partitions_are_keys() -> None:
    daily = partitions.daily_partitions("2024-01-01")
    now = at("2024-01-03T12:00")
    assert daily.keys(now) == ["2024-01-01", "2024-01-02"]
    daily.check("2024-01-02", now)
    with pytest.raises(errors.PartitionError) as caught:
        daily.check("2024-01-03", now)
    assert str(caught.value) == (
        "partition '2024-01-03' is not a key of daily partitions from 2024-01-01 (UTC): "
        "not complete yet (it ends at 2024-01-04 00:00:00+00:00)"
    )
    assert daily.last_complete(datetime.datetime(2024, 1, 3, 0, 0, tzinfo=UTC)) == "2024-01-02"
    assert daily.last_complete(datetime.datetime(2024, 1, 1, 23, 59, tzinfo=UTC)) is None
    assert partitions.daily_partitions("2024-01-01", end="2024-01-03").keys(LATER) == [
        "2024-01-01",
        "2024-01-02",
    ]


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("2024-1-05", "expected '2024-01-05' (%Y-%m-%d)"),
        ("yesterday", "expected a day as %Y-%m-%d"),
        ("2023-12-31", "before the first partition 2024-01-01"),
        ("", "expected a day as %Y-%m-%d"),
    ],
)
def test_bad_keys_are_one_line(key: str, why: str) -> None:
    daily = partitions.daily_partitions("2024-01-01")
    with pytest.raises(errors.PartitionError) as caught:
        daily.check(key, LATER)
    assert str(caught.value).endswith(why)
    assert "\n" not in str(caught.value)


def test_bad_ranges() -> None:
    daily = partitions.daily_partitions("2024-01-01")
    with pytest.raises(errors.PartitionError, match="'2024-02-01' comes after '2024-01-01'"):
        daily.key_range("2024-02-01", "2024-01-01", LATER)
    with pytest.raises(errors.PartitionError, match="not complete yet"):
        daily.key_range("2024-01-01", "2029-12-31", at("2029-12-31T12:00"))
    static = partitions.static_partitions(["eu", "us", "asia"])
    assert static.key_range("eu", "us", LATER) == ["eu", "us"]
    with pytest.raises(errors.PartitionError, match="'asia' comes after 'us'"):
        static.key_range("asia", "us", LATER)
    with pytest.raises(errors.PartitionError, match="expected one of eu, us, asia"):
        static.check("mars", LATER)


def test_static_keys() -> None:
    static = partitions.static_partitions(["eu", "us"])
    assert static.keys(0) == ["eu", "us"]
    assert static.window("eu") is None
    assert static.last_complete(datetime.datetime.now(UTC)) is None
    for bad, why in [
        (["eu", "eu"], "listed twice"),
        ([""], "not a non-empty string"),
        (["a\nb"], "control character"),
        (["x" * 256], "longer than 255"),
        ([], "empty"),
        ("eu", "must be a list"),
    ]:
        with pytest.raises(errors.DefinitionError, match=why):
            partitions.static_partitions(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: partitions.daily_partitions("2024-02-01", end="2024-01-01"), "leaves no whole"),
        (lambda: partitions.daily_partitions("2024-01-01", timezone="Mars/Base"), "unknown time"),
        (lambda: partitions.daily_partitions("soon"), "start 'soon' is not a naive local time"),
        (lambda: partitions.hourly_partitions("2024-01-01", fmt="%Y-%m-%d"), "does not name"),
        (lambda: partitions.weekly_partitions("2024-01-01", day_of_week=7), "day_of_week"),
    ],
)
def test_bad_definitions_name_the_partitions(make: object, why: str) -> None:
    with pytest.raises(errors.DefinitionError, match=why) as caught:
        make()  # type: ignore[operator]
    assert "partitions" in str(caught.value)


@pytest.mark.parametrize(
    "made",
    [
        partitions.hourly_partitions("2024-01-01-00:00", timezone="Europe/Berlin"),
        partitions.daily_partitions("2024-01-01", end="2025-01-01", timezone="America/New_York"),
        partitions.weekly_partitions("2024-01-01", day_of_week=2),
        partitions.monthly_partitions("2024-01", fmt="%Y-%m"),
        partitions.static_partitions(["a", "b"]),
    ],
)
def test_description_round_trip(made: partitions.PartitionsDef) -> None:
    again = partitions.from_description(json.loads(json.dumps(made.describe())))
    assert again == made
    assert again.keys(LATER)[:50] == made.keys(LATER)[:50]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"type": "yearly"}, "field 'type'"),
        ({"type": "daily", "timezone": "UTC", "format": "%Y-%m-%d"}, "missing field 'start'"),
        ({"type": "static", "keys": "ab"}, "field 'keys' has the wrong type"),
        ({"type": "daily", "start": "x", "timezone": "UTC", "format": "%Y"}, "start 'x'"),
    ],
)
def test_bad_descriptions(data: dict[str, object], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        partitions.from_description(data)


def test_ten_thousand_hourly_keys_are_cheap() -> None:
    """Not a timing assertion: prints the figure (the brief: well under 50 ms)."""
    hourly = partitions.hourly_partitions("2024-01-01-00:00", timezone="Europe/Berlin")
    began = time.perf_counter()
    keys = hourly.keys(at("2025-02-20T00:00"))
    print(f"{len(keys)} hourly keys in {(time.perf_counter() - began) * 1000:.1f} ms")
    assert len(keys) == 9984


ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Santiago",  # clocks change at midnight
    "Australia/Lord_Howe",  # a 30-minute change
    "Pacific/Apia",  # skipped a whole day (2011-12-30)
    "Asia/Kolkata",
]


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.example("Pacific/Apia", "daily", datetime.date(2011, 12, 1), 60)
@hypothesis.example("Australia/Lord_Howe", "hourly", datetime.date(2024, 9, 20), 60)
@hypothesis.example("America/Santiago", "daily", datetime.date(2024, 8, 20), 300)
@hypothesis.example("America/Santiago", "hourly", datetime.date(2024, 8, 20), 60)
@hypothesis.example("Europe/Berlin", "hourly", datetime.date(2024, 10, 1), 60)
@hypothesis.given(
    zone=st.sampled_from(ZONES),
    unit=st.sampled_from(["hourly", "daily", "weekly", "monthly"]),
    start=st.dates(datetime.date(1995, 1, 1), datetime.date(2030, 1, 1)),
    span_days=st.integers(1, 800),
)
def test_windows_tile_time_without_gap_or_overlap(
    zone: str, unit: str, start: datetime.date, span_days: int
) -> None:
    factory = getattr(partitions, f"{unit}_partitions")
    made = factory(start.isoformat(), timezone=zone)
    first = datetime.datetime.combine(start, datetime.time(), zoneinfo.ZoneInfo(zone))
    span = span_days if unit != "hourly" else min(span_days, 60)
    now = first.timestamp() + span * 86400
    keys = made.keys(now)
    windows = [made.window(k) for k in keys]
    assert len(set(keys)) == len(keys)
    for (begin, end), key in zip(windows, keys, strict=True):
        assert begin < end, key
        assert end.timestamp() <= now
    for (_, end), (begin, _) in itertools.pairwise(windows):
        assert end.timestamp() == begin.timestamp()
    if keys:
        made.check(keys[-1], now)
        last_end = windows[-1][1]
        assert made.last_complete(last_end) == keys[-1]
        assert made.key_range(keys[0], keys[-1], now) == keys
