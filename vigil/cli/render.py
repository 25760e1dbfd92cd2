"""How runs, events and logs look on a terminal (and as JSON)."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from vigil import blobs, events, runs
from vigil.cli import ids, output
from vigil.display import printable as printable  # the CLI's printers use render.printable

E = events.EventType
STEP_OUTCOMES = (E.STEP_START, E.STEP_SUCCESS, E.STEP_FAILURE, E.STEP_SKIPPED, E.STEP_RETRY)
RUN_ENDS = (E.RUN_SUCCESS, E.RUN_FAILURE, E.RUN_CANCELED)
LOG_STREAMS = ("stdout.log", "stderr.log")


@dataclasses.dataclass(frozen=True, slots=True)
class LineageEntry:
    """One run of a lineage and the event that ended it (None while it runs)."""

    run: runs.Run
    end: events.Event | None


def lineage_dict(entry: LineageEntry) -> dict[str, Any]:
    run = entry.run
    return {
        "run_id": run.run_id,
        "parent_run_id": run.parent_run_id,
        "retry_number": run.retry_number,
        "reexecution": run.tags.get(runs.TAG_REEXECUTION),
        "status": run.status.value,
        "resumes": run.resume_attempt,
        "ended": entry.end.message if entry.end else None,
        "reason": entry.end.data.get("reason") if entry.end else None,
    }


def lineage_table(chain: Sequence[LineageEntry], current: str) -> str:
    """The lineage, root first: retry number, status, resumes and why each run ended."""
    if len(chain) < 2 and not any(e.run.resume_attempt for e in chain):
        return "lineage   this run alone (no retries, no resumes)"
    lines = ["lineage   (root first)"]
    for entry in chain:
        info = lineage_dict(entry)
        mark = "  <- this run" if info["run_id"] == current else ""
        how = info["reexecution"] or "original"
        resumes = f", resumed {info['resumes']}x" if info["resumes"] else ""
        ended = info["ended"] or "not ended yet"
        lines.append(
            f"  #{info['retry_number']} {info['run_id']}  {info['status']:<9} "
            f"({how}{resumes}) {ended}{mark}"
        )
    return "\n".join(lines)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).isoformat(sep=" ", timespec="seconds")


def _duration(run: runs.Run, now: float) -> str:
    if run.start_time is None:
        return "-"
    return f"{(run.end_time or now) - run.start_time:.2f}s"


def run_dict(run: runs.Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "status": run.status.value,
        "code_location": run.code_location,
        "tags": dict(run.tags),
        "run_config": dict(run.run_config),
        "parent_run_id": run.parent_run_id,
        "root_run_id": run.root_run_id,
        "retry_number": run.retry_number,
        "step_selection": list(run.step_selection) if run.step_selection is not None else None,
        "launcher_info": dict(run.launcher_info),
        "created_at": output.instant(run.created_at),
        "start_time": output.instant(run.start_time),
        "end_time": output.instant(run.end_time),
        "worker": f"{run.worker_host}:{run.worker_pid}" if run.worker_pid else None,
    }


def run_table(found: Sequence[runs.Run], now: float) -> str:
    if not found:
        return "no runs"
    rows = [("RUN ID", "JOB", "STATUS", "CREATED", "DURATION")]
    rows += [_run_row(r, now) for r in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _run_row(run: runs.Run, now: float) -> tuple[str, str, str, str, str]:
    job = printable(run.job_name)
    return (
        ids.short(run.run_id),
        job,
        run.status.value,
        _when(run.created_at),
        _duration(run, now),
    )


def step_dicts(step_events: Sequence[events.Event]) -> dict[str, dict[str, Any]]:
    """The latest outcome of each step, with the error of a failed one (None otherwise)
    and the duration of a successful one (None otherwise)."""
    steps: dict[str, dict[str, Any]] = {}
    for event in step_events:
        if event.step is None:
            continue
        entry = steps.setdefault(event.step, {"error": None, "traceback": None, "duration": None})
        entry["status"] = event.event_type.value.removeprefix("STEP_")
        if event.event_type is E.STEP_FAILURE:
            entry["error"] = event.message
            entry["traceback"] = event.data.get("traceback")
        if event.event_type is E.STEP_SUCCESS:
            entry["duration"] = event.data.get("duration")
    return steps


def run_detail(run: runs.Run, step_events: Sequence[events.Event], now: float) -> str:
    lines = [
        f"run       {run.run_id}",
        f"job       {printable(run.job_name)}  (code location {run.code_location})",
        f"status    {run.status.value}",
        f"created   {_when(run.created_at)}",
        f"started   {_when(run.start_time)}",
        f"ended     {_when(run.end_time)}",
        f"duration  {_duration(run, now)}",
        f"worker    {run.worker_host or '-'}:{run.worker_pid or '-'}",
    ]
    if run.parent_run_id:
        lines.append(f"parent    {run.parent_run_id}  (root {run.root_run_id})")
    if run.tags:
        tags = sorted(run.tags.items())
        lines.append("tags      " + ", ".join(f"{printable(k)}={printable(v)}" for k, v in tags))
    lines.append("steps")
    for name, entry in step_dicts(step_events).items():
        lines.append(f"  {printable(name):<24} {entry['status']}")
        if entry["status"] == "FAILURE":
            lines.append(f"    error: {entry['error']}")
            lines.extend(
                "    " + t for t in str(entry.get("traceback") or "").rstrip().splitlines()
            )
    return "\n".join(lines)


def event_line(event: events.Event) -> str:
    step = event.step or "-"
    level = f" [{event.level}]" if event.level else ""
    return (
        f"{_when(event.timestamp)}  {event.event_type.value:<14} {step:<20}{level} {event.message}"
    )


def event_json(event: events.Event) -> str:
    return output.encode(
        {
            "id": event.event_id,
            "run_id": event.run_id,
            "type": event.event_type.value,
            "timestamp": output.instant(event.timestamp),
            "step": event.step,
            "level": event.level,
            "message": event.message,
            "data": dict(event.data),
        }
    )


class LogTail:
    """Prints what was added to a run's compute-log files since the last call, read from
    the logs root (a local directory or a URL)."""

    def __init__(self, root: blobs.Root, run_id: str, step: str | None) -> None:
        self._root = root
        self._run_id = run_id
        self._step = step
        self._offsets: dict[str, int] = {}

    def _keys(self) -> list[tuple[str, str, str]]:
        """(key, step, stream) of each log file the run may have."""
        steps = [self._step] if self._step else self._root.children(self._run_id)
        return [
            (f"{self._run_id}/{step}/{name}", step, name.removesuffix(".log"))
            for step in steps
            for name in LOG_STREAMS
        ]

    def new_lines(self) -> Iterator[LogLine]:
        """The lines added since the last call, file by file."""
        for key, step, stream in self._keys():
            offset = self._offsets.get(key, 0)
            try:
                chunk = self._root.read(key, offset)
            except FileNotFoundError:
                continue
            if chunk:
                self._offsets[key] = offset + len(chunk)
                for line in chunk.decode("utf-8", "replace").splitlines():
                    yield LogLine(step, stream, line)

    def print_new(self, echo: Callable[[str], None], *, as_json: bool = False) -> None:
        for found in self.new_lines():
            if as_json:
                echo(output.encode(dataclasses.asdict(found)))
            else:
                echo(f"[{found.step} {found.stream}] {found.line}")


@dataclasses.dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a step's captured stdout or stderr."""

    step: str
    stream: str  # "stdout" or "stderr"
    line: str
