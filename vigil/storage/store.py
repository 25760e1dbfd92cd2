"""The instance store, in domain verbs.

Everything the rest of vigil knows about the database is this interface. Rows come back as
frozen records (`runs.Run`, `events.Event`, `Heartbeat`); each method owns its transaction;
driver errors are translated to `errors.StoreError` subclasses before they leave it.

The run queue: a submission (`add_run` of a QUEUED run, or a transition to QUEUED) and a
run's end (a transition to SUCCESS, FAILURE or CANCELED, which is how a run leaves the
in-flight statuses) each send a *queue notice*. `queue_wakeups` waits for them; the queue
loop claims on a notice or at its polling interval, whichever comes first, because a notice
can be missed (see `queue_wakeups`). `claim_queued_runs` is the one way out of QUEUED into
STARTING that keeps concurrency limits: claims are serialized by an admission lock.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from vigil import events, runs

# The admission rule, pure: (the QUEUED runs in FIFO order with their tags, the tag maps of
# the in-flight runs) -> the ids of the runs to claim, in launch order.
Admit = Callable[[Sequence[runs.Run], Sequence[Mapping[str, str]]], Sequence[str]]


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
    root_run_id: str | None = None  # the runs of one lineage (a root and its re-executions)


class Wakeups(abc.ABC):
    """A subscription to queue notices, for one waiting task; see `Store.queue_wakeups`."""

    @abc.abstractmethod
    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - the timeout is an answer
        """Wait for a notice: True when one came (since the last `wait`), False at the timeout.

        Notices that arrive while nobody waits are kept as one: the next `wait` returns True
        at once. So a caller that claims after each wake-up misses no notice.
        """


class Store(abc.ABC):
    """The instance store. Open with `storage.open_store(...)`; close with `close()`."""

    # runs ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def add_run(self, run: runs.Run, event: events.NewEvent | None = None) -> None:
        """Insert a new run with its tags (and optionally its first event), atomically.

        Raises DuplicateRun when the id exists, DuplicateRunKey when the run names an
        instigator and a run key that instigator already used.
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

    # the run queue ----------------------------------------------------------------------
    @abc.abstractmethod
    async def claim_queued_runs(self, admit: Admit, now: float, claimer: str) -> list[runs.Run]:
        """Claim the queued runs `admit` chooses: QUEUED -> STARTING, exactly once.

        In one write transaction, holding the admission lock (so two claimers, in one process
        or in two daemons, neither claim one run twice nor jointly exceed a limit): reads the
        QUEUED runs in FIFO order (created_at, run_id) with their tags and the tag maps of
        the in-flight runs (STARTING, STARTED, CANCELING), calls `admit(queued, in_flight)`,
        moves the runs it names that are still QUEUED to STARTING (updated_at = now), and
        appends a RUN_STARTING event for each ("claimed by <claimer> for launch", data
        {"claimer": claimer}): the record of the launch attempt. Returns the claimed runs
        as stored, in the order `admit` gave; ids that are not QUEUED are skipped.
        """

    @abc.abstractmethod
    async def queued_runs(self) -> list[runs.Run]:
        """The QUEUED runs with their tags, first in first out (created_at, run_id)."""

    @abc.abstractmethod
    async def in_flight_tags(self) -> list[Mapping[str, str]]:
        """The tag map of each in-flight run (STARTING, STARTED, CANCELING); {} if untagged."""

    @abc.abstractmethod
    def queue_wakeups(self) -> contextlib.AbstractAsyncContextManager[Wakeups]:
        """Subscribe to queue notices while the context is open.

        PostgreSQL: a dedicated connection LISTENs; the notices are NOTIFYs sent in the
        transactions that submit or end a run, so they come from every process on the
        store, at commit. When the connection drops, `wait` just times out until it is back
        (reconnecting with capped backoff), and a reconnect counts as a notice, since
        notices may have been missed meanwhile. SQLite: an in-process event, set by
        this store object's own submissions and ends after they commit; changes made by other
        processes are found by polling only.
        """

    # instance flags -------------------------------------------------------------------
    @abc.abstractmethod
    async def set_flag(self, name: str, value: Any, now: float) -> None:
        """Insert or replace an instance-wide flag (a JSON value, e.g. "queue.paused")."""

    @abc.abstractmethod
    async def get_flag(self, name: str) -> Any | None:
        """The flag's value, or None when it was never set."""

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
