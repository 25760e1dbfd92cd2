"""The daemon's signals: the shutdown contract's first half.

SIGTERM or SIGINT asks for a graceful stop (drain within the grace); a second one asks to
exit at once; SIGHUP asks for a workspace reload. This module only routes signals to the
callbacks it is given; exiting the process is the CLI's business.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import anyio
import anyio.abc

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNAL = signal.SIGHUP


async def watch(
    *,
    stop: Callable[[signal.Signals], None],
    force: Callable[[signal.Signals], None],
    reload: Callable[[], None],
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Route signals until cancelled; `started` once the handlers are installed."""
    with anyio.open_signal_receiver(*STOP_SIGNALS, RELOAD_SIGNAL) as received:
        task_status.started()
        stopping = False
        async for signum in received:
            if signum == RELOAD_SIGNAL:
                reload()
            elif stopping:
                force(signum)
            else:
                stopping = True
                stop(signum)
