"""The instance store, in domain verbs, as protocols sized to their callers.

Everything the rest of vigil knows about the database is this interface. Rows come back as
frozen records (`runs.Run`, `events.Event`, `Heartbeat`); each method owns its transaction;
driver errors are translated to `errors.StoreError` subclasses before they leave it.

The verbs are grouped by role, each a `typing.Protocol`, so a part of vigil asks for the
roles it plays and no more, and a test's fake implements a handful of methods:

    RunReader          runs read back (get, list, by key, by instigator, counts)
    RunStore           RunReader + adding runs and moving them through their states
    QueueStore         the run queue: claims under the admission lock, its notices
    EventWriter        appending to the event log (a worker's sink)
    EventReader        reading the event log (a run's events, a cursor over all runs)
    EventStore         EventWriter + EventReader
    LineageReader      a run and its events (the worker's planning)
    FlagStore          instance-wide flags (the queue's pause, the retries cursor)
    InstigationStore   schedules' and sensors' state and their ticks
    RetentionStore     purging ended runs by age, and the journal of their files
    HeartbeatReader    the daemons' heartbeats, read (status, one daemon per store)
    HeartbeatStore     HeartbeatReader + writing and pruning them (the daemon)
    LeaseReader        the daemons' memberships and the units they own, read
    LeaseStore         LeaseReader + renewing, leaving, acquiring and releasing leases
    StoreLifecycle     the reachability and schema checks, and closing
    Store              all of them: what `SqlStore` implements and `open_store` returns

A part that needs several roles names their union next to it (e.g.
`coordinators.base.CoordinatorStore`, `worker.patience.WorkerStore`).

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
from typing import TYPE_CHECKING, Any, Protocol

from vigil import errors, events, runs

if TYPE_CHECKING:
    from vigil import backfills, retention, ticks

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
class Launch:
    """A launch to record: the run, the token it was launched with, the launcher's facts."""

    run_id: str
    token: str | None
    info: Mapping[str, Any]


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
class Member:
    """A daemon's membership: it owns its units until `expires_at` unless it renews."""

    daemon_id: str
    host: str
    pid: int
    started_at: float
    expires_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    """A unit of daemon work, its owner (None: released) and its fencing token."""

    unit: str
    owner: str | None
    token: int
    acquired_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Fence:
    """What a write of owned work carries: its writer and the tokens of the units it holds.

    The store checks, in the write's own transaction, that `owner` still holds each unit
    at its token (another daemon taking a unit over raises its token).
    """

    owner: str
    tokens: Mapping[str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class Acquired:
    """The units an owner holds after an acquisition, with their tokens; `taken` are those
    it took from a daemon whose membership had expired (takeovers)."""

    held: Mapping[str, int]
    taken: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class RunFilter:
    statuses: Collection[runs.RunStatus] = ()
    job_name: str | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    limit: int | None = None
    root_run_id: str | None = None  # the runs of one lineage (a root and its re-executions)


class Wakeups(abc.ABC):
    """A subscription to queue notices, for one waiting task; see `QueueStore.queue_wakeups`."""

    @abc.abstractmethod
    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - the timeout is an answer
        """Wait for a notice: True when one came (since the last `wait`), False at the timeout.

        Notices that arrive while nobody waits are kept as one: the next `wait` returns True
        at once. So a caller that claims after each wake-up misses no notice.
        """


def unknown_run(run_id: str) -> errors.UnknownRun:
    return errors.UnknownRun(f"no run with id {run_id!r}")


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (escaped by a backslash) of the strings that start with `prefix`."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def prefix_successor(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` (binary order), when
    it is a string: the prefix's last character, incremented."""
    if not prefix or ord(prefix[-1]) >= 0xD7FF:  # its successor would be a surrogate
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class Glance(Protocol):
    """What the CLI's read commands look up: runs, a run's events, the heartbeats, the
    queue. The store has these verbs; so has `glance.Glance`, a look on the bare driver."""

    async def get_run(self, run_id: str) -> runs.Run: ...

    async def run_ids_with_prefix(self, prefix: str, limit: int) -> list[str]: ...

    async def list_runs(self, run_filter: RunFilter = RunFilter()) -> list[runs.Run]: ...

    async def get_events(
        self,
        run_id: str,
        after_id: int = 0,
        limit: int | None = None,
        event_types: Collection[events.EventType] = (),
    ) -> list[events.Event]: ...

    async def list_heartbeats(self) -> list[Heartbeat]: ...

    async def queued_runs(self) -> list[runs.Run]: ...

    async def in_flight_tags(self) -> list[Mapping[str, str]]: ...

    async def get_flag(self, name: str) -> Any | None: ...


class RunReader(Protocol):
    """Runs read back: what a CLI, an instigator or the retries loop looks up."""

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> runs.Run:
        """The run with this id; raises UnknownRun."""

    @abc.abstractmethod
    async def run_ids_with_prefix(self, prefix: str, limit: int) -> list[str]:
        """Up to `limit` ids of runs that start with `prefix` (exactly: `_` and `%` are
        plain characters), in order; one range of the primary key."""

    @abc.abstractmethod
    async def list_runs(self, run_filter: RunFilter = RunFilter()) -> list[runs.Run]:
        """Runs matching the filter, newest first."""

    @abc.abstractmethod
    async def count_runs_by_status(self) -> dict[runs.RunStatus, int]:
        """How many runs are in each status (statuses with no run are omitted)."""

    @abc.abstractmethod
    async def get_run_by_key(self, instigator: str, run_key: str) -> runs.Run | None:
        """The run this instigator submitted with this run key, if any."""

    @abc.abstractmethod
    async def instigator_runs(
        self,
        instigator: str,
        statuses: Collection[runs.RunStatus] = (),
        limit: int | None = None,
    ) -> list[runs.Run]:
        """The runs an instigator submitted (in these statuses, if given), newest first."""

    @abc.abstractmethod
    async def waiting_runs(self, instigator: str, now: float) -> tuple[int, float | None]:
        """How many runs of this instigator wait for a due time after `now` (NOT_STARTED or
        QUEUED with `not_before` > now), and the first of those due times."""


class RunStore(RunReader, Protocol):
    """Runs: adding them and moving them through their states, with the queries of
    the launch path (runs due, claims nobody will launch)."""

    @abc.abstractmethod
    async def add_run(self, run: runs.Run, event: events.NewEvent | None = None) -> runs.Run:
        """Insert a new run with its tags (and optionally its first event), atomically; the
        run as stored (a re-execution takes the next retry number of its lineage).

        Raises DuplicateRun when the id exists, DuplicateRunKey when the run names an
        instigator and a run key that instigator already used.
        """

    @abc.abstractmethod
    async def add_runs(
        self, batch: Sequence[runs.Run], first_events: Sequence[events.NewEvent] = ()
    ) -> list[runs.Run]:
        """Insert several new runs (one status) with their tags and events, in one transaction.

        Each re-execution (a run with a parent) takes the next retry number of its lineage,
        read in the same transaction: numbers are unique per root, whatever mix of retries
        and manual re-executions made them. Returns the runs as stored. All or nothing: a
        run id or run key that exists raises DuplicateRun or DuplicateRunKey and inserts
        none of them.
        """

    @abc.abstractmethod
    async def transition_run(
        self,
        run_id: str,
        expected: runs.RunStatus | Collection[runs.RunStatus],
        new: runs.RunStatus,
        now: float,
        update: RunUpdate = RunUpdate(),
        event: events.NewEvent | Sequence[events.NewEvent] | None = None,
    ) -> bool:
        """Move a run from an expected status to a new one, atomically.

        The update is conditional on the current status being one of `expected`, so two
        writers can never both win one transition; returns whether this caller won.
        `event` (one event, or a batch in order), when given, is appended in the same
        transaction only if it won. Raises InvalidTransition if the state machine forbids
        expected -> new, UnknownRun if there is no such run.
        """

    @abc.abstractmethod
    async def claim_run(
        self, run_id: str, expected: runs.RunStatus, now: float, claimer: str
    ) -> runs.Run | None:
        """Claim one run for a launch: `expected` -> STARTING with a new launch token.

        In one transaction: the guarded update (claimed_by = claimer, launched_at cleared,
        updated_at = now) and a RUN_STARTING event naming the claimer. The run as stored
        after (with its token), or None when it was no longer `expected`.
        """

    @abc.abstractmethod
    async def record_launches(self, launches: Sequence[Launch], now: float) -> None:
        """Record launches (launcher_info, launched_at = now) in one transaction.

        Each is written only while its token is the run's launch token: a launch whose
        claim was taken over (a timed-out launch, an orphaned claim launched again) never
        overwrites the facts of the launch that replaced it (one executemany for the batch,
        so the ids written are not reported).
        """

    @abc.abstractmethod
    async def start_run(
        self,
        run_id: str,
        now: float,
        update: RunUpdate = RunUpdate(),
        event: events.NewEvent | None = None,
        token: str | None = None,
        resume: bool = False,
    ) -> runs.Run | None:
        """A worker takes its run, and the run as it is after, in one transaction.

        STARTING -> STARTED (or, with `resume`, a STARTED run kept STARTED), guarded by the
        status and, when given, by the launch `token`: a worker whose token lost (its
        launch was replaced) gets None and must leave the run alone. The update's fields
        are written and `event` appended only if it won. Raises UnknownRun if there is no
        such run.
        """

    @abc.abstractmethod
    async def reclaim_launch(
        self,
        run_id: str,
        token: str | None,
        now: float,
        claimer: str,
        event: events.NewEvent,
    ) -> runs.Run | None:
        """Replace a launch that never got recorded: a new token for a STARTING run.

        Conditional on the run being STARTING with this launch token (None: none) and no
        launch recorded; a worker of the old token then loses its start. Appends `event`
        with the change. The run as stored after, or None when it moved on (a worker
        started it, a launch was recorded, it ended, or another claimer took it).
        """

    @abc.abstractmethod
    async def orphaned_claims(
        self, live_claimers: Collection[str], claimed_before: float
    ) -> list[runs.Run]:
        """STARTING runs with no launch recorded whose claimer is not among `live_claimers`
        and that were claimed before `claimed_before`: claims nobody will launch."""

    @abc.abstractmethod
    async def resume_run(
        self,
        run_id: str,
        expected: runs.RunStatus,
        attempt: int,
        now: float,
        claimer: str,
        event: events.NewEvent,
        fence: Fence | None = None,
    ) -> runs.Run | None:
        """Take a run over for a new worker: resume attempt `attempt`, a new launch token.

        For a STARTED run whose worker died (the new worker resumes it), or a STARTING one
        whose worker died before it started (launched again). Conditional on the run being
        `expected` at resume attempt `attempt - 1`, so one attempt is taken once; the old
        worker's token stops counting. Appends `event`; returns the run as stored after, or
        None when the condition failed. With a `fence`, LeaseLost unless it holds.
        """

    @abc.abstractmethod
    async def end_run(
        self,
        run_id: str,
        expected: runs.RunStatus | Collection[runs.RunStatus],
        end: runs.RunEnd,
        now: float,
        pending: Sequence[events.NewEvent] = (),
        token: str | None = None,
        fence: Fence | None = None,
    ) -> bool:
        """End a run: `expected` -> the end's status, with its end event, in one transaction.

        Conditional on the status (and on the launch `token` when given); `pending` events
        (a worker's last step events) are appended before the end event, both only if it
        won. end_time = updated_at = now. Returns whether this caller ended the run. With a
        `fence` (the monitor's shard), LeaseLost unless it holds.
        """

    @abc.abstractmethod
    async def request_cancel(self, run_id: str, now: float) -> runs.Run:
        """A user's cancel, in one transaction; the run as it is after.

        A run that never launched (NOT_STARTED, QUEUED) ends CANCELED at once; a launched one
        (STARTING, STARTED) becomes CANCELING, for its worker to stop; a run already
        canceling or ended is left as it is. Raises UnknownRun.
        """

    @abc.abstractmethod
    async def due_runs(self, instigator: str, now: float, limit: int) -> list[runs.Run]:
        """NOT_STARTED runs of this instigator that are due at `now` (no `not_before`, or
        past it), first in first out: inserted ahead of their launch, never launched yet."""


class QueueStore(Protocol):
    """The run queue: claims under the admission lock, what is queued and in flight,
    and the queue notices (see the module docstring)."""

    @abc.abstractmethod
    async def claim_queued_runs(self, admit: Admit, now: float, claimer: str) -> list[runs.Run]:
        """Claim the queued runs `admit` chooses: QUEUED -> STARTING, exactly once.

        In one write transaction, holding the admission lock (so two claimers, in one process
        or in two daemons, neither claim one run twice nor jointly exceed a limit): reads the
        QUEUED runs in FIFO order (created_at, run_id) with their tags and the tag maps of
        the in-flight runs (STARTING, STARTED, CANCELING), calls `admit(queued, in_flight)`
        (a queued run whose `not_before` is after `now` is not offered),
        moves the runs it names that are still QUEUED to STARTING (updated_at = now), and
        appends a RUN_STARTING event for each ("claimed by <claimer> for launch", data
        {"claimer": claimer}): the record of the launch attempt. Returns the claimed runs
        as stored, in the order `admit` gave; ids that are not QUEUED are skipped.
        """

    @abc.abstractmethod
    async def requeue_launch(
        self,
        run_id: str,
        token: str | None,
        now: float,
        not_before: float,
        event: events.NewEvent,
    ) -> bool:
        """Give back a claim whose launch could not reach its launcher's service: STARTING
        -> QUEUED, claimed by nobody, not offered again before `not_before`.

        Conditional on the run being STARTING with this launch token and no launch
        recorded; appends `event` with the change. No queue notice is sent (the queue
        finds it when it is due). Returns whether it was given back.
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


class EventWriter(Protocol):
    """The event log's append verb (a worker's sink)."""

    @abc.abstractmethod
    async def append_events(self, batch: Sequence[events.NewEvent]) -> None:
        """Append a batch of events in one transaction; ids grow in batch order."""


class EventReader(Protocol):
    """The event log, read: one run's events, or a cursor over every run's."""

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

    @abc.abstractmethod
    async def last_event_id(self) -> int:
        """The id of the newest event, 0 when the log is empty (a cursor's starting point)."""


class EventStore(EventWriter, EventReader, Protocol):
    """The event log: append and read."""


class LineageReader(Protocol):
    """What reading a run's lineage needs (the worker's planning)."""

    async def get_run(self, run_id: str) -> runs.Run: ...

    async def get_events(
        self,
        run_id: str,
        after_id: int = 0,
        limit: int | None = None,
        event_types: Collection[events.EventType] = (),
    ) -> list[events.Event]: ...


class FlagStore(Protocol):
    """Instance-wide flags: small JSON values any process may read and set."""

    @abc.abstractmethod
    async def set_flag(
        self,
        name: str,
        value: Any,
        now: float,
        wake_queue: bool = False,
        fence: Fence | None = None,
    ) -> None:
        """Insert or replace an instance-wide flag (a JSON value, e.g. "queue.paused").

        `wake_queue` also sends a queue notice with the commit (resuming the queue). With a
        `fence` (a cursor's owner), LeaseLost unless it holds.
        """

    @abc.abstractmethod
    async def get_flag(self, name: str) -> Any | None:
        """The flag's value, or None when it was never set."""


class InstigationStore(Protocol):
    """Schedules' and sensors' stored state (status, cursor) and their ticks."""

    @abc.abstractmethod
    async def list_instigators(
        self, names: Collection[str] | None = None
    ) -> list[ticks.InstigatorState]:
        """The stored state of every instigator (or of these `KIND:NAME`s), by name."""

    @abc.abstractmethod
    async def ensure_instigators(
        self, names: Sequence[tuple[str, ticks.InstigatorKind]], now: float
    ) -> None:
        """Give each instigator without a row one: status DEFAULT, no cursor, updated_at now."""

    @abc.abstractmethod
    async def set_instigator_status(
        self,
        name: str,
        kind: ticks.InstigatorKind,
        status: ticks.InstigatorStatus,
        now: float,
    ) -> None:
        """An operator's RUNNING or STOPPED (or DEFAULT again); the cursor is kept."""

    @abc.abstractmethod
    async def set_instigator_cursor(
        self, name: str, kind: ticks.InstigatorKind, cursor: str | None, now: float
    ) -> None:
        """Replace an instigator's cursor (an operator's `sensor cursor --set`)."""

    @abc.abstractmethod
    async def add_ticks(
        self,
        keys: Sequence[tuple[str, float]],
        status: ticks.TickStatus,
        now: float,
        error: str | None = None,
    ) -> list[ticks.Tick]:
        """Record ticks (instigator, scheduled time) with this status, in one transaction.

        A tick that already exists is left as it is (a tick is unique per instigator and
        scheduled time). Returns every tick of `keys` as stored, in the order given.
        """

    @abc.abstractmethod
    async def plan_ticks(
        self,
        run: Sequence[tuple[str, float]],
        missed: Sequence[tuple[str, float]],
        now: float,
        missed_error: str,
    ) -> list[ticks.Tick]:
        """A scheduler's plan in one transaction: the ticks to `run` as STARTED and the
        ticks its catch-up policy let go as MISSED (with `missed_error`); the STARTED ones
        as stored, in the order given. A daemon killed mid-plan leaves all of it or none,
        never a plan's MISSED ticks without the tick the policy chose to run."""

    @abc.abstractmethod
    async def finish_ticks(
        self,
        outcomes: Sequence[ticks.TickOutcome],
        now: float,
        fence: Fence | None = None,
    ) -> list[int]:
        """End STARTED ticks with their outcomes, in one transaction.

        A tick that is no longer STARTED is left as it is. An outcome with `commit_cursor`
        writes its cursor to the instigator's state in the same transaction, only if its
        tick was STARTED: a cursor is committed with its tick, exactly once. With a `fence`,
        only the outcomes of instigators it holds are written; returns the ids of the ticks
        it refused (another daemon took their instigators over).
        """

    @abc.abstractmethod
    async def list_ticks(
        self,
        instigator: str | None = None,
        statuses: Collection[ticks.TickStatus] = (),
        limit: int | None = None,
    ) -> list[ticks.Tick]:
        """Ticks (of one instigator, in these statuses), newest scheduled time first."""

    @abc.abstractmethod
    async def latest_ticks(self) -> dict[str, ticks.Tick]:
        """Each instigator's tick with the latest scheduled time."""

    @abc.abstractmethod
    async def purge_ticks(self, before: float, statuses: Collection[ticks.TickStatus]) -> int:
        """Delete ticks in these statuses scheduled before `before` (never STARTED ones)."""


class BackfillStore(Protocol):
    """Backfills: their rows, the submission of their runs chunk by chunk, and their runs."""

    @abc.abstractmethod
    async def add_backfill(self, backfill: backfills.Backfill) -> backfills.Backfill:
        """Insert a new backfill (DuplicateRun-free: its id is new)."""

    @abc.abstractmethod
    async def get_backfill(self, backfill_id: str) -> backfills.Backfill:
        """A backfill with its partitions (NotFound for an unknown id)."""

    @abc.abstractmethod
    async def list_backfills(
        self, statuses: Collection[backfills.BackfillStatus] | None = None
    ) -> list[backfills.Backfill]:
        """Backfills, oldest first, without their partitions (`total` counts them)."""

    @abc.abstractmethod
    async def submit_backfill_runs(
        self,
        backfill_id: str,
        cursor: int,
        batch: Sequence[runs.Run],
        first_events: Sequence[events.NewEvent],
        now: float,
    ) -> bool:
        """In one transaction: move the cursor of a SUBMITTING backfill from `cursor` by
        `len(batch)` (to SUBMITTED when that is all of it) and insert these runs with their
        events. False, and nothing written, when the backfill is no longer SUBMITTING at
        that cursor (canceled, or another submitter moved it)."""

    @abc.abstractmethod
    async def cancel_backfill(
        self, backfill_id: str, now: float
    ) -> tuple[backfills.Backfill, list[str]]:
        """In one transaction: a SUBMITTING or SUBMITTED backfill becomes CANCELED and its
        QUEUED runs CANCELED; the backfill as stored and the runs canceled (none when it
        had ended already). NotFound for an unknown id."""

    @abc.abstractmethod
    async def backfill_runs(self, backfill_id: str) -> list[backfills.PartitionRun]:
        """Every run of a backfill (retries included) with its partition."""

    @abc.abstractmethod
    async def partition_runs(self, job_name: str) -> list[backfills.PartitionRun]:
        """Every run of a job that names a partition, with its partition."""


class RetentionStore(Protocol):
    """Run retention (see `vigil.retention`): purging ended runs in batches, and the
    journal of the purged runs whose files may remain."""

    @abc.abstractmethod
    async def purge_runs(self, rule: retention.Rule, now: float) -> retention.Batch:
        """Delete up to `rule.batch_size` runs the rule lets go (status by status, oldest
        end first) with their tags and events, in one transaction that also writes their ids
        to the journal (purged at `now`). Only runs still ended as the delete runs go, and
        the ids returned are those this call deleted (never one a concurrent purge took)."""

    @abc.abstractmethod
    async def count_purgeable(self, rule: retention.Rule) -> retention.Purged:
        """How many runs (and their events) the rule lets go now, all batches together."""

    @abc.abstractmethod
    async def purged_files_pending(self, limit: int) -> list[str]:
        """Up to `limit` run ids in the journal: purged, their files maybe not removed yet."""

    @abc.abstractmethod
    async def forget_purged(self, run_ids: Collection[str]) -> None:
        """Drop these ids from the journal: their files are gone."""


class HeartbeatReader(Protocol):
    """The daemons' heartbeats, read (`vigil daemon status`, one daemon per store)."""

    @abc.abstractmethod
    async def list_heartbeats(self) -> list[Heartbeat]:
        """Every loop's latest heartbeat."""


class HeartbeatStore(HeartbeatReader, Protocol):
    """The daemon's own heartbeat verbs: write one loop's, read all, prune old ones."""

    @abc.abstractmethod
    async def write_heartbeat(self, heartbeat: Heartbeat) -> None:
        """Insert or replace the heartbeat of (daemon_id, loop)."""

    @abc.abstractmethod
    async def prune_heartbeats(self, before: float) -> int:
        """Delete the heartbeats last written before `before`; returns how many went.

        Each daemon process writes rows under a new id, so without pruning a restarted
        daemon's rows would pile up forever.
        """


class LeaseReader(Protocol):
    """The daemons' memberships and their leases, read (`vigil daemon status`)."""

    @abc.abstractmethod
    async def list_members(self) -> list[Member]:
        """Every daemon's membership, expired ones included, oldest start first."""

    @abc.abstractmethod
    async def list_leases(self, prefix: str = "") -> list[Lease]:
        """The leases whose unit starts with `prefix`, by unit."""


class LeaseStore(LeaseReader, Protocol):
    """Many daemons on one store: memberships and the leases of units of work.

    A unit is owned by its lease's owner while that owner's membership has not expired;
    an expired owner's units may be taken by any live daemon, raising their tokens.
    """

    @abc.abstractmethod
    async def renew_membership(self, member: Member) -> None:
        """Insert or renew a daemon's membership (its host, pid, start and new expiry)."""

    @abc.abstractmethod
    async def leave(self, daemon_id: str) -> int:
        """Release every unit the daemon owns and end its membership, in one transaction
        (a clean stop: the others take its units at once); returns how many it released."""

    @abc.abstractmethod
    async def acquire_leases(self, owner: str, units: Collection[str], now: float) -> Acquired:
        """Take each of `units` that is released, new, or owned by a daemon whose membership
        expired before `now`; the units of `units` the owner holds after, with tokens."""

    @abc.abstractmethod
    async def release_leases(self, owner: str, units: Collection[str]) -> None:
        """Give these units up (those `owner` holds); their tokens stay as they are."""

    @abc.abstractmethod
    async def prune_members(self, before: float) -> int:
        """Delete memberships that expired before `before` (their units stay, owned by
        nobody live, until taken); returns how many went."""


class StoreLifecycle(Protocol):
    """Whether the store is usable, and releasing it."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return once the database answered a trivial query; StoreUnavailable if it cannot
        be reached. The cheapest verb: a daemon asks it every second while the store is away."""

    @abc.abstractmethod
    async def schema_is_current(self) -> bool:
        """Whether the database is reachable (else StoreUnavailable) and at this vigil's schema."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection."""


class Store(
    RunStore,
    QueueStore,
    EventStore,
    FlagStore,
    InstigationStore,
    BackfillStore,
    RetentionStore,
    HeartbeatStore,
    LeaseStore,
    StoreLifecycle,
    Protocol,
):
    """The instance store: every role. Open with `storage.open_store(...)`; close with
    `close()`. Ask for a narrower role where one does."""
