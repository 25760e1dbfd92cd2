"""The instance store, in domain verbs.

Everything the rest of vigil knows about the database is this interface. Rows come back as
frozen records (`runs.Run`, `events.Event`, `Heartbeat`); each method owns its transaction;
driver errors are translated to `errors.StoreError` subclasses before they leave it.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from vigil import events, runs


@dataclasses.dataclass(frozen=True, slots=True)
class RunUpdate:
    """Fields written together with a status transition; None leaves a field as it is."""

    start_time: float | None = None
    end_time: float | None = None
    worker_host: str | None = None
    worker_pid: int | None = None
    launcher_info: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Heartbeat:
    """One loop's proof of life, as written by the daemon."""

    daemon_id: str
    loop: str
    host: str
    pid: int
    last_heartbeat: float
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class RunFilter:
    statuses: Collection[runs.RunStatus] = ()
    job_name: str | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    limit: int | None = None


class Store(abc.ABC):
    """The instance store. Open with `storage.open_store(...)`; close with `close()`."""

    # runs ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_run(self, run: runs.Run, event: events.NewEvent | None = None) -> None:
        """Insert a new run with its tags (and optionally its first event), atomically.

        Raises DuplicateRun when the id exists.
        """

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> runs.Run:
        """The run with this id; raises UnknownRun."""

    @abc.abstractmethod
    async def list_runs(self, run_filter: RunFilter = RunFilter()) -> list[runs.Run]:
        """Runs matching the filter, newest first."""

    @abc.abstractmethod
    async def transition_run(
        self,
        run_id: str,
        expected: runs.RunStatus | Collection[runs.RunStatus],
        new: runs.RunStatus,
        now: float,
        update: RunUpdate = RunUpdate(),
        event: events.NewEvent | None = None,
    ) -> bool:
        """Move a run from an expected status to a new one, atomically.

        The update is conditional on the current status being one of `expected`, so two
        writers can never both win one transition; returns whether this caller won.
        `event`, when given, is appended in the same transaction only if it won.
        Raises InvalidTransition if the state machine forbids expected -> new,
        UnknownRun if there is no such run.
        """

    @abc.abstractmethod
    async def update_run_info(self, run_id: str, update: RunUpdate) -> None:
        """Write launcher or worker facts without changing the status."""

    @abc.abstractmethod
    async def count_runs_by_status(self) -> dict[runs.RunStatus, int]:
        """How many runs are in each status (statuses with no run are omitted)."""

    # events -------------------------------------------------------------------------
    @abc.abstractmethod
    async def append_events(self, batch: Sequence[events.NewEvent]) -> None:
        """Append a batch of events in one transaction; ids grow in batch order."""

    @abc.abstractmethod
    async def get_events(
        self,
        run_id: str,
        after_id: int = 0,
        limit: int | None = None,
        event_types: Collection[events.EventType] = (),
    ) -> list[events.Event]:
        """A run's events with id greater than `after_id`, in id order."""

    @abc.abstractmethod
    async def events_after(
        self,
        after_id: int,
        limit: int,
        event_types: Collection[events.EventType] = (),
    ) -> list[events.Event]:
        """Events of every run with id greater than `after_id`, in id order (a cursor)."""

    # daemon -------------------------------------------------------------------------
    @abc.abstractmethod
    async def write_heartbeat(self, heartbeat: Heartbeat) -> None:
        """Insert or replace the heartbeat of (daemon_id, loop)."""

    @abc.abstractmethod
    async def list_heartbeats(self) -> list[Heartbeat]:
        """Every loop's latest heartbeat."""

    # lifecycle ----------------------------------------------------------------------
    @abc.abstractmethod
    async def schema_is_current(self) -> bool:
        """Whether the database is reachable (else StoreUnavailable) and at this vigil's schema."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection."""
