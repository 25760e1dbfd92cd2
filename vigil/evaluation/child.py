"""The evaluation process of one code location: `python -m vigil.evaluation.child SPEC`.

SPEC is JSON: `{"location": <code location settings>, "base_dir": "..."}`. The process
imports the code location once, writes its `Catalog` (or a `LoadFailure`, then exits) as
the first line, then answers one request a line on its stdin with one `Answer` a line on
its stdout, until stdin closes (the types and their JSON are in `messages`). A line that
is not a request is answered with a failed answer.

The protocol keeps its own copies of the pipes: file descriptor 1 then points to stderr,
so whatever user code prints never corrupts an answer. SIGINT is ignored (a Ctrl-C in the
daemon's terminal is the daemon's to handle); the process ends when the daemon closes the
pipe or kills it, or (on Linux) when the daemon dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pathlib
import signal
import sys
import traceback
from typing import IO, Any

from vigil import errors
from vigil.definitions import definitions as definitions_mod
from vigil.definitions import workspace
from vigil.evaluation import evaluate, messages

PR_SET_PDEATHSIG = 1
Message = messages.Catalog | messages.LoadFailure | messages.Answer


def _protocol_pipes() -> tuple[IO[bytes], IO[bytes]]:
    reader = os.fdopen(os.dup(0), "rb")
    writer = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return reader, writer


def _send(writer: IO[bytes], message: Message) -> None:
    try:
        text = json.dumps(message.to_json())
    except (TypeError, ValueError) as exc:
        text = json.dumps(messages.Answer.failed(f"the answer is not JSON: {exc}").to_json())
    writer.write(text.encode() + b"\n")
    writer.flush()


class _Location:
    """The code location's settings as the parent validated and sent them (reading them
    with the settings model would import pydantic-settings: a third of this process's start)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.module: str | None = data.get("module")
        self.file = _path(data.get("file"))
        self.attribute: str | None = data.get("attribute")
        self.working_directory = _path(data.get("working_directory"))
        stem = self.file.stem if self.file is not None else None
        self.location_name: str = data.get("name") or self.module or str(stem)


def _path(value: str | None) -> pathlib.Path | None:
    return None if value is None else pathlib.Path(value)


def _load(spec: dict[str, Any]) -> workspace.CodeLocation:
    location: Any = _Location(spec["location"])
    return workspace.load_location(location, pathlib.Path(spec["base_dir"]))


def _load_error(exc: BaseException) -> str:
    if isinstance(exc, errors.DefinitionError):
        return str(exc)
    return "".join(traceback.format_exception(exc)).rstrip()


def _die_with_parent() -> None:
    """Linux: be killed when the process that started this one dies, so a child stuck in
    user code (an import that never returns) does not outlive a SIGKILLed daemon or CLI."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reader, writer = _protocol_pipes()
    try:
        location = _load(json.loads(argv[1]))
    except (Exception, SystemExit) as exc:
        _send(writer, messages.LoadFailure(_load_error(exc)))
        return 0
    defs = location.definitions
    _send(writer, evaluate.catalog(location.name, defs))
    for line in reader:
        _send(writer, _answer(defs, line))
    return 0


def _answer(defs: definitions_mod.Definitions, line: bytes) -> messages.Answer:
    try:
        request = messages.request_from_json(json.loads(line))
    except ValueError as exc:
        return messages.Answer.failed(f"not a request: {exc}")
    return evaluate.handle(defs, request)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
