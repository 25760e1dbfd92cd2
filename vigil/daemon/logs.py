"""The daemon's log lines: readable by default, one JSON object a line on request.

Daemon code names each line's event and fields through `extra`:

    logger.warning("loop %s crashed", name, extra={"event": "loop.crashed", "loop": name})

Text:  `2024-05-01T10:00:00.123Z WARNING loop.crashed loop flaky crashed loop=flaky`
JSON:  `{"time": ..., "level": "warning", "event": "loop.crashed", "loop": "flaky",
         "run_id": null, "message": ..., "logger": ..., ...the other fields}`

The keys `event`, `loop` and `run_id` are always present in JSON (null when a line is about
no loop or run), so a log pipeline can index them. A line from a library or user code that
names no event has the event `log`. An attached exception adds `traceback`. Credentials in
a URL are masked in every line, whoever logged it (`config.redact.text`).
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any, Literal, TextIO

from vigil.config import redact

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
STABLE_KEYS = ("event", "loop", "run_id")
QUIET_LOGGERS = ("alembic",)  # its INFO lines narrate a first migration step by step
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """What the caller passed as `extra`: the record attributes logging does not set."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c.isspace() or c in "\"'=" for c in text):
        return text
    return json.dumps(text)


class TextFormatter(logging.Formatter):
    """`time LEVEL event message key=value ...`, then the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        fields = fields_of(record)
        event = fields.pop("event", "log")
        pairs = "".join(f" {k}={_text_value(v)}" for k, v in fields.items() if v is not None)
        line = f"{_timestamp(record)} {record.levelname} {event} {record.getMessage()}{pairs}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact.text(line)


class JsonFormatter(logging.Formatter):
    """One JSON object a line; `event`, `loop` and `run_id` always present."""

    def format(self, record: logging.LogRecord) -> str:
        fields = fields_of(record)
        data: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "event": fields.pop("event", "log"),
            "loop": fields.pop("loop", None),
            "run_id": fields.pop("run_id", None),
            "message": record.getMessage(),
            "logger": record.name,
            **fields,
        }
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return redact.text(json.dumps(data, default=str))


def level_of(name: str) -> int:
    """The logging level named by one of `LEVELS`."""
    return logging.getLevelNamesMapping()[name.upper()]


def configure(log_format: LogFormat, stream: TextIO, level: int = logging.INFO) -> None:
    """Send every log line of the process to `stream` in the chosen format (once, at the edge)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for previous in list(root.handlers):
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
