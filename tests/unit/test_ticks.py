"""Tick times across real daylight-saving transitions, catch-up plans, bad crons and zones."""

from __future__ import annotations

import datetime
import itertools

import pytest

from vigil.scheduling import cron, ticks


def at(zone: str, local: str) -> float:
    """The instant of an unambiguous local time (first occurrence if repeated)."""
    return datetime.datetime.fromisoformat(local).replace(tzinfo=cron.parse_zone(zone)).timestamp()


def fired(expression: str, zone: str, start: str, count: int) -> list[str]:
    tz = cron.parse_zone(zone)
    times = ticks.preview(cron.parse_cron(expression), tz, at(zone, start), count)
    return [ticks.describe(t, tz) for t in times]


# spring forward: a skipped local time fires once, at the end of the gap -------------------
@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        (
            "America/New_York",
            "2026-03-07 12:00",
            ["2026-03-08 03:00:00-04:00", "2026-03-09 02:30:00-04:00"],
        ),
        (
            "Europe/Berlin",
            "2026-03-28 12:00",
            ["2026-03-29 03:00:00+02:00", "2026-03-30 02:30:00+02:00"],
        ),
        (
            "Australia/Sydney",
            "2026-10-03 12:00",
            ["2026-10-04 03:00:00+11:00", "2026-10-05 02:30:00+11:00"],
        ),
    ],
)
def test_a_daily_time_in_the_gap_fires_once_at_the_end_of_the_gap(
    zone: str, start: str, expected: list[str]
) -> None:
    assert fired("30 2 * * *", zone, start, 2) == expected


def test_several_skipped_times_collapse_into_one_tick_at_the_end_of_the_gap() -> None:
    assert fired("*/20 * * * *", "America/New_York", "2026-03-08 01:30", 4) == [
        "2026-03-08 01:40:00-05:00",
        "2026-03-08 03:00:00-04:00",
        "2026-03-08 03:20:00-04:00",
        "2026-03-08 03:40:00-04:00",
    ]


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("America/New_York", "2026-03-08 00:00"),
        ("Europe/Berlin", "2026-03-29 00:00"),
        ("Australia/Sydney", "2026-10-04 00:00"),
    ],
)
def test_an_hourly_schedule_fires_every_real_hour_across_spring_forward(
    zone: str, start: str
) -> None:
    times = ticks.preview(cron.parse_cron("0 * * * *"), cron.parse_zone(zone), at(zone, start), 5)
    assert [b - a for a, b in itertools.pairwise(times)] == [3600.0] * 4


# fall back: a repeated local time fires once for a daily schedule -------------------------
@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        (
            "America/New_York",
            "2026-10-31 12:00",
            ["2026-11-01 01:30:00-04:00", "2026-11-02 01:30:00-05:00"],
        ),
        (
            "Europe/Berlin",
            "2026-10-24 12:00",
            ["2026-10-25 02:30:00+02:00", "2026-10-26 02:30:00+01:00"],
        ),
        (
            "Australia/Sydney",
            "2026-04-04 12:00",
            ["2026-04-05 02:30:00+11:00", "2026-04-06 02:30:00+10:00"],
        ),
    ],
)
def test_a_daily_time_in_the_repeated_hour_fires_once(
    zone: str, start: str, expected: list[str]
) -> None:
    expression = "30 1 * * *" if zone == "America/New_York" else "30 2 * * *"
    assert fired(expression, zone, start, 2) == expected


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("America/New_York", "2026-11-01 00:00"),
        ("Europe/Berlin", "2026-10-25 01:00"),
        ("Australia/Sydney", "2026-04-05 01:00"),
    ],
)
def test_an_hourly_schedule_fires_every_real_hour_across_fall_back(zone: str, start: str) -> None:
    times = ticks.preview(cron.parse_cron("0 * * * *"), cron.parse_zone(zone), at(zone, start), 5)
    assert [b - a for a, b in itertools.pairwise(times)] == [3600.0] * 4


def test_a_quarter_hourly_schedule_fires_every_real_quarter_hour_in_the_repeated_hour() -> None:
    zone = "America/New_York"
    times = ticks.preview(
        cron.parse_cron("*/15 * * * *"), cron.parse_zone(zone), at(zone, "2026-11-01 00:50"), 12
    )
    assert [b - a for a, b in itertools.pairwise(times)] == [900.0] * 11


def test_a_tick_at_the_end_of_the_gap_is_not_repeated() -> None:
    zone = cron.parse_zone("America/New_York")
    every_minute = cron.parse_cron("* * * * *")
    gap_end = at("America/New_York", "2026-03-08 03:00")
    before = at("America/New_York", "2026-03-08 01:59")
    assert ticks.next_tick(every_minute, zone, before) == gap_end
    assert ticks.next_tick(every_minute, zone, gap_end) == gap_end + 60


def test_utc_has_no_transitions() -> None:
    assert fired("0 0 * * *", "UTC", "2026-03-08 12:00", 2) == [
        "2026-03-09 00:00:00+00:00",
        "2026-03-10 00:00:00+00:00",
    ]


def test_six_fields_put_the_seconds_first() -> None:
    assert fired("*/20 * * * * *", "UTC", "2026-01-01 00:00:00", 3) == [
        "2026-01-01 00:00:20+00:00",
        "2026-01-01 00:00:40+00:00",
        "2026-01-01 00:01:00+00:00",
    ]


def test_aliases_stand_for_their_five_field_forms() -> None:
    assert fired("@daily", "UTC", "2026-01-01 12:00", 1) == ["2026-01-02 00:00:00+00:00"]
    assert fired("@hourly", "UTC", "2026-01-01 12:30", 1) == ["2026-01-01 13:00:00+00:00"]


# bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "has 4 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("61 * * * *", "is not valid"),
        ("a b c d e", "is not valid"),
        ("0 0 30 2 *", "is not valid"),
        ("H * * * *", "is not valid"),
        ("", "has 0 fields"),
    ],
)
def test_a_bad_cron_is_refused_with_the_reason(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cron.parse_cron(expression)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../etc/passwd", "EST5EDT/x"])
def test_a_bad_zone_is_refused(zone: str) -> None:
    with pytest.raises(ValueError, match="time zone"):
        cron.parse_zone(zone)


# catch-up -------------------------------------------------------------------------------
HOURLY = cron.parse_cron("0 * * * *")


def due_after_downtime(hours: int, keep: int = 100) -> tuple[ticks.Due, float]:
    start = at("UTC", "2026-01-01 00:30")
    now = start + hours * 3600
    return ticks.due_ticks(HOURLY, cron.parse_zone("UTC"), start, now, keep), now


def test_due_ticks_are_those_after_the_last_tick_up_to_now() -> None:
    due, _ = due_after_downtime(3)
    assert due.total == 3
    assert [ticks.describe(t, cron.parse_zone("UTC"))[11:16] for t in due.times] == [
        "01:00",
        "02:00",
        "03:00",
    ]


def test_due_ticks_keep_only_the_most_recent_but_count_all() -> None:
    due, _ = due_after_downtime(10, keep=4)
    assert due.total == 10
    assert len(due.times) == 4


def test_catchup_latest_runs_the_most_recent_and_misses_the_others() -> None:
    due, now = due_after_downtime(3)
    plan = ticks.plan_catchup(due, now, ticks.Catchup.LATEST, 5, 60.0)
    assert plan.run == due.times[-1:]
    assert plan.missed == due.times[:-1]


def test_catchup_all_runs_up_to_max_catchup_ticks_the_most_recent_ones() -> None:
    due, now = due_after_downtime(8)
    plan = ticks.plan_catchup(due, now, ticks.Catchup.ALL, 5, 60.0)
    assert plan.run == due.times[-5:]
    assert plan.missed == due.times[:3]


def test_catchup_all_runs_every_tick_below_the_limit() -> None:
    due, now = due_after_downtime(3)
    plan = ticks.plan_catchup(due, now, ticks.Catchup.ALL, 5, 60.0)
    assert plan.run == due.times
    assert plan.missed == ()


def test_catchup_none_misses_every_late_tick() -> None:
    due, now = due_after_downtime(3)
    plan = ticks.plan_catchup(due, now, ticks.Catchup.NONE, 5, 60.0)
    assert plan.run == ()
    assert plan.missed == due.times


def test_catchup_none_runs_a_tick_that_is_on_time() -> None:
    due, now = due_after_downtime(3)
    on_time = due.times[-1] + 1.0
    plan = ticks.plan_catchup(due, on_time, ticks.Catchup.NONE, 5, 60.0)
    assert plan.run == due.times[-1:]
    assert plan.missed == due.times[:-1]
    assert now > on_time


def test_missed_ticks_beyond_the_kept_ones_are_counted_as_unrecorded() -> None:
    due, now = due_after_downtime(10, keep=4)
    plan = ticks.plan_catchup(due, now, ticks.Catchup.LATEST, 5, 60.0)
    assert plan.unrecorded == 6
    assert len(plan.missed) == 3


@pytest.mark.parametrize(
    ("expression", "step"), [("* * * * * *", 1.0), ("*/7 * * * *", 420.0), ("0 3 * * *", 86400.0)]
)
def test_a_gap_of_decades_costs_a_bounded_walk_and_keeps_the_latest_ticks_exact(
    expression: str, step: float
) -> None:
    """A per-second schedule whose last tick is from 1970 must not walk 1.8 billion ticks
    (it blocked the daemon's event loop): the last `keep` ticks are found from a window
    ending now, exactly, and the count says it is only a lower bound."""
    zone = cron.parse_zone("UTC")
    now = at("UTC", "2026-06-01 12:00:30")
    keep = 101

    calls = 0
    real = ticks.next_tick

    def counting(*args: object) -> float:
        nonlocal calls
        calls += 1
        return real(*args)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ticks, "next_tick", counting)
        due = ticks.due_ticks(cron.parse_cron(expression), zone, 0.0, now, keep)

    last = ticks.preview(cron.parse_cron(expression), zone, due.times[0] - 0.5, keep)
    assert list(due.times) == last
    assert due.times[-1] <= now < due.times[-1] + step
    assert due.following == ticks.next_tick(cron.parse_cron(expression), zone, now)
    assert not due.counted
    assert due.total >= keep
    assert calls < 20 * keep


def test_a_short_gap_is_still_counted_exactly() -> None:
    zone = cron.parse_zone("UTC")
    start = at("UTC", "2026-06-01 12:00:00")
    due = ticks.due_ticks(cron.parse_cron("* * * * *"), zone, start, start + 3600, 101)

    assert due.counted
    assert due.total == 60
    assert len(due.times) == 60
