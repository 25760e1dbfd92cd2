"""The daemon's last resorts at exit: closers that hang are abandoned, a stuck exit ends."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import anyio
import pytest

from vigil.cli import daemon_run

STUCK = """
import threading
from vigil.cli import daemon_run
guard = daemon_run._ExitGuard(0.2)
guard.code = 3
guard.arm()
threading.Event().wait()  # a teardown that never ends
"""


def test_a_process_stuck_after_the_daemon_stopped_ends_with_its_stacks() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STUCK], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 3
    assert "the daemon stopped but its process did not end within 0.2 s" in done.stderr
    assert "threading.Event().wait()" in done.stderr or "in wait" in done.stderr


async def test_a_closer_that_hangs_is_given_up_and_the_others_still_close(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(daemon_run, "CLOSE_DEADLINE", 0.1)
    closed: list[str] = []

    async def hangs() -> None:
        await anyio.sleep_forever()

    async def store_close() -> None:
        closed.append("store")

    with anyio.fail_after(10):
        await daemon_run._close_all(hangs, store_close)
    assert closed == ["store"]
    assert "hangs did not finish within 0.1 s" in caplog.text


async def test_a_stray_task_that_catches_its_cancellation_is_ended() -> None:
    # As aiosqlite's close does when SQLAlchemy left it closing an invalidated connection:
    # cancelled, it awaits another future in its `finally`, which nothing will resolve.
    loop = asyncio.get_running_loop()
    endings: list[str] = []

    async def closing() -> None:
        try:
            await loop.create_future()
        finally:
            try:
                await loop.create_future()
            finally:
                endings.append("ended")

    stray = asyncio.ensure_future(closing())
    await asyncio.sleep(0)
    with anyio.fail_after(10):
        await daemon_run._end_stray_tasks(5.0)
    assert stray.done()
    assert endings == ["ended"]
