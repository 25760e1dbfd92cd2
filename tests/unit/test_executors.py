"""Both executors against the same jobs: order, failures, retries, crashes, logs, cancellation."""

from __future__ import annotations

import dataclasses
import hashlib
import multiprocessing
import os
import pathlib
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import psutil
import pydantic
import pytest

from vigil import blobs, errors, events
from vigil.definitions import job, step
from vigil.executors import (
    LOCAL_EXECUTORS,
    ExecutionResult,
    ExecutionServices,
    Executor,
    InProcessExecutor,
    MultiprocessExecutor,
    MultiprocessOptions,
    PickleOutputStore,
    StepContext,
    StepPlan,
)

E = events.EventType
NOW = 1000.0
WAIT_DEADLINE = 30.0
BARRIERS: dict[str, Any] = {}


# --- the steps the tests run (module level, so forked children have them) -------------------


@step.step
def c0() -> int:
    return 1


@step.step
def c1(c0: int) -> int:
    return c0 + 1


@step.step
def c2(c1: int) -> int:
    return c1 + 1


@step.step
def root() -> int:
    return 2


@step.step
def left(root: int) -> int:
    return root * 10


@step.step
def right(root: int) -> int:
    return root * 100


@step.step
def join(left: int, right: int) -> int:
    return left + right


@step.step
def bad(root: int) -> int:
    raise ValueError(f"boom at {root}")


@step.step
def after_bad(bad: int) -> int:
    return bad


@step.step
def after_after(after_bad: int) -> int:
    return after_bad


@step.step(retry=step.RetryPolicy(max_retries=2, delay=0.01, jitter=0.5))
def flaky(context: StepContext) -> int:
    if context.attempt < 2:
        raise RuntimeError("not yet")
    return context.attempt


@step.step(retry=step.RetryPolicy(max_retries=1))
def hopeless() -> None:
    raise RuntimeError("never")


@step.step
def killed() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@step.step
def exits() -> None:
    os._exit(3)


@step.step(retry=step.RetryPolicy(max_retries=1))
def crash_once(context: StepContext) -> str:
    if context.attempt == 1:
        os._exit(3)
    return "recovered"


@step.step
def noisy() -> str:
    print("to stdout")
    print("to stderr", file=sys.stderr)
    return "done"


@step.step
def raw_noisy() -> None:
    os.write(1, b"raw fd 1\n")
    os.write(2, b"raw fd 2\n")


class Size(pydantic.BaseModel):
    rows: int
    label: str = "x"


@step.step
def configured(config: Size) -> str:
    return f"{config.label}{config.rows * 2}"


@step.step
def chatty(context: StepContext) -> str:
    context.log.debug("d", n=1)
    context.log.info("i")
    context.log.warning("w", n=2)
    context.log.error("e", n=3)
    return f"{context.run_id}/{context.job_name}/{context.step}/{context.attempt}"


@step.step
def odd_log(context: StepContext) -> None:
    context.log.info("odd", fn=lambda: 1)


@step.step
def unpicklable() -> Callable[[], int]:
    return lambda: 1


@step.step
def source() -> int:
    return 1


@step.step
def double(source: int) -> int:
    return source * 2


@step.step
def meet_a(root: int) -> int:
    BARRIERS["pair"].wait(timeout=30)
    return root


@step.step
def meet_b(root: int) -> int:
    BARRIERS["pair"].wait(timeout=30)
    return root


@step.step
def hang(context: StepContext) -> None:
    context.log.info("started", pid=os.getpid())
    threading.Event().wait()


@step.step
def stubborn(context: StepContext) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    context.log.info("started", pid=os.getpid())
    threading.Event().wait()


# --- harness -----------------------------------------------------------------------------


class ListSink:
    """Collects events from any thread; tests wait on it with a deadline, never a sleep."""

    def __init__(self) -> None:
        self.events: list[events.NewEvent] = []
        self._cond = threading.Condition()

    def emit(self, event: events.NewEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def of(self, event_type: events.EventType, step_name: str | None = None) -> list[Any]:
        with self._cond:
            return [
                e for e in self.events if e.event_type == event_type and step_name in (None, e.step)
            ]

    async def wait_for(self, predicate: Callable[[list[events.NewEvent]], bool]) -> None:
        def wait() -> bool:
            with self._cond:
                return self._cond.wait_for(lambda: predicate(self.events), WAIT_DEADLINE)

        assert await anyio.to_thread.run_sync(wait), "condition not met before the deadline"


@dataclasses.dataclass
class Harness:
    tmp_path: pathlib.Path
    sink: ListSink = dataclasses.field(default_factory=ListSink)

    @property
    def outputs(self) -> PickleOutputStore:
        return PickleOutputStore(blobs.LocalRoot(self.tmp_path / "outputs"))

    def output(self, run_id: str, step_name: str) -> Any:
        """A stored output, read by the digest its file has now (the tests wrote it)."""
        return self.outputs.get(run_id, step_name, self.outputs.digest(run_id, step_name))

    @property
    def services(self) -> ExecutionServices:
        return ExecutionServices(
            sink=self.sink,
            outputs=self.outputs,
            compute_logs_dir=self.tmp_path / "logs",
            clock=lambda: NOW,
            rand=lambda: 0.75,
        )

    def plan(
        self, the_job: job.JobDef, run_config: Mapping[str, Any] | None = None, run_id: str = "r1"
    ) -> StepPlan:
        return StepPlan.for_job(run_id, the_job, the_job.validate_run_config(run_config or {}))

    async def run(
        self,
        executor: Executor,
        steps: list[step.StepDef],
        run_config: Mapping[str, Any] | None = None,
    ) -> ExecutionResult:
        return await executor.execute(self.plan(job.job("j", steps), run_config), self.services)

    def log_text(self, step_name: str, stream: str, run_id: str = "r1") -> str:
        return (self.tmp_path / "logs" / run_id / step_name / f"{stream}.log").read_text()

    def kinds(self, step_name: str) -> list[events.EventType]:
        return [e.event_type for e in self.sink.events if e.step == step_name]


@pytest.fixture
def harness(tmp_path: pathlib.Path) -> Harness:
    return Harness(tmp_path)


@pytest.fixture(params=sorted(LOCAL_EXECUTORS))
def executor(request: pytest.FixtureRequest) -> Executor:
    return LOCAL_EXECUTORS[request.param].from_options({})


@pytest.fixture
def multiprocess() -> MultiprocessExecutor:
    return MultiprocessExecutor(MultiprocessOptions(max_concurrent=4, terminate_grace=0.2))


# --- both executors ------------------------------------------------------------------------


async def test_chain_runs_in_order_and_passes_outputs(executor: Executor, harness: Harness) -> None:
    result = await harness.run(executor, [c2, c0, c1])
    assert result == ExecutionResult(succeeded=("c0", "c1", "c2"))
    assert result.ok
    assert harness.output("r1", "c2") == 3
    starts = [e.step for e in harness.sink.of(E.STEP_START)]
    assert starts == ["c0", "c1", "c2"]
    assert harness.kinds("c1") == [E.STEP_START, E.STEP_OUTPUT, E.STEP_SUCCESS]
    output = harness.sink.of(E.STEP_OUTPUT, "c2")[0]
    assert output.data == {
        "locator": str(harness.tmp_path / "outputs/r1/c2"),
        "type": "int",
        "digest": harness.outputs.digest("r1", "c2"),
    }
    assert harness.sink.of(E.STEP_START, "c0")[0].data == {"attempt": 1}
    assert harness.sink.of(E.STEP_SUCCESS, "c0")[0].data == {"attempt": 1, "duration": 0.0}
    assert all(e.timestamp == NOW and e.run_id == "r1" for e in harness.sink.events)


async def test_fan_out_and_fan_in(executor: Executor, harness: Harness) -> None:
    result = await harness.run(executor, [root, left, right, join])
    assert set(result.succeeded) == {"root", "left", "right", "join"}
    assert harness.output("r1", "join") == 220


async def test_a_failure_skips_downstream_while_an_independent_branch_runs(
    executor: Executor, harness: Harness
) -> None:
    result = await harness.run(executor, [root, bad, after_bad, after_after, left])
    assert result == ExecutionResult(
        succeeded=("root", "left"), failed=("bad",), skipped=("after_bad", "after_after")
    )
    assert not result.ok
    failure = harness.sink.of(E.STEP_FAILURE, "bad")[0]
    assert failure.message == "ValueError: boom at 2"
    assert failure.data["error_type"] == "ValueError"
    assert failure.data["message"] == "boom at 2"
    assert failure.data["attempt"] == 1
    assert 'raise ValueError(f"boom at {root}")' in failure.data["traceback"]
    skipped = harness.sink.of(E.STEP_SKIPPED, "after_bad")[0]
    assert skipped.message == "skipped: upstream step 'bad' failed"
    transitive = harness.sink.of(E.STEP_SKIPPED, "after_after")[0]
    assert "'after_bad' was skipped because step 'bad' failed" in transitive.message
    assert transitive.data == {"upstream": "after_bad", "failed_step": "bad"}
    assert harness.kinds("after_after") == [E.STEP_SKIPPED]


async def test_a_retry_policy_retries_until_success(executor: Executor, harness: Harness) -> None:
    result = await harness.run(executor, [flaky])
    assert result.succeeded == ("flaky",)
    assert harness.output("r1", "flaky") == 2
    assert harness.kinds("flaky") == [
        E.STEP_START,
        E.STEP_RETRY,
        E.STEP_START,
        E.STEP_OUTPUT,
        E.STEP_SUCCESS,
    ]
    retry = harness.sink.of(E.STEP_RETRY)[0]
    # delay 0.01 with jitter 0.5 and rand 0.75: 0.01 * (1 + 0.5 * 0.5)
    assert retry.data["delay"] == pytest.approx(0.0125)
    assert retry.data["attempt"] == 1
    assert retry.data["error_type"] == "RuntimeError"
    assert [e.data["attempt"] for e in harness.sink.of(E.STEP_START)] == [1, 2]


async def test_exhausted_retries_end_in_failure(executor: Executor, harness: Harness) -> None:
    result = await harness.run(executor, [hopeless])
    assert result.failed == ("hopeless",)
    assert harness.kinds("hopeless") == [E.STEP_START, E.STEP_RETRY, E.STEP_START, E.STEP_FAILURE]
    assert harness.sink.of(E.STEP_FAILURE)[0].data["attempt"] == 2


async def test_stdout_and_stderr_go_to_compute_logs(executor: Executor, harness: Harness) -> None:
    await harness.run(executor, [noisy])
    await harness.run(executor, [noisy])
    assert harness.log_text("noisy", "stdout") == "to stdout\nto stdout\n"
    assert harness.log_text("noisy", "stderr") == "to stderr\nto stderr\n"


async def test_logs_are_uploaded_to_a_url_after_each_attempt(
    executor: Executor, harness: Harness
) -> None:
    remote = harness.tmp_path / "remote"
    services = dataclasses.replace(
        harness.services, logs_upload=blobs.open_root(f"local://{remote}", "logs_dir")
    )
    result = await executor.execute(harness.plan(job.job("j", [noisy])), services)
    assert result.ok
    assert (remote / "r1" / "noisy" / "stdout.log").read_text() == "to stdout\n"
    assert (remote / "r1" / "noisy" / "stderr.log").read_text() == "to stderr\n"


async def test_a_failed_log_upload_is_a_warning_not_a_failed_step(
    executor: Executor, harness: Harness
) -> None:
    blocker = harness.tmp_path / "a-file"
    blocker.write_text("not a directory")
    services = dataclasses.replace(
        harness.services, logs_upload=blobs.open_root(f"local://{blocker}", "logs_dir")
    )
    result = await executor.execute(harness.plan(job.job("j", [noisy])), services)
    assert result.ok
    warnings = [e for e in harness.sink.of(E.ENGINE, "noisy") if e.level == "WARNING"]
    assert len(warnings) == 1
    assert "could not upload the compute logs of step noisy" in warnings[0].message
    assert harness.log_text("noisy", "stdout") == "to stdout\n"  # still on this machine


async def test_config_is_validated_and_injected(executor: Executor, harness: Harness) -> None:
    await harness.run(executor, [configured], {"steps": {"configured": {"rows": "21"}}})
    assert harness.output("r1", "configured") == "x42"


async def test_context_log_emits_log_events(executor: Executor, harness: Harness) -> None:
    await harness.run(executor, [chatty])
    logs = [(e.level, e.message, dict(e.data)) for e in harness.sink.of(E.LOG, "chatty")]
    assert logs == [
        ("DEBUG", "d", {"n": 1}),
        ("INFO", "i", {}),
        ("WARNING", "w", {"n": 2}),
        ("ERROR", "e", {"n": 3}),
    ]
    assert harness.output("r1", "chatty") == "r1/j/chatty/1"
    assert all(e.timestamp == NOW and e.run_id == "r1" for e in harness.sink.of(E.LOG))


async def test_inputs_come_from_a_parent_run(executor: Executor, harness: Harness) -> None:
    the_job = job.job("j", [source, double])
    stored = harness.outputs.put("parent", "source", 21)
    plan = StepPlan.from_failed_steps(
        "child", the_job, the_job.validate_run_config({}), ["double"], parent_run_id="parent"
    )
    assert plan.steps == ("double",)
    assert plan.input_runs == {"source": "parent"}
    plan = dataclasses.replace(plan, input_digests={"source": stored.digest})
    result = await executor.execute(plan, harness.services)
    assert result.succeeded == ("double",)
    assert harness.output("child", "double") == 42
    assert not harness.outputs.has("child", "source")


async def test_a_missing_upstream_output_fails_the_step(
    executor: Executor, harness: Harness
) -> None:
    the_job = job.job("j", [source, double])
    plan = StepPlan.for_steps(
        "child", the_job, the_job.validate_run_config({}), ["double"], parent_run_id="gone"
    )
    plan = dataclasses.replace(plan, input_digests={"source": "sha256:" + "0" * 64})
    result = await executor.execute(plan, harness.services)
    assert result.failed == ("double",)
    failure = harness.sink.of(E.STEP_FAILURE)[0]
    assert failure.message == "NotFound: run 'gone' has no stored output for step 'source'"


class Planted:
    """A pickle that, once loaded, leaves a marker file: proof that it was unpickled."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


async def test_an_output_planted_over_a_parents_is_refused_unread(
    executor: Executor, harness: Harness
) -> None:
    the_job = job.job("j", [source, double])
    stored = harness.outputs.put("parent", "source", 21)
    marker = harness.tmp_path / "unpickled"
    with open(stored.locator, "wb") as planted:  # noqa: ASYNC230 - a small local file
        pickle.dump(Planted(marker), planted)
    plan = StepPlan.for_steps(
        "child", the_job, the_job.validate_run_config({}), ["double"], parent_run_id="parent"
    )
    plan = dataclasses.replace(plan, input_digests={"source": stored.digest})
    result = await executor.execute(plan, harness.services)
    assert result.failed == ("double",)
    [failure] = harness.sink.of(E.STEP_FAILURE)
    assert failure.message == (
        "OutputMismatch: output of step source from run parent does not match what that run "
        "recorded: refusing to load it"
    )
    assert not marker.exists()


async def test_an_upstream_without_a_recorded_digest_is_refused(
    executor: Executor, harness: Harness
) -> None:
    the_job = job.job("j", [source, double])
    harness.outputs.put("parent", "source", 21)
    plan = StepPlan.for_steps(
        "child", the_job, the_job.validate_run_config({}), ["double"], parent_run_id="parent"
    )
    result = await executor.execute(plan, harness.services)
    assert result.failed == ("double",)
    [failure] = harness.sink.of(E.STEP_FAILURE)
    assert "has no recorded digest: refusing to load it" in failure.message


async def test_an_output_that_does_not_pickle_fails_the_step(
    executor: Executor, harness: Harness
) -> None:
    result = await harness.run(executor, [unpicklable])
    assert result.failed == ("unpicklable",)
    assert "pickle" in harness.sink.of(E.STEP_FAILURE)[0].message.lower()


# --- the multiprocess executor -------------------------------------------------------------


async def test_a_step_killed_by_a_signal_fails_naming_it(
    multiprocess: MultiprocessExecutor, harness: Harness
) -> None:
    result = await harness.run(multiprocess, [killed])
    assert result.failed == ("killed",)
    failure = harness.sink.of(E.STEP_FAILURE)[0]
    assert failure.message == "StepProcessCrashed: step process was killed by signal SIGKILL"
    assert failure.data["signal"] == "SIGKILL"


async def test_a_step_process_exiting_early_fails_with_its_exit_code(
    multiprocess: MultiprocessExecutor, harness: Harness
) -> None:
    result = await harness.run(multiprocess, [root, exits, left])
    assert result == ExecutionResult(succeeded=("root", "left"), failed=("exits",))
    failure = harness.sink.of(E.STEP_FAILURE)[0]
    assert "step process exited with code 3" in failure.message
    assert failure.data["exit_code"] == 3


async def test_a_crashed_step_is_retried(
    multiprocess: MultiprocessExecutor, harness: Harness
) -> None:
    result = await harness.run(multiprocess, [crash_once])
    assert result.succeeded == ("crash_once",)
    assert harness.output("r1", "crash_once") == "recovered"
    retry = harness.sink.of(E.STEP_RETRY)[0]
    assert retry.data["error_type"] == "StepProcessCrashed"


async def test_c_level_output_is_captured(
    multiprocess: MultiprocessExecutor, harness: Harness
) -> None:
    await harness.run(multiprocess, [raw_noisy])
    assert harness.log_text("raw_noisy", "stdout") == "raw fd 1\n"
    assert harness.log_text("raw_noisy", "stderr") == "raw fd 2\n"


async def test_log_data_that_does_not_pickle_arrives_as_text(
    multiprocess: MultiprocessExecutor, harness: Harness
) -> None:
    await harness.run(multiprocess, [odd_log])
    (log,) = harness.sink.of(E.LOG)
    assert log.data["fn"].startswith("<function")


async def test_independent_steps_run_at_the_same_time(
    multiprocess: MultiprocessExecutor, harness: Harness
) -> None:
    BARRIERS["pair"] = multiprocessing.get_context("fork").Barrier(2)
    try:
        result = await harness.run(multiprocess, [root, meet_a, meet_b])
    finally:
        del BARRIERS["pair"]
    assert result.ok, harness.sink.of(E.STEP_FAILURE)


async def test_max_concurrent_one_never_overlaps_steps(harness: Harness) -> None:
    serial = MultiprocessExecutor(MultiprocessOptions(max_concurrent=1))
    result = await harness.run(serial, [root, left, right, join, c0])
    assert result.ok
    running: set[str] = set()
    for event in harness.sink.events:
        if event.event_type == E.STEP_START:
            assert not running, f"{event.step} started while {running} ran"
            running.add(event.step or "")
        elif event.event_type in (E.STEP_SUCCESS, E.STEP_FAILURE):
            running.discard(event.step or "")


async def test_cancellation_stops_and_reaps_every_step_process(
    multiprocess: MultiprocessExecutor, harness: Harness
) -> None:
    plan = harness.plan(job.job("j", [hang, stubborn]))

    def both_started(seen: list[events.NewEvent]) -> bool:
        return sum(e.event_type == E.LOG for e in seen) == 2

    async with anyio.create_task_group() as tg:
        tg.start_soon(multiprocess.execute, plan, harness.services)
        await harness.sink.wait_for(both_started)
        tg.cancel_scope.cancel()
    pids = [e.data["pid"] for e in harness.sink.of(E.LOG)]
    assert len(pids) == 2
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    for pid in pids:
        assert not psutil.pid_exists(pid), f"step process {pid} is still around"
        assert pid not in children


# --- plans, options and outputs -------------------------------------------------------------


def test_a_plan_refuses_steps_out_of_order_or_without_inputs() -> None:
    the_job = job.job("j", [source, double])
    with pytest.raises(ValueError, match="topological order"):
        StepPlan("r", the_job, ("double", "source"), {})
    with pytest.raises(ValueError, match="no run to read inputs"):
        StepPlan("r", the_job, ("double",), {})
    with pytest.raises(errors.NotFound):
        StepPlan.for_steps("r", the_job, {}, ["triple"], parent_run_id="p")


def test_a_plan_follows_the_parents_own_input_runs() -> None:
    the_job = job.job("j", [c0, c1, c2])
    plan = StepPlan.from_failed_steps(
        "r3", the_job, {}, ["c2"], parent_run_id="r2", parent_input_runs={"c0": "r1"}
    )
    assert plan.steps == ("c2",)
    assert plan.input_runs == {"c1": "r2"}
    assert plan.source_run("c1") == "r2"


def test_executor_options_are_validated() -> None:
    assert isinstance(InProcessExecutor.from_options({}), InProcessExecutor)
    built = MultiprocessExecutor.from_options({"max_concurrent": 3})
    assert built.options == MultiprocessOptions(max_concurrent=3)
    with pytest.raises(errors.PluginError, match="max_concurrent"):
        MultiprocessExecutor.from_options({"max_concurrent": 0})
    with pytest.raises(errors.PluginError, match="bogus"):
        InProcessExecutor.from_options({"bogus": 1})
    with pytest.raises(errors.PluginError, match="MultiprocessOptions"):
        MultiprocessExecutor(InProcessExecutor.Options())


def test_pickle_output_store_round_trips_atomically(tmp_path: pathlib.Path) -> None:
    store = PickleOutputStore(blobs.LocalRoot(tmp_path))
    stored = store.put("r1", "s", {"a": [1, 2]})
    assert stored.locator == str(tmp_path / "r1" / "s")
    data = (tmp_path / "r1" / "s").read_bytes()
    assert stored.digest == "sha256:" + hashlib.sha256(data).hexdigest() == store.digest("r1", "s")
    assert store.get("r1", "s", stored.digest) == {"a": [1, 2]}
    assert store.has("r1", "s")
    assert not store.has("r1", "t")
    assert os.listdir(tmp_path / "r1") == ["s"]
    with pytest.raises(errors.NotFound, match="run 'r1' has no stored output for step 't'"):
        store.get("r1", "t", stored.digest)
    with pytest.raises(errors.OutputMismatch, match="output of step s from run r1 does not"):
        store.get("r1", "s", "sha256:" + "0" * 64)
    with pytest.raises(ValueError, match="cannot name"):
        store.put("..", "s", 1)
