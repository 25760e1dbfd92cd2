"""The evaluation process of one code location: `python -m vigil.evaluation.child SPEC`.

SPEC is JSON: `{"location": <code location settings>, "base_dir": "..."}`. The process
imports the code location once, writes its catalog (or `{"ok": false, "error": ...}` when
it fails to load, then exits) as the first line, then answers one JSON request a line on
its stdin with one JSON answer a line on its stdout, until stdin closes.

The protocol keeps its own copies of the pipes: file descriptor 1 then points to stderr,
so whatever user code prints never corrupts an answer. SIGINT is ignored (a Ctrl-C in the
daemon's terminal is the daemon's to handle); the process ends when the daemon closes the
pipe or kills it.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import sys
import traceback
from typing import IO, Any

from vigil import errors
from vigil.config import settings as settings_mod
from vigil.definitions import workspace
from vigil.evaluation import evaluate


def _protocol_pipes() -> tuple[IO[bytes], IO[bytes]]:
    reader = os.fdopen(os.dup(0), "rb")
    writer = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return reader, writer


def _send(writer: IO[bytes], message: dict[str, Any]) -> None:
    writer.write(json.dumps(message).encode() + b"\n")
    writer.flush()


def _load(spec: dict[str, Any]) -> workspace.CodeLocation:
    location = settings_mod.CodeLocationSettings.model_validate(spec["location"])
    return workspace.load_location(location, pathlib.Path(spec["base_dir"]))


def _load_error(exc: BaseException) -> str:
    if isinstance(exc, errors.DefinitionError):
        return str(exc)
    return "".join(traceback.format_exception(exc)).rstrip()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reader, writer = _protocol_pipes()
    try:
        location = _load(json.loads(argv[1]))
    except (Exception, SystemExit) as exc:
        _send(writer, {"ok": False, "error": _load_error(exc)})
        return 0
    defs = location.definitions
    _send(writer, evaluate.catalog(location.name, defs))
    for line in reader:
        answer = evaluate.handle(defs, json.loads(line))
        try:
            _send(writer, answer)
        except (TypeError, ValueError) as exc:
            _send(writer, {"ok": False, "error": f"the answer is not JSON: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
