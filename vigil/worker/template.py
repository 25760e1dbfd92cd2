"""The worker template: a pre-imported process that forks run workers in milliseconds.

A run worker started from scratch spends most of its life importing (SQLAlchemy, the
drivers, pydantic, vigil). The template imports all of that once; the launcher then asks
it, one JSON line per run, to fork a worker. The forked worker starts its own session,
sends its output to the run's worker log, takes the environment and directory of the
request and runs the `vigil` command line given, as a fresh process would. The secret
variables a request carries (`"secrets"`) never enter that environment: the child writes
them to an anonymous file and appends `--secret-fd N` to the command line (see
`vigil.config.secrets`). The template itself is started without them.

The template is single-threaded and runs no event loop, so forking it is safe. It reaps
its children and tells the launcher of each exit on the reply pipe, as a line of its own
(`{"exited": PID, "code": N}`, N negative for a signal), so a launcher learns at once that
a worker died and how. It exits when the launcher closes its stdin (or dies). User code is
never imported here: each worker loads the code location itself, so new code is picked up.

A *tethered* template (`vigil worker template --tethered`, started by a Celery pool
process, see `vigil.celery.spawn`) belongs to its launcher: it ignores SIGTERM and SIGINT
(a signal to the Celery worker's process group must not end it under its runs; it ends
when its launcher closes its stdin or dies), and each worker it forks is SIGKILLed by the
kernel when the template exits (`PR_SET_PDEATHSIG`), so a worker never outlives the
launcher that waits for it.

What a worker costs is mostly CPU, and much of it is the kernel's: every page of the
template a worker writes to is copied first. So the template imports everything the
worker path imports (a module imported in the worker is paid for by every run), and
freezes the garbage collector's view of what it holds (`gc.freeze`): a worker's
collections then never walk, and so never touch, the template's objects. Code run for
the first time costs more than its work: the interpreter specializes its bytecode and
libraries fill their caches. The `vigil worker template` command therefore runs the
store's statements once before serving (`vigil.storage.sql.warm_up`: in-memory SQLite,
synchronous driver, no thread); what is learnt is inherited by every worker.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from vigil import proctitle
from vigil.config import secrets

PR_SET_PDEATHSIG = 1  # linux/prctl.h
TETHER_SIGNALS = (signal.SIGTERM, signal.SIGINT)

WARM_MODULES = (
    "sqlalchemy.dialects.sqlite.aiosqlite",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "aiosqlite",
    "asyncpg",
    "uvloop",
    "psutil",
    # imported by anyio.run and by the first signal receiver and task group
    "anyio._backends._asyncio",
    "anyio._core._signals",
    # imported by the multiprocess executor's first fork
    "multiprocessing.popen_fork",
    # what `vigil worker run` imports when it runs (the CLI module imports it lazily)
    "vigil.assembly",
    "vigil.config.loader",
    "vigil.config.secrets",
    "vigil.worker.patience",
    "vigil.worker.worker",
)

RunCommand = Callable[[Sequence[str]], int]
Prepare = Callable[[Mapping[str, str]], None]


def _nothing(_secret: Mapping[str, str]) -> None:
    pass


def serve(
    run_command: RunCommand,
    requests: IO[str],
    replies: IO[str],
    prepare: Prepare = _nothing,
    tethered: bool = False,
) -> None:
    """Answer fork requests until `requests` ends.

    `prepare` runs here before each fork with the request's secret variables, to do once
    what every worker would do (the CLI builds the settings); it must start no thread.
    Whatever it fails at, the worker does again itself and reports, so its errors are not
    the template's. `tethered`: see the module doc.
    """
    if tethered:
        for signum in TETHER_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
    _warm()
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGCHLD, _ExitNotices(replies.fileno()).reap)
    for line in requests:
        replies.write(json.dumps(_handle(run_command, line, prepare, tethered)) + "\n")
        replies.flush()


def _warm() -> None:
    for name in WARM_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _handle(
    run_command: RunCommand, line: str, prepare: Prepare, tethered: bool = False
) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except ValueError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    with contextlib.suppress(Exception):
        prepare(request.get("secrets") or {})
    template_pid = os.getpid()
    try:
        pid = os.fork()
    except (ValueError, OSError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if pid == 0:
        if tethered:
            _tether(template_pid)
        _become_worker(run_command, request)
    return {"pid": pid}


def _become_worker(run_command: RunCommand, request: dict[str, Any]) -> None:
    """In the forked child: detach, redirect, take the request's env and cwd, run, exit."""
    code = 70  # EX_SOFTWARE, if anything below fails before the command runs
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        _redirect(request["log"])
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        code = run_command(_with_secrets(request["argv"], request.get("secrets")))
    except BaseException as exc:  # the child must always reach os._exit
        print(f"worker template: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _tether(template_pid: int) -> None:
    """In the forked child: default SIGTERM and SIGINT again, and die with the template
    (leave at once if it is already gone)."""
    for signum in TETHER_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    if proctitle.PRCTL is not None:
        proctitle.PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != template_pid:
        os._exit(1)


def _with_secrets(argv: Sequence[str], secret: Mapping[str, str] | None) -> list[str]:
    """The command line, naming the descriptor that holds the secret variables, if any."""
    if not secret:
        return list(argv)
    return [*argv, "--secret-fd", str(secrets.hand_over(secret))]


def _redirect(log_path: str) -> None:
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)


class _ExitNotices:
    """The SIGCHLD handler: reap every exited child and write one notice line for each.

    Each notice is one `os.write` of a short line, so it never interleaves with a reply.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def reap(self, _signum: int, _frame: object) -> None:
        with contextlib.suppress(ChildProcessError):
            while True:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    return
                self._tell(pid, os.waitstatus_to_exitcode(status))

    def _tell(self, pid: int, code: int) -> None:
        line = json.dumps({"exited": pid, "code": code}) + "\n"
        with contextlib.suppress(OSError):
            os.write(self._fd, line.encode())
