"""The run worker: one process, one run, from STARTING to an end.

It marks the run STARTED with its host and pid, executes the planned steps through the
configured executor, streams events in batches, and ends the run SUCCESS, FAILURE or,
on SIGTERM, CANCELED. A resumed worker continues a STARTED run, skipping the steps that
already succeeded. From its start to its end it beats (`heart`); a beat refused (the run
was given to another worker, or ended) stops its steps, and it leaves the run alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import pathlib
import random
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Sequence

import anyio
import anyio.from_thread
import anyio.lowlevel

from vigil import blobs, errors, events, proctitle, reexecution, runs
from vigil.config import settings as settings_mod
from vigil.definitions import job as job_mod
from vigil.definitions import workspace as workspace_mod
from vigil.executors import base as executors_base
from vigil.executors import outputs as outputs_mod
from vigil.executors import plan as plan_mod
from vigil.storage import store as store_mod
from vigil.worker import heart as heart_mod
from vigil.worker import lineage, patience
from vigil.worker import sink as sink_mod

S = runs.RunStatus
E = events.EventType
R = runs.EndReason
Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerEnv:
    """What the worker needs, built by the CLI."""

    settings: settings_mod.InstanceSettings
    store: patience.WorkerStore
    executor: executors_base.Executor
    base_dir: pathlib.Path
    clock: Clock = time.time
    token: str | None = None  # the launch token this worker was started with


@dataclasses.dataclass
class _Interrupt:
    """The first SIGTERM/SIGINT received (or the run lost), and the scope of the work it
    cancels."""

    signum: int | None = None
    scope: anyio.CancelScope | None = None
    lost: bool = False

    def arm(self, scope: anyio.CancelScope) -> None:
        self.scope = scope
        if self.signum is not None or self.lost:
            scope.cancel()

    def lose(self) -> None:
        """The run is no longer this worker's: stop its steps (the end will not be ours)."""
        self.lost = True
        if self.scope is not None:
            self.scope.cancel()


async def run_worker(env: WorkerEnv, run_id: str, resume: bool = False) -> runs.RunStatus:
    """Execute one run to its end; returns the final status.

    SIGTERM and SIGINT are handled from the start: before the steps run they end the run
    CANCELED at once, while they run they cancel the steps first. A failure inside a task
    group (the sink's writer giving up on the store, say) leaves as itself, not wrapped.
    """
    interrupt = _Interrupt()
    try:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_watch_signals, signals, interrupt)
                try:
                    status = await _run(env, run_id, resume, interrupt)
                finally:
                    tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _sole(group) from None
    return status


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside nested groups, or the group when there are several."""
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
        inner = inner.exceptions[0]
    return inner


async def _run(env: WorkerEnv, run_id: str, resume: bool, interrupt: _Interrupt) -> runs.RunStatus:
    run = await (_mark_resumed(env, run_id) if resume else _mark_started(env, run_id))
    if run is None:
        run = await _started_after_all(env, run_id)
    if run is None:
        return await _settle_lost_start(env, run_id)
    proctitle.name_process("w", run_id, run.job_name)
    async with heart_mod.beating(_heart(env, run_id, interrupt)) as heart:
        try:
            plan = await _plan(env, run, resume)
        except errors.VigilError as exc:
            heart.stop()
            return await _end(env, run_id, S.FAILURE, str(exc), reason=R.ERROR)
        return await _execute(env, plan, interrupt, heart)


def _heart(env: WorkerEnv, run_id: str, interrupt: _Interrupt) -> heart_mod.Heart:
    def lost() -> None:
        print(
            f"vigil worker: run {run_id} is no longer this worker's (its heartbeat was "
            "refused: it ended, or another worker took it over); stopping its steps",
            file=sys.stderr,
        )
        interrupt.lose()

    interval = env.settings.run_monitoring.worker_heartbeat_interval
    return heart_mod.Heart(env.store, run_id, env.token, env.clock, interval, lost)


async def _mark_started(env: WorkerEnv, run_id: str) -> runs.Run | None:
    """STARTING -> STARTED with this worker's host and pid, if this worker's launch token
    is still the run's; the run, or None if it is not ours."""
    now = env.clock()
    update = store_mod.RunUpdate(
        start_time=now,
        worker_host=socket.gethostname(),
        worker_pid=os.getpid(),
        worker_heartbeat=now,
    )
    message = f"worker {socket.gethostname()}:{os.getpid()} started"
    event = _event(env, run_id, E.RUN_START, message)
    return await env.store.start_run(run_id, now, update, event, token=env.token)


async def _mark_resumed(env: WorkerEnv, run_id: str) -> runs.Run | None:
    """Take over a STARTED run the monitor gave this worker (its token); None if not ours."""
    now = env.clock()
    update = store_mod.RunUpdate(
        worker_host=socket.gethostname(), worker_pid=os.getpid(), worker_heartbeat=now
    )
    message = f"worker {socket.gethostname()}:{os.getpid()} resumed"
    event = _event(env, run_id, E.ENGINE, message)
    return await env.store.start_run(run_id, now, update, event, token=env.token, resume=True)


async def _started_after_all(env: WorkerEnv, run_id: str) -> runs.Run | None:
    """The run if this very worker started it: a start that committed but whose answer was
    lost in a store outage, and was refused when tried again."""
    run = await env.store.get_run(run_id)
    mine = run.worker_pid == os.getpid() and run.worker_host == socket.gethostname()
    if run.status is S.STARTED and mine and _ours(env, run):
        return run
    return None


async def _settle_lost_start(env: WorkerEnv, run_id: str) -> runs.RunStatus:
    """The run was not ours to start: a cancel got there first, it ended, or another launch
    took it over (this worker's token lost): then it leaves the run alone."""
    run = await env.store.get_run(run_id)
    if env.token is not None and run.launch_token != env.token:
        print(
            f"vigil worker: run {run_id} was taken over by another launch; "
            "this worker leaves it alone",
            file=sys.stderr,
        )
        return run.status
    if run.status is S.CANCELING:
        message = "canceled before it started"
        return await _end(env, run_id, S.CANCELED, message, reason=R.CANCELED)
    return run.status


async def _load(
    env: WorkerEnv, settings: settings_mod.CodeLocationSettings
) -> workspace_mod.CodeLocation:
    """Import the run's code location in a thread of its own, so that the heart beats and
    signals are heard while user code imports (a large library on a cold disk takes tens of
    seconds, which the monitor would otherwise take for a dead worker). An import that
    takes longer than `scheduling.load_timeout` fails the run; its thread is a daemon, so
    a hung import dies with this process. What the import raises (even SystemExit) is
    raised here."""
    timeout = env.settings.scheduling.load_timeout
    outcome: list[workspace_mod.CodeLocation | BaseException] = []
    loaded = anyio.Event()
    token = anyio.lowlevel.current_token()

    def load() -> None:
        try:
            outcome.append(workspace_mod.load_location(settings, env.base_dir))
        except BaseException as exc:  # handed to the event loop as it is
            outcome.append(exc)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
            anyio.from_thread.run_sync(loaded.set, token=token)

    threading.Thread(target=load, name=f"load {settings.location_name}", daemon=True).start()
    with anyio.move_on_after(timeout):
        await loaded.wait()
    if not outcome:
        raise errors.CodeLocationLoadError(
            f"code location '{settings.location_name}' did not load within {timeout:g} s "
            "(scheduling.load_timeout): its import hangs or is too slow"
        )
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


async def _plan(env: WorkerEnv, run: runs.Run, resume: bool) -> plan_mod.StepPlan:
    location = await _load(env, _location_settings(env.settings, run))
    job = location.definitions.get_job(run.job_name)
    configs = job.validate_run_config(run.run_config)
    order = job.topological_order()
    selected = [s for s in order if run.step_selection is None or s in run.step_selection]
    if reexecution.is_from_failure(run) and run.parent_run_id is not None:
        done = await lineage.done_steps(env.store, run.parent_run_id)
        selected = [s for s in selected if s not in done]
    outputs = _outputs(env.settings)
    if resume:
        done = await lineage.succeeded_steps(env.store, run.run_id)
        recovered = await _recover(env, outputs, run, [s for s in selected if s not in done])
        selected = [s for s in selected if s not in done and s not in recovered]
    sources = await lineage.input_runs(env.store, outputs, run, job, tuple(selected))
    input_runs = {step: source.run_id for step, source in sources.items()}
    await _note_reuse(env, run, input_runs)
    partition = run.tags.get(runs.TAG_PARTITION)
    return plan_mod.StepPlan(
        run_id=run.run_id,
        job=job,
        steps=tuple(selected),
        step_configs=configs,
        input_runs=input_runs,
        input_digests={step: source.digest for step, source in sources.items()},
        partition_key=partition,
        partition_window=_partition_window(job, partition),
        code_location=run.code_location,
    )


def _partition_window(
    job: job_mod.JobDef, key: str | None
) -> tuple[datetime.datetime, datetime.datetime] | None:
    """The window of the run's partition; PartitionError (the run fails) for a key the
    job's partitions do not hold, or a partition tag on a job without partitions."""
    if key is None:
        return None
    if job.partitions is None:
        raise errors.PartitionError(
            f"run tag {runs.TAG_PARTITION}={key!r}: job '{job.name}' has no partitions"
        )
    try:
        return job.partitions.window(key)
    except errors.PartitionError as exc:
        raise errors.PartitionError(f"job '{job.name}': {exc}") from None


async def _recover(
    env: WorkerEnv, outputs: outputs_mod.OutputStore, run: runs.Run, candidates: Sequence[str]
) -> list[str]:
    """Steps that finished before the worker died: their output is stored (written
    atomically, last thing a step does) but their events were not yet (a worker writes a
    step's last events with the run's end). Their STEP_OUTPUT, with the digest of the file
    as found, and STEP_SUCCESS are recorded now; they are not run again. A file whose
    digest differs from one this run did record is not taken: the step runs again."""
    recorded = await lineage.recorded_outputs(env.store, run.run_id)
    found: dict[str, str] = {}
    for step in candidates:
        if outputs.has(run.run_id, step):
            digest = outputs.digest(run.run_id, step)
            if recorded.get(step, digest) == digest:
                found[step] = digest
    await _note_recovered(env, run, found)
    return list(found)


async def _note_recovered(env: WorkerEnv, run: runs.Run, digests: dict[str, str]) -> None:
    message = "finished before the worker died (its output is stored); not run again"
    batch: list[events.NewEvent] = []
    for step, digest in digests.items():
        output = {"digest": digest, "recovered": True}
        batch.append(_step_event(env, run, step, E.STEP_OUTPUT, "output: recovered", output))
        batch.append(_step_event(env, run, step, E.STEP_SUCCESS, message, {"recovered": True}))
    if batch:
        await env.store.append_events(batch)


def _step_event(
    env: WorkerEnv,
    run: runs.Run,
    step: str,
    kind: events.EventType,
    message: str,
    data: dict[str, object],
) -> events.NewEvent:
    return events.NewEvent(run.run_id, kind, env.clock(), step=step, message=message, data=data)


async def _note_reuse(env: WorkerEnv, run: runs.Run, input_runs: dict[str, str]) -> None:
    """Record which outputs this run reads from other runs of its lineage."""
    reused = {step: source for step, source in input_runs.items() if source != run.run_id}
    if not reused:
        return
    names = ", ".join(f"{step} (run {source})" for step, source in sorted(reused.items()))
    event = events.NewEvent(
        run_id=run.run_id,
        event_type=E.ENGINE,
        timestamp=env.clock(),
        message=f"reusing the outputs of {names}",
        data={"reused_outputs": reused},
    )
    await env.store.append_events([event])


def _location_settings(
    settings: settings_mod.InstanceSettings, run: runs.Run
) -> settings_mod.CodeLocationSettings:
    for location in settings.workspace:
        if location.location_name == run.code_location:
            return location
    raise errors.DefinitionError(
        f"run {run.run_id} belongs to code location {run.code_location!r}, "
        "which the workspace in vigil.yaml no longer lists"
    )


def _outputs(settings: settings_mod.InstanceSettings) -> outputs_mod.OutputStore:
    return outputs_mod.PickleOutputStore(blobs.open_root(settings.outputs_url, "storage_dir"))


def _logs_upload(settings: settings_mod.InstanceSettings) -> blobs.Root | None:
    """The root step logs are uploaded to, when `logs_dir` is not a local directory."""
    root = blobs.open_root(settings.compute_logs_url, "logs_dir")
    return None if root.is_local else root


async def _execute(
    env: WorkerEnv, plan: plan_mod.StepPlan, interrupt: _Interrupt, heart: heart_mod.Heart
) -> runs.RunStatus:
    result: executors_base.ExecutionResult | None = None
    async with sink_mod.batching_sink(heart) as sink:
        services = executors_base.ExecutionServices(
            sink=sink,
            outputs=_outputs(env.settings),
            compute_logs_dir=env.settings.compute_logs_dir,
            clock=env.clock,
            rand=random.random,
            logs_upload=_logs_upload(env.settings),
        )
        with anyio.CancelScope() as scope:
            interrupt.arm(scope)
            try:
                result = await env.executor.execute(plan, services)
            except Exception as exc:
                sink.emit(_engine_error(env, plan.run_id, exc))
        heart.stop()
        # The last step events are written with the run's end, in its transaction.
        return await _finish(env, plan, result, interrupt, await sink.take())


async def _watch_signals(signals: AsyncIterator[int], interrupt: _Interrupt) -> None:
    async for signum in signals:
        if interrupt.signum is None:
            interrupt.signum = signum
        if interrupt.scope is not None:
            interrupt.scope.cancel()


async def _finish(
    env: WorkerEnv,
    plan: plan_mod.StepPlan,
    result: executors_base.ExecutionResult | None,
    interrupt: _Interrupt,
    pending: Sequence[events.NewEvent],
) -> runs.RunStatus:
    if interrupt.signum is not None:
        name = signal.Signals(interrupt.signum).name
        message = f"worker received {name}"
        return await _end(env, plan.run_id, S.CANCELED, message, pending, R.CANCELED)
    if result is not None and result.ok:
        done = f"{len(result.succeeded)} steps succeeded"
        return await _end(env, plan.run_id, S.SUCCESS, done, pending)
    if result is None:
        message = "failed: the executor"
        return await _end(env, plan.run_id, S.FAILURE, message, pending, R.ERROR)
    message = f"failed: {', '.join(result.failed)}"
    return await _end(env, plan.run_id, S.FAILURE, message, pending, R.STEP_FAILURE)


async def _end(
    env: WorkerEnv,
    run_id: str,
    status: runs.RunStatus,
    message: str,
    pending: Sequence[events.NewEvent] = (),
    reason: runs.EndReason | None = None,
) -> runs.RunStatus:
    """End the run, writing the `pending` events before its end event in one transaction;
    a cancel requested meanwhile turns any end into CANCELED. Guarded by this worker's
    launch token: a worker whose run was given to another leaves it as it is."""
    expected = (S.STARTED, S.CANCELING) if status is S.CANCELED else (S.STARTED,)
    end = runs.RunEnd(status, message, reason, by="worker")
    with anyio.CancelScope(shield=True):
        if await env.store.end_run(run_id, expected, end, env.clock(), pending, env.token):
            return status
        current = await env.store.get_run(run_id)
        if await _ended_by_this_end(env, current, end):
            return status
        await env.store.append_events(pending)
        if current.status is not S.CANCELING or not _ours(env, current):
            return current.status
        canceled = runs.RunEnd(S.CANCELED, f"canceled ({message})", R.CANCELED, by="worker")
        await env.store.end_run(run_id, S.CANCELING, canceled, env.clock(), token=env.token)
    return S.CANCELED


END_EVENTS = (E.RUN_SUCCESS, E.RUN_FAILURE, E.RUN_CANCELED)


async def _ended_by_this_end(env: WorkerEnv, run: runs.Run, end: runs.RunEnd) -> bool:
    """Whether `end` is already written, with the events it carried: the connection
    dropped while it committed, so the store was unreachable for the worker's first
    attempt, and the retry found the run no longer STARTED (writing its events again
    would record each of them twice)."""
    if run.status is not end.status or not _ours(env, run):
        return False
    found = await env.store.get_events(run.run_id, event_types=END_EVENTS)
    return any(e.message == end.message and e.data.get("by") == end.by for e in found)


def _ours(env: WorkerEnv, run: runs.Run) -> bool:
    return env.token is None or run.launch_token == env.token


def _event(
    env: WorkerEnv,
    run_id: str,
    kind: events.EventType,
    message: str,
    data: dict[str, str] | None = None,
) -> events.NewEvent:
    return events.NewEvent(
        run_id=run_id, event_type=kind, timestamp=env.clock(), message=message, data=data or {}
    )


def _engine_error(env: WorkerEnv, run_id: str, exc: BaseException) -> events.NewEvent:
    return events.NewEvent(
        run_id=run_id,
        event_type=E.ENGINE,
        timestamp=env.clock(),
        level="ERROR",
        message=f"executor error: {type(exc).__name__}: {exc}",
        data={"traceback": "".join(traceback.format_exception(exc))},
    )
