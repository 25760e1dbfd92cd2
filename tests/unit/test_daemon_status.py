"""What `daemon status` and `liveness-check` say, and who counts as a live daemon."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.daemon.fakes import HeartbeatStore
from vigil import errors
from vigil.daemon import health, heartbeat, loop, presence, status, vitals
from vigil.storage import store as store_mod

H = health.Health
NOW = 10_000.0
HB = 1.0


def loop_beat(
    daemon_id: str, name: str, *, age: float = 0.5, pid: int = 7, **changes: Any
) -> store_mod.Heartbeat:
    fields: dict[str, Any] = {
        "name": name,
        "interval": 5.0,
        "timeout": 30.0,
        "state": loop.LoopState.IDLE,
        "iterations": 4,
        "failures": 0,
        "restarts": 0,
        "last_iteration_start": NOW - 3.0,
        "last_iteration_end": NOW - 2.0,
        "last_success": NOW - 2.0,
        "last_duration": 1.0,
        "errors": (),
        "consecutive_failures": 0,
        "started_at": NOW - 100,
    }
    fields.update(changes)
    identity = heartbeat.DaemonIdentity(daemon_id, "box", pid, NOW - 100)
    info = heartbeat.loop_info(loop.LoopStatistics(**fields), identity, HB)
    return store_mod.Heartbeat(daemon_id, name, "box", pid, NOW - age, info)


def supervisor_beat(
    daemon_id: str,
    *,
    age: float = 0.5,
    pid: int = 7,
    stopped: bool = False,
    owned: dict[str, int] | None = None,
    host: str = "box",
) -> store_mod.Heartbeat:
    identity = heartbeat.DaemonIdentity(daemon_id, host, pid, NOW - 100)
    info = heartbeat.supervisor_info("running", ["a"], identity, HB, owned=owned)
    info["stopped"] = stopped
    return store_mod.Heartbeat(daemon_id, "supervisor", host, pid, NOW - age, info)


def failing(daemon_id: str, name: str) -> store_mod.Heartbeat:
    error = loop.LoopError(NOW - 1, "RuntimeError", "planned failure 2")
    return loop_beat(
        daemon_id, name, consecutive_failures=1, failures=1, errors=(error,), restarts=1
    )


# which rows ---------------------------------------------------------------------------
def test_rows_show_the_newest_daemon_not_the_dead_ones() -> None:
    old = [supervisor_beat("old", age=500, pid=1), loop_beat("old", "a", age=500, pid=1)]
    new = [loop_beat("new", "b"), supervisor_beat("new"), loop_beat("new", "a")]
    found = status.rows([*old, *new], NOW, HB)
    assert [(r.daemon_id, r.loop) for r in found] == [
        ("new", "supervisor"),
        ("new", "a"),
        ("new", "b"),
    ]


def test_rows_also_show_another_live_daemon() -> None:
    beats = [supervisor_beat("one", age=0.2, pid=1), supervisor_beat("two", age=0.5, pid=2)]
    assert [r.daemon for r in status.rows(beats, NOW, HB)] == ["box:1", "box:2"]


def test_a_stopped_daemon_is_still_shown_when_it_is_the_newest() -> None:
    found = status.rows([supervisor_beat("d", age=60, stopped=True)], NOW, HB)
    assert [(r.loop, r.health) for r in found] == [("supervisor", H.STOPPED)]


def test_a_row_carries_ages_the_daemon_and_the_last_error() -> None:
    [row] = status.rows([failing("d", "flaky")], NOW, HB)
    assert row.health is H.FAILING
    assert (row.last_iteration_age, row.heartbeat_age) == (2.0, 0.5)
    assert (row.daemon, row.last_error, row.restarts) == (
        "box:7",
        "RuntimeError: planned failure 2",
        1,
    )
    data = status.row_dict(row)
    assert data["state"] == "failing"
    assert "health" not in data
    json.dumps(data)


def test_the_table_has_one_line_a_loop() -> None:
    text = status.table(status.rows([supervisor_beat("d"), failing("d", "flaky")], NOW, HB))
    header, sup, flaky = text.split("\n\n")[0].splitlines()
    assert header.split()[:2] == ["LOOP", "STATE"]
    assert sup.split()[:3] == ["supervisor", "healthy", "-"]
    assert "RuntimeError: planned failure 2" in flaky
    assert "1 failed iteration in a row" in flaky
    assert status.table([]) == "no heartbeats: no daemon has run on this store"


# many daemons: who owns what -----------------------------------------------------------
def test_the_supervisor_info_carries_every_kind_owned_and_reads_back() -> None:
    identity = heartbeat.DaemonIdentity("d", "box", 7, NOW - 100)
    info = heartbeat.supervisor_info("running", [], identity, HB, owned={"schedule": 3})
    assert info["owned"] == {
        "schedule": 3,
        "sensor": 0,
        "monitor": 0,
        "retries": 0,
        "retention": 0,
        "backfills": 0,
    }
    assert vitals.owned_from_info(json.loads(json.dumps(info))) == info["owned"]
    assert vitals.owned_from_info(heartbeat.supervisor_info("running", [], identity, HB)) is None
    assert vitals.started_from_info(info) == NOW - 100


def test_the_daemons_table_lists_each_daemon_with_what_it_owns() -> None:
    beats = [
        supervisor_beat("one", pid=1, owned={"schedule": 2, "monitor": 8, "retries": 1}),
        loop_beat("one", "scheduler", pid=1),
        loop_beat("one", "monitor", pid=1),
        supervisor_beat("two", pid=2, age=0.8, owned={"schedule": 1, "monitor": 8}),
        loop_beat("two", "scheduler", pid=2, age=0.8),
    ]
    loops, daemons = status.table(status.rows(beats, NOW, HB)).split("\n\n")
    assert len(loops.splitlines()) == 6  # the header and five rows
    header, one, two = daemons.splitlines()
    assert header.split() == ["DAEMON", "STATE", "STARTED", "HEARTBEAT", "LOOPS", "OWNS"]
    assert one.split()[:2] == ["box:1", "healthy"]
    assert one.split()[4:] == [
        "0.5s",
        "ago",
        "2",
        "schedule",
        "2,",
        "monitor",
        "8,",
        "retries",
        "1",
    ]
    assert two.split()[4:] == ["0.8s", "ago", "1", "schedule", "1,", "monitor", "8"]


def test_a_row_dict_carries_the_start_and_the_owned_units() -> None:
    owned = {"schedule": 2, "sensor": 1}
    sup, a = status.rows([supervisor_beat("d", owned=owned), loop_beat("d", "a")], NOW, HB)
    data = status.row_dict(sup)
    assert data["started_at"] == NOW - 100
    assert {k: v for k, v in data["owned"].items() if v} == owned
    assert status.row_dict(a)["owned"] is None


def test_a_stopped_daemon_owns_nothing_and_an_old_one_cannot_tell() -> None:
    [stopped] = status.rows([supervisor_beat("d", stopped=True, owned={"sensor": 1})], NOW, HB)
    assert stopped.owned is None
    assert status.owned_text(stopped.owned) == "-"
    assert status.owned_text({"schedule": 0, "sensor": 0}) == "none"
    assert status.owned_text({"sensor": 2, "schedule": 1}) == "schedule 1, sensor 2"


def test_changes_tell_apart_the_same_loop_of_two_daemons_and_a_new_share() -> None:
    first = status.rows(
        [loop_beat("one", "a", pid=1), supervisor_beat("two", pid=2, owned={"schedule": 1})],
        NOW,
        HB,
    )
    seen, changed = status.changes({}, first)
    assert len(changed) == 2
    second = status.rows(
        [
            loop_beat("one", "a", pid=1),
            loop_beat("two", "a", pid=2),
            supervisor_beat("two", pid=2, owned={"schedule": 2}),
        ],
        NOW,
        HB,
    )
    _, changed = status.changes(seen, second)
    assert [(r.daemon_id, r.loop) for r in changed] == [("two", "supervisor"), ("two", "a")]
    assert status.change_line(changed[0], NOW).endswith("(box:2)  owns: schedule 2")


# --follow ----------------------------------------------------------------------------
def test_changes_report_state_error_and_daemon_changes_only() -> None:
    first = status.rows([loop_beat("d", "a"), loop_beat("d", "b")], NOW, HB)
    seen, changed = status.changes({}, first)
    assert [r.loop for r in changed] == ["a", "b"]
    seen, changed = status.changes(seen, first)
    assert changed == []
    second = status.rows([failing("d", "a"), loop_beat("d", "b", age=0.9)], NOW, HB)
    seen, changed = status.changes(seen, second)
    assert [(r.loop, r.health) for r in changed] == [("a", H.FAILING)]
    restarted = status.rows([loop_beat("d2", "b")], NOW, HB)
    _, changed = status.changes(seen, restarted)
    assert [r.daemon_id for r in changed] == ["d2"]
    line = status.change_line(second[0], NOW)
    assert "  a  failing  " in line
    assert line.endswith("(box:7)  last error: RuntimeError: planned failure 2")


# liveness ----------------------------------------------------------------------------
def test_liveness_is_ok_while_every_row_is_live() -> None:
    beats = [supervisor_beat("d"), loop_beat("d", "a"), failing("d", "b")]
    assert status.liveness(status.rows(beats, NOW, HB)) == (
        True,
        "ok: daemon box:7, 2 loops live (1 failing)",
    )


@pytest.mark.parametrize(
    ("beats", "line"),
    [
        ([], "no heartbeats: no daemon has run on this store"),
        (
            [supervisor_beat("d", age=4.0)],
            "the daemon on box:7 is down: no heartbeat for 4.0s (over 3 x 1s)",
        ),
        (
            [supervisor_beat("d", stopped=True)],
            "the daemon on box:7 is stopped: shut down 0.5s ago",
        ),
        (
            [
                supervisor_beat("d"),
                loop_beat("d", "q", state=loop.LoopState.RUNNING, last_iteration_start=NOW - 31),
            ],
            "loop q on box:7 is hung: iteration running for 31s, past its 30s timeout",
        ),
    ],
)
def test_liveness_fails_with_one_line(beats: list[store_mod.Heartbeat], line: str) -> None:
    assert status.liveness(status.rows(beats, NOW, HB)) == (False, line)


def test_liveness_any_is_ok_while_one_daemon_is_live() -> None:
    beats = [
        supervisor_beat("dead", pid=1, age=4.0),
        supervisor_beat("live", pid=2, age=5.0),  # newer heartbeats, then killed
        loop_beat("live", "a", pid=2, age=0.5),
    ]
    assert status.liveness_any(status.rows(beats, NOW, HB)) == (
        False,
        "no daemon of this instance is live: "
        "the daemon on box:2 is down: no heartbeat for 5.0s (over 3 x 1s)",
    )
    beats.append(supervisor_beat("other", pid=3))
    assert status.liveness_any(status.rows(beats, NOW, HB)) == (
        True,
        "ok: 1 of 2 daemons live; daemon box:3, 0 loops live",
    )
    assert status.liveness_any([]) == (False, "no heartbeats: no daemon has run on this store")


def test_this_daemon_is_the_one_on_this_host_or_with_this_pid() -> None:
    here = supervisor_beat("here", pid=1, host="here")
    there = supervisor_beat("there", pid=2, host="there")
    assert status.this_daemon([here, there], "here", None) == [here]
    assert status.this_daemon([here, there], "here", 1) == [here]
    assert status.this_daemon([here, there], "here", 2) == []
    assert status.this_daemon([here, there], "elsewhere", None) == [here, there]
    missing = "no heartbeats of a daemon with pid 2 on here"
    assert status.liveness([], missing) == (False, missing)


# one daemon per store ----------------------------------------------------------------
async def test_a_second_daemon_is_refused_while_the_first_is_live() -> None:
    store = HeartbeatStore(
        [supervisor_beat("first", age=1.5, pid=4321), loop_beat("first", "a", pid=4321)]
    )
    me = heartbeat.DaemonIdentity("second", "box", 99, NOW)
    with pytest.raises(errors.DaemonAlreadyRunning) as caught:
        await presence.ensure_alone(store, me, NOW, HB)
    assert "box pid 4321" in str(caught.value)
    assert "last heartbeat 0.5s ago" in str(caught.value)


@pytest.mark.parametrize(
    "beats",
    [
        [],
        [supervisor_beat("gone", age=3.5), loop_beat("gone", "a", age=3.5)],  # stale
        [supervisor_beat("done", stopped=True)],  # shut down cleanly
        [supervisor_beat("me")],  # our own rows
    ],
)
async def test_stale_stopped_or_own_heartbeats_are_not_in_the_way(
    beats: list[store_mod.Heartbeat],
) -> None:
    me = heartbeat.DaemonIdentity("me", "box", 99, NOW)
    await presence.ensure_alone(HeartbeatStore(beats), me, NOW, HB)


def test_a_hung_daemon_is_still_live_and_in_the_way() -> None:
    hung = loop_beat("d", "q", state=loop.LoopState.RUNNING, last_iteration_start=NOW - 100)
    assert [b.daemon_id for b in presence.live_daemons([hung], NOW, HB)] == ["d"]
