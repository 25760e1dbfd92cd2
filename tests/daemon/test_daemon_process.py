"""The real `vigil daemon run` process, watched through `vigil daemon status`, on SQLite and
PostgreSQL: healthy loops, a crashing loop restarted, a hung loop seen, SIGTERM, a second
daemon refused, liveness after a kill, SIGHUP, JSON logs, a second signal, `--follow`."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.acceptance.harness import Instance
from tests.daemon.process import (
    BLOCKER,
    FLAKY,
    TICKER,
    Daemons,
    configure,
    status_rows,
    vigil,
    wait_for_rows,
)
from tests.waiting import eventually


async def test_status_shows_healthy_loops_and_a_crashing_loop_restarted_with_its_error(
    instance: Instance, daemons: Daemons
) -> None:
    configure(instance, TICKER, FLAKY)
    daemon = daemons.start()
    await wait_for_rows(instance, {"supervisor": "healthy", "ticker": "healthy"})

    async def flaky_restarted() -> bool:
        flaky = (await status_rows(instance)).get("flaky", {})
        return flaky.get("restarts", 0) >= 1 and flaky.get("last_error") is not None

    await eventually(flaky_restarted)
    rows = await status_rows(instance)
    assert rows["flaky"]["last_error"].startswith("RuntimeError: planned failure ")
    assert rows["flaky"]["daemon"] == f"{socket.gethostname()}:{daemon.pid}"
    assert rows["ticker"]["iterations"] > 0

    table = (await vigil(instance, "daemon", "status")).stdout.decode()
    assert "RuntimeError: planned failure" in table
    assert f"{socket.gethostname()}:{daemon.pid}" in table
    answers: list[bytes] = []

    async def live() -> bool:
        # Heartbeats come every 0.3 s: on a loaded machine one may be late past 3 intervals,
        # and the check rightly says so; the daemon is live when one check says ok.
        check = await vigil(instance, "daemon", "liveness-check")
        answers.append(check.stdout)
        return check.returncode == 0

    try:
        await eventually(live, deadline=60.0)
    except TimeoutError:
        raise AssertionError(f"never live: {answers[-3:]}") from None
    ok = f"ok: daemon {socket.gethostname()}:{daemon.pid}, 4 loops"  # with monitor, retries
    assert answers[-1].decode().startswith(ok)
    assert "loop.crashed" in daemon.log()


async def test_sigterm_drains_exits_0_and_leaves_stopped_heartbeats(
    instance: Instance, daemons: Daemons
) -> None:
    configure(instance, TICKER)
    daemon = daemons.start()
    await wait_for_rows(instance, {"ticker": "healthy"})
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0
    rows = await status_rows(instance)
    assert {name: row["state"] for name, row in rows.items()} == {
        "supervisor": "stopped",
        "ticker": "stopped",
        "monitor": "stopped",
        "retries": "stopped",
    }
    log = daemon.log()
    assert "daemon.stopping" in log
    assert "daemon.stopped" in log
    live = await vigil(instance, "daemon", "liveness-check")
    assert live.returncode == 1
    assert "is stopped" in live.stdout.decode()


async def test_a_loop_blocked_past_its_timeout_is_hung_and_shutdown_still_ends(
    instance: Instance, daemons: Daemons
) -> None:
    configure(instance, TICKER, BLOCKER, grace=0.5)
    daemon = daemons.start()
    rows = await wait_for_rows(instance, {"blocker": "hung", "ticker": "healthy"})
    assert "past its 0.6s timeout" in rows["blocker"]["reason"]
    live = await vigil(instance, "daemon", "liveness-check")
    assert live.returncode == 1
    assert live.stdout.decode().startswith("loop blocker on ")
    assert "is hung" in live.stdout.decode()

    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0
    assert "daemon.drain_timeout" in daemon.log()
    rows = await status_rows(instance)
    assert rows["blocker"]["state"] == "stopped"


async def test_a_second_daemon_on_sqlite_is_refused_until_the_first_is_gone(
    sqlite_instance: Instance, daemons: Daemons
) -> None:
    instance = sqlite_instance
    configure(instance, TICKER)
    first = daemons.start()
    await wait_for_rows(instance, {"ticker": "healthy"})
    assert (await vigil(instance, "daemon", "liveness-check")).returncode == 0

    second = daemons.start()
    assert await second.exit_code() == 3
    refusal = second.log()
    assert f"another daemon is running on this store: {socket.gethostname()} " in refusal
    assert f"pid {first.pid} (last heartbeat " in refusal
    assert "Use PostgreSQL for more than one daemon." in refusal

    first.process.kill()  # no chance to mark its heartbeats stopped
    assert await first.exit_code() == -signal.SIGKILL

    async def down() -> bool:
        return (await vigil(instance, "daemon", "liveness-check")).returncode == 1

    await eventually(down)
    reason = (await vigil(instance, "daemon", "liveness-check")).stdout.decode()
    assert f"on {socket.gethostname()}:{first.pid} is down: no heartbeat for" in reason

    third = daemons.start()  # stale heartbeats are not in the way
    rows = await wait_for_rows(instance, {"ticker": "healthy"})
    assert rows["ticker"]["pid"] == third.pid
    third.send(signal.SIGTERM)
    assert await third.exit_code() == 0


async def test_sighup_reloads_the_workspace_and_json_logs_have_stable_keys(
    sqlite_instance: Instance, daemons: Daemons
) -> None:
    configure(sqlite_instance, TICKER)
    daemon = daemons.start("--log-format", "json")
    await daemon.logged('"daemon.started"')
    daemon.send(signal.SIGHUP)
    await daemon.logged('"ticker.reloaded"')
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0

    lines = [json.loads(line) for line in daemon.log().splitlines()]
    assert all({"event", "loop", "run_id", "time", "level", "message"} <= set(x) for x in lines)
    by_event = {line["event"]: line for line in lines}
    assert by_event["daemon.reloaded"]["locations"] == ["examples", "testjobs"]
    assert by_event["ticker.reloaded"]["loop"] == "ticker"
    assert by_event["daemon.stopping"]["signal"] == "SIGTERM"
    assert "daemon.stopped" in by_event


async def test_a_second_signal_exits_at_once(sqlite_instance: Instance, daemons: Daemons) -> None:
    configure(sqlite_instance, BLOCKER, grace=600)
    daemon = daemons.start()
    await wait_for_rows(sqlite_instance, {"blocker": "hung"})
    daemon.send(signal.SIGINT)
    await daemon.logged("daemon.stopping")
    daemon.send(signal.SIGINT)
    assert await daemon.exit_code() == 128 + signal.SIGINT
    assert "daemon.force_exit" in daemon.log()


async def test_status_follow_prints_changes_and_stops_on_ctrl_c(
    sqlite_instance: Instance, daemons: Daemons
) -> None:
    configure(sqlite_instance, TICKER, FLAKY)
    daemons.start()
    await wait_for_rows(sqlite_instance, {"ticker": "healthy"})
    command = [sys.executable, "-m", "vigil", "daemon", "status", "--follow"]
    follow = await anyio.open_process(
        command, cwd=sqlite_instance.cwd, env=sqlite_instance.env, stderr=subprocess.STDOUT
    )
    async with follow:
        try:
            assert follow.stdout is not None
            output = BufferedByteReceiveStream(follow.stdout)
            lines: list[str] = []

            async def flaky_line() -> bool:
                lines.append((await output.receive_until(b"\n", 65536)).decode())
                return "  flaky  " in lines[-1] and "last error: RuntimeError" in lines[-1]

            await eventually(flaky_line)
            assert lines[0].split()[:2] == ["LOOP", "STATE"]
            follow.send_signal(signal.SIGINT)
            with anyio.fail_after(30):
                assert await follow.wait() == 0
        finally:
            if follow.returncode is None:
                follow.kill()
