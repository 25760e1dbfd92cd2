"""The exit board: exit codes recorded from threads, told to async code."""

from __future__ import annotations

import threading
import time

import anyio

from vigil.launchers import exits


async def test_an_exit_recorded_in_a_thread_wakes_the_waiter() -> None:
    board = exits.ExitBoard()
    try:
        recorder = threading.Thread(target=board.record, args=(41, -9))
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(board.wait)
                await anyio.wait_all_tasks_blocked()
                recorder.start()
        recorder.join()
        assert board.code(41) == -9
        assert exits.describe(41, board.code(41)) == "worker pid 41 was killed by signal SIGKILL"
    finally:
        await board.close()


async def test_a_code_older_than_the_process_is_not_its_own() -> None:
    board = exits.ExitBoard()
    try:
        board.record(7, 3)
        assert board.code(7, started=time.time() - 60) == 3
        assert board.code(7, started=time.time() + 60) is None  # a later process, same pid
        assert board.code(8) is None
        assert exits.describe(7, 3) == "worker pid 7 exited with code 3"
        assert exits.describe(8, None) == "worker pid 8 is gone"
    finally:
        await board.close()


async def test_the_board_keeps_the_latest_codes_only() -> None:
    board = exits.ExitBoard()
    try:
        for pid in range(exits.KEPT + 10):
            board.record(pid, 0)
        assert board.code(0) is None
        assert board.code(exits.KEPT + 9) == 0
    finally:
        await board.close()


async def test_a_code_about_to_be_recorded_is_waited_for() -> None:
    board = exits.ExitBoard()
    try:
        recorder = threading.Timer(0.05, board.record, args=(9, -15))
        recorder.start()
        assert board.wait_code(9, None, timeout=30) == -15
        recorder.join()
        assert board.wait_code(10, None, timeout=0.01) is None
    finally:
        await board.close()
