"""Process names that tell runs apart in `ps`: a worker and its step processes.

On Linux the name (`/proc/PID/comm`, what `ps -o comm`, `top` and `pgrep` show) is set
through libc's `prctl(PR_SET_NAME)`; the kernel keeps its first 15 bytes, so the name is
compact: `w:RUNID8:JOB` for a run's worker, `s:RUNID8:STEP` for a step's process (the first
8 characters of the run id, then as much of the job or step name as fits). Elsewhere
nothing is done. `PRCTL` is looked up at import, in the worker, before any fork: never in
a forked child.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

PR_SET_NAME = 15  # linux/prctl.h
COMM_BYTES = 15  # TASK_COMM_LEN less its terminating zero


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


PRCTL = _load_prctl()


def title(kind: str, run_id: str, name: str) -> str:
    """The name of a process of `kind` (`w` worker, `s` step) for a run and a job or step."""
    raw = f"{kind}:{run_id[:8]}:{name}".encode()[:COMM_BYTES]
    return raw.decode("utf-8", "ignore")


def name_process(kind: str, run_id: str, name: str) -> None:
    """Give the calling process (its main thread) its `title` (Linux only)."""
    if PRCTL is not None:
        PRCTL(PR_SET_NAME, ctypes.c_char_p(title(kind, run_id, name).encode()), 0, 0, 0)
