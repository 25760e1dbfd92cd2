"""`vigil schedule ...` and `vigil sensor ...`: state, ticks, previews and a dry run.

The CLI asks the code locations (each in its own evaluation process, `cli/workspace.py`)
what they define, so `list` shows what the code defines beside what the store keeps; an
instigator the store knows but the code no longer defines is listed as orphaned (and can
still be stopped), never dropped silently; while a code location fails to load, such an
instigator is listed as unknown (the failed location may define it), with a warning.
The workspace, the loops' helpers and the cron logic are imported by the commands that use
them, not by `--help`.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

from vigil import display, errors, ticks
from vigil.cli import common, output
from vigil.evaluation import messages
from vigil.storage import store as store_mod

if TYPE_CHECKING:
    from vigil import partitions as partitions_mod
    from vigil.cli import workspace
    from vigil.daemon.loops import instigation

R = TypeVar("R")
K = ticks.InstigatorKind
St = ticks.InstigatorStatus


def _with_store(action: Callable[[store_mod.Store], Awaitable[R]]) -> R:
    st = common.state()

    async def main() -> R:
        async with common.opened_store(st.settings) as store:
            return await action(store)

    return common.run_async(main)


def _utc(instant: float | None) -> str:
    if instant is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(instant, datetime.UTC)
    return moment.isoformat(sep=" ", timespec="seconds")


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _status_word(default: St, state: ticks.InstigatorState | None) -> str:
    from vigil.daemon.loops import instigation

    running = instigation.is_running(default, state)
    word = "running" if running else "stopped"
    if state is None or state.status is St.DEFAULT:
        return f"{word} (default)"
    return word


@dataclasses.dataclass(frozen=True)
class _Listed:
    """One row of `list`: typed values for --json (`detail`), their text for the table."""

    name: str
    status: str
    detail: dict[str, Any]
    cells: dict[str, str] = dataclasses.field(default_factory=dict)


async def _states(store: store_mod.InstigationStore, kind: K) -> dict[str, ticks.InstigatorState]:
    return {s.name: s for s in await store.list_instigators() if s.kind is kind}


class _Stored(store_mod.InstigationStore, store_mod.LeaseReader, Protocol):
    """What `list` reads: the instigators' states and who holds their leases."""


async def _states_and_owners(
    store: _Stored, kind: K
) -> tuple[dict[str, ticks.InstigatorState], dict[str, str]]:
    return await _states(store, kind), await _owners(store, kind)


async def _owners(store: store_mod.LeaseReader, kind: K) -> dict[str, str]:
    """host:pid of the daemon holding each instigator's lease (its unit is the instigator's
    id), for the leases whose owner's membership has not expired."""
    now = time.time()
    members = await store.list_members()
    live = {m.daemon_id: f"{m.host}:{m.pid}" for m in members if m.expires_at >= now}
    return {
        lease.unit: live[lease.owner]
        for lease in await store.list_leases(f"{kind.value}:")
        if lease.owner in live
    }


def _orphans(
    kind: K, states: dict[str, ticks.InstigatorState], known: set[str], complete: bool
) -> list[_Listed]:
    """Stored instigators no loaded location defines: orphaned, or unknown while some
    location failed to load (`complete` false)."""
    word = "orphaned" if complete else "unknown"
    return [
        _Listed(ticks.split_id(name)[1], word, {"stored_status": state.status.value})
        for name, state in sorted(states.items())
        if name not in known
    ]


def _with_owners(kind: K, listed: Sequence[_Listed], owners: Mapping[str, str]) -> list[_Listed]:
    """Each row with its owner: the daemon holding its lease, or none ("-" in the table)."""
    return [_owned(i, owners.get(ticks.instigator_id(kind, i.name))) for i in listed]


def _owned(listed: _Listed, owner: str | None) -> _Listed:
    cells = {**listed.cells, "owner": owner or "-"}
    return dataclasses.replace(listed, detail={**listed.detail, "owner": owner}, cells=cells)


def _stored(state: ticks.InstigatorState | None) -> str | None:
    return None if state is None else state.status.value


def _print_listed(
    listed: Sequence[_Listed], columns: Sequence[str], keys: Sequence[str], as_json: bool
) -> None:
    """The rows as a table of `columns`; or as JSON, every row with every one of `keys`
    (null where a row has no value: an orphaned instigator's code is gone)."""
    if as_json:
        empty = dict.fromkeys(keys)
        output.emit([{**empty, "name": i.name, "status": i.status, **i.detail} for i in listed])
        return
    if not listed:
        click.echo("none defined")
        return
    rows = [("NAME", "STATUS", *(c.upper().replace("_", " ") for c in columns))]
    rows += [(i.name, i.status, *(i.cells.get(c, "") for c in columns)) for i in listed]
    click.echo(_table(rows))


def _set_status(kind: K, name: str, status: St, known: bool, as_json: bool) -> None:
    instigator = ticks.instigator_id(kind, name)

    async def action(store: instigation.LoopStore) -> None:
        if not known and not await store.list_instigators([instigator]):
            raise errors.NotFound(f"no {kind.value} named '{name}'")
        await store.set_instigator_status(instigator, kind, status, time.time())

    _with_store(action)
    if as_json:
        output.emit({"kind": kind.value, "name": name, "status": status.value.lower()})
    else:
        click.echo(f"{kind.value} {name} {status.value.lower()}")


def _print_ticks(
    found: Sequence[ticks.Tick], describe: Callable[[float], str], as_json: bool
) -> None:
    if as_json:
        output.emit([_tick_dict(t) for t in found])
        return
    if not found:
        click.echo("no ticks")
        return
    rows = [("TICK", "SCHEDULED", "STATUS", "RUNS", "CURSOR", "NOTE")]
    for t in found:
        note = (t.error or "").strip().splitlines()
        rows.append(
            (
                str(t.tick_id),
                describe(t.scheduled_time),
                t.status.value,
                ",".join(r[:8] for r in t.run_ids) or "-",
                display.printable(t.cursor or "-"),
                display.printable(note[-1] if note else "")[:100],
            )
        )
    click.echo(_table(rows))


def _tick_dict(t: ticks.Tick) -> dict[str, Any]:
    return {
        "tick_id": t.tick_id,
        "scheduled_time": output.instant(t.scheduled_time),
        "status": t.status.value,
        "run_ids": list(t.run_ids),
        "error": t.error,
        "cursor": t.cursor,
        "created_at": output.instant(t.created_at),
        "updated_at": output.instant(t.updated_at),
    }


# schedules ----------------------------------------------------------------------------------
@click.group("schedule")
def schedule_group() -> None:
    """Schedules: list, start, stop, preview their ticks, show their ticks."""


SCHEDULE_KEYS = ("cron", "timezone", "job", "location", "next_tick", "stored_status", "owner")


@schedule_group.command("list")
@output.option
@common.handle_errors
def list_schedules(as_json: bool) -> None:
    """Every schedule with its status and next tick; orphaned ones (code gone) too."""
    from vigil.cli import workspace

    locations = workspace.all_locations()
    states, owners = _with_store(lambda store: _states_and_owners(store, K.SCHEDULE))
    now = time.time()
    listed: list[_Listed] = []
    for location in locations:
        listed += [_schedule_row(location, data, states, now) for data in location.schedules]
    known = {ticks.instigator_id(K.SCHEDULE, n) for loc in locations for n in loc.names("schedule")}
    failures = [loc for loc in locations if loc.error is not None]
    listed += _orphans(K.SCHEDULE, states, known, complete=not failures)
    listed = _with_owners(K.SCHEDULE, listed, owners)
    columns = ("cron", "timezone", "job", "next_tick", "owner")
    _print_listed(listed, columns, SCHEDULE_KEYS, as_json)
    workspace.warn(failures)


def _schedule_row(
    location: workspace.Location,
    data: Mapping[str, Any],
    states: dict[str, ticks.InstigatorState],
    now: float,
) -> _Listed:
    from vigil.daemon.loops import instigation
    from vigil.scheduling import ticks as tick_times

    s = instigation.schedule_info(location.name, data)
    state = states.get(s.instigator)
    next_tick = tick_times.next_tick(s.cron, s.zone, now)
    cells = {
        "cron": s.cron.expression,
        "timezone": str(data["timezone"]),
        "job": str(data["job"]),
        "location": location.name,
    }
    detail = {**cells, "next_tick": output.instant(next_tick), "stored_status": _stored(state)}
    cells["next_tick"] = tick_times.describe(next_tick, s.zone)
    return _Listed(s.name, _status_word(s.default_status, state), detail, cells)


@schedule_group.command("start")
@click.argument("name")
@output.option
@common.handle_errors
def start_schedule(name: str, as_json: bool) -> None:
    """Run the schedule from now on (no catch-up of ticks before now)."""
    from vigil.cli import workspace

    workspace.locate("schedule", name)
    _set_status(K.SCHEDULE, name, St.RUNNING, True, as_json)


@schedule_group.command("stop")
@click.argument("name")
@output.option
@common.handle_errors
def stop_schedule(name: str, as_json: bool) -> None:
    """Stop the schedule (an orphaned one too)."""
    from vigil.cli import workspace

    known = workspace.lookup("schedule", name) is not None
    _set_status(K.SCHEDULE, name, St.STOPPED, known, as_json)


@schedule_group.command("preview")
@click.argument("name")
@click.option("--count", default=5, show_default=True, type=click.IntRange(1, 1000))
@output.option
@common.handle_errors
def preview(name: str, count: int, as_json: bool) -> None:
    """The schedule's next ticks, in its time zone and in UTC (and, for a job partitioned by
    time, the partition each targets unless the function names another)."""
    from vigil import partitions as partitions_mod
    from vigil.cli import workspace
    from vigil.daemon.loops import instigation
    from vigil.scheduling import ticks as tick_times

    location, data = workspace.locate("schedule", name)
    s = instigation.schedule_info(location.name, data)
    job = location.job(str(data["job"]))
    partitions = None if job is None else job.partitions_def()
    timed = partitions if isinstance(partitions, partitions_mod.TimePartitions) else None
    found = [
        (t, _partition_at(timed, t)) for t in tick_times.preview(s.cron, s.zone, time.time(), count)
    ]
    if as_json:
        output.emit(
            [
                {"time": output.instant(t), "timezone": s.zone.key, "partition": key}
                for t, key in found
            ]
        )
        return
    for t, key in found:
        line = f"{tick_times.describe(t, s.zone)}  ({_utc(t)} UTC)"
        if timed is not None:
            line += f"  partition {key if key is not None else '(none complete yet)'}"
        click.echo(line)


def _partition_at(partitions: partitions_mod.TimePartitions | None, t: float) -> str | None:
    """The partition a tick at `t` targets (None: the job is not partitioned by time, or
    no partition is complete yet)."""
    if partitions is None:
        return None
    return partitions.last_complete(datetime.datetime.fromtimestamp(t, datetime.UTC))


@schedule_group.command("ticks")
@click.argument("name")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1))
@output.option
@common.handle_errors
def schedule_ticks(name: str, limit: int, as_json: bool) -> None:
    """The schedule's latest ticks, newest first (an orphaned schedule's too)."""
    from vigil.cli import workspace
    from vigil.daemon.loops import instigation
    from vigil.scheduling import ticks as tick_times

    instigator = ticks.instigator_id(K.SCHEDULE, name)
    found = workspace.lookup("schedule", name)
    zone = instigation.schedule_info(found[0].name, found[1]).zone if found else None
    listed = _with_store(lambda store: store.list_ticks(instigator, limit=limit))

    def describe(t: float) -> str:
        return tick_times.describe(t, zone) if zone is not None else _utc(t)

    _print_ticks(listed, describe, as_json)


# sensors ------------------------------------------------------------------------------------
@click.group("sensor")
def sensor_group() -> None:
    """Sensors: list, start, stop, show ticks and cursors, test one without launching."""


SENSOR_KEYS = (
    "jobs",
    "minimum_interval",
    "watches",
    "location",
    "cursor",
    "stored_status",
    "owner",
)


@sensor_group.command("list")
@output.option
@common.handle_errors
def list_sensors(as_json: bool) -> None:
    """Every sensor with its status and cursor; orphaned ones (code gone) too."""
    from vigil.cli import workspace
    from vigil.daemon.loops import instigation

    locations = workspace.all_locations()
    states, owners = _with_store(lambda store: _states_and_owners(store, K.SENSOR))
    listed: list[_Listed] = []
    for location in locations:
        for data in location.sensors:
            s = instigation.sensor_info(location.name, data)
            state = states.get(s.instigator)
            detail = {
                "jobs": list(data["jobs"]),
                "minimum_interval": s.minimum_interval,
                "watches": s.run_status.value if s.run_status else None,
                "location": location.name,
                "cursor": state.cursor if state is not None else None,
                "stored_status": _stored(state),
            }
            status = _status_word(s.default_status, state)
            listed.append(_Listed(s.name, status, detail, _sensor_cells(detail)))
    known = {ticks.instigator_id(K.SENSOR, n) for loc in locations for n in loc.names("sensor")}
    failures = [loc for loc in locations if loc.error is not None]
    listed += _orphans(K.SENSOR, states, known, complete=not failures)
    listed = _with_owners(K.SENSOR, listed, owners)
    columns = ("jobs", "minimum_interval", "watches", "cursor", "owner")
    _print_listed(listed, columns, SENSOR_KEYS, as_json)
    workspace.warn(failures)


def _sensor_cells(detail: dict[str, Any]) -> dict[str, str]:
    return {
        "jobs": ",".join(detail["jobs"]) or "-",
        "minimum_interval": f"{detail['minimum_interval']:g}s",
        "watches": detail["watches"] or "-",
        "cursor": detail["cursor"] or "-",
    }


@sensor_group.command("start")
@click.argument("name")
@output.option
@common.handle_errors
def start_sensor(name: str, as_json: bool) -> None:
    """Run the sensor from now on."""
    from vigil.cli import workspace

    workspace.locate("sensor", name)
    _set_status(K.SENSOR, name, St.RUNNING, True, as_json)


@sensor_group.command("stop")
@click.argument("name")
@output.option
@common.handle_errors
def stop_sensor(name: str, as_json: bool) -> None:
    """Stop the sensor (an orphaned one too)."""
    from vigil.cli import workspace

    known = workspace.lookup("sensor", name) is not None
    _set_status(K.SENSOR, name, St.STOPPED, known, as_json)


@sensor_group.command("ticks")
@click.argument("name")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1))
@output.option
@common.handle_errors
def sensor_ticks(name: str, limit: int, as_json: bool) -> None:
    """The sensor's latest ticks, newest first."""
    instigator = ticks.instigator_id(K.SENSOR, name)
    listed = _with_store(lambda store: store.list_ticks(instigator, limit=limit))
    _print_ticks(listed, _utc, as_json)


@sensor_group.command("cursor")
@click.argument("name")
@click.option("--set", "new_cursor", default=None, help="Replace the cursor with this value.")
@click.option("--clear", is_flag=True, help="Forget the cursor.")
@output.option
@common.handle_errors
def cursor(name: str, new_cursor: str | None, clear: bool, as_json: bool) -> None:
    """Show the sensor's cursor, or set (--set V) or clear (--clear) it."""
    from vigil.cli import workspace

    instigator = ticks.instigator_id(K.SENSOR, name)
    if new_cursor is not None and clear:
        raise click.UsageError("give --set or --clear, not both")
    if new_cursor is not None or clear:
        workspace.locate("sensor", name)
        _with_store(
            lambda store: store.set_instigator_cursor(instigator, K.SENSOR, new_cursor, time.time())
        )
    states = _with_store(lambda store: store.list_instigators([instigator]))
    stored = states[0].cursor if states else None
    if as_json:
        output.emit({"sensor": name, "cursor": stored})
    else:
        click.echo(stored if stored is not None else "(none)")


@sensor_group.command("test")
@click.argument("name")
@click.option("--cursor", "given_cursor", default=None, help="Evaluate with this cursor.")
@output.option
@common.handle_errors
def test_sensor(name: str, given_cursor: str | None, as_json: bool) -> None:
    """Evaluate the sensor once, in its code location's process, and show what it asks for;
    launches nothing.

    The stored cursor is used (or --cursor) and left as it is. A run status sensor sees
    the events after its cursor (from the start of the log if it has none), at most 500.
    """
    answer = common.run_async(lambda: _test(name, given_cursor))
    if answer.error is not None:
        click.echo(answer.error.rstrip(), err=True)
        raise SystemExit(common.EXIT_FAILURE)
    if as_json:
        output.emit(_answer_dict(answer))
        return
    for r in answer.requests:
        key = display.printable(str(r.run_key))
        click.echo(f"run request: job {r.job} run_key {key} config {dict(r.run_config)}")
    if not answer.requests:
        click.echo(f"skipped: {answer.skip or 'no run requested'}")
    if answer.cursor_updated:
        click.echo(f"new cursor (not stored): {display.printable(str(answer.cursor))}")


def _answer_dict(answer: messages.Answer) -> dict[str, Any]:
    """What `sensor test --json` prints: the runs asked for, the skip reason, the cursor the
    sensor would store (null when it keeps the one it had)."""
    return {
        "run_requests": [r.to_json() for r in answer.requests],
        "skip": answer.skip,
        "cursor_updated": answer.cursor_updated,
        "cursor": answer.cursor if answer.cursor_updated else None,
    }


async def _test(name: str, given_cursor: str | None) -> messages.Answer:
    from vigil.cli import workspace
    from vigil.daemon.loops import instigation

    async with workspace.opened() as ws:
        location, data = await workspace.instigator_location(ws, "sensor", name)
        workspace.warn(ws.failures)
        s = instigation.sensor_info(location.name, data)
        async with common.opened_store(common.state().settings) as store:
            request = await _test_request(store, s, given_cursor)
        return await ws.ask(location.name, request, s.timeout)


async def _test_request(
    store: instigation.LoopStore, s: instigation.SensorInfo, given: str | None
) -> messages.Request:
    from vigil.daemon.loops import sensors as sensors_mod

    states = await store.list_instigators([s.instigator])
    stored = states[0].cursor if states else None
    current = given if given is not None else stored
    if s.run_status is None:
        previous = await store.instigator_runs(s.instigator, limit=1)
        last_key = previous[0].run_key if previous else None
        return messages.SensorRequest(s.name, current, last_key)
    after = int(current) if current else 0
    event_type = sensors_mod.END_EVENTS[s.run_status]
    items = []
    for event in await store.events_after(after, sensors_mod.EVENT_BATCH, [event_type]):
        run = await store.get_run(event.run_id)
        if not s.monitored_jobs or run.job_name in s.monitored_jobs:
            items.append(sensors_mod.run_status_item(run, event))
    return messages.RunStatusRequest(s.name, tuple(items))
