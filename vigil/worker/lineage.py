"""A run's lineage: which steps already succeeded, and where reused inputs come from.

A reused output is taken from a run of the lineage only where the store holds that run's
STEP_OUTPUT event with the digest of its bytes; the step then reads it only if the file
still has that digest. A file alone (planted by anyone who can write the outputs
directory) never makes an output.
"""

from __future__ import annotations

import dataclasses

from vigil import errors, events, runs
from vigil.definitions import job as job_mod
from vigil.executors import outputs as outputs_mod
from vigil.storage import store as store_mod


async def succeeded_steps(store: store_mod.LineageReader, run_id: str) -> frozenset[str]:
    """Steps of this run that have a STEP_SUCCESS event."""
    done = await store.get_events(run_id, event_types=(events.EventType.STEP_SUCCESS,))
    return frozenset(e.step for e in done if e.step is not None)


_OUTCOMES = (
    events.EventType.STEP_START,
    events.EventType.STEP_SUCCESS,
    events.EventType.STEP_FAILURE,
    events.EventType.STEP_SKIPPED,
)


async def done_steps(store: store_mod.LineageReader, run_id: str) -> frozenset[str]:
    """Steps done in this run's lineage: a re-execution from the failure skips them.

    From the root down to this run: a run's successful steps are done; a step it attempted
    (started, failed or skipped) without success is not, whatever its parents did.
    """
    chain: list[str] = []
    current: str | None = run_id
    while current is not None:
        chain.append(current)
        current = (await store.get_run(current)).parent_run_id
    done: set[str] = set()
    for member in reversed(chain):
        outcomes = await store.get_events(member, event_types=_OUTCOMES)
        attempted = {e.step for e in outcomes if e.step is not None}
        succeeded = {
            e.step for e in outcomes if e.event_type is events.EventType.STEP_SUCCESS and e.step
        }
        done = (done - attempted) | succeeded
    return frozenset(done)


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """The run whose stored output a step reads, and the digest that run recorded for it."""

    run_id: str
    digest: str


async def recorded_outputs(store: store_mod.LineageReader, run_id: str) -> dict[str, str]:
    """The digest each step's output had when this run wrote it (its last STEP_OUTPUT)."""
    recorded = await store.get_events(run_id, event_types=(events.EventType.STEP_OUTPUT,))
    digests: dict[str, str] = {}
    for event in recorded:
        digest = event.data.get("digest")
        if event.step is not None and isinstance(digest, str):
            digests[event.step] = digest
    return digests


async def input_runs(
    store: store_mod.LineageReader,
    outputs: outputs_mod.OutputStore,
    run: runs.Run,
    job: job_mod.JobDef,
    selected: tuple[str, ...],
) -> dict[str, Source]:
    """For each upstream outside `selected`, the nearest run of the lineage that recorded
    its output (with a digest) and still holds it.

    The lineage is the run itself (a resumed run keeps its own outputs), then its parent,
    the parent's parent and so on.
    """
    chosen = set(selected)
    needed = {up for step in selected for up in job.upstream(step) if up not in chosen}
    found: dict[str, Source] = {}
    current: runs.Run | None = run
    while needed and current is not None:
        recorded = await recorded_outputs(store, current.run_id)
        for step in sorted(needed & recorded.keys()):
            if outputs.has(current.run_id, step):
                found[step] = Source(current.run_id, recorded[step])
        needed -= found.keys()
        parent = current.parent_run_id
        current = await store.get_run(parent) if parent else None
    if needed:
        missing = ", ".join(sorted(needed))
        raise errors.MissingOutputs(
            f"run {run.run_id} needs the outputs of {missing}, which no run of its lineage kept"
        )
    return found
