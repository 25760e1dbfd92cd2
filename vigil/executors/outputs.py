"""Step outputs, persisted so that a retried or resumed run can start from a failure.

An output is read only as the bytes its run recorded: `put` returns the output's sha256,
which the executor records in the step's STEP_OUTPUT event, in the store; `get` takes the
digest the reader expects (from that event, or from this run's own `put`) and refuses any
other bytes before unpickling them (`OutputMismatch`). A file planted in the outputs
directory by another job is never loaded.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import os
import pickle
from typing import Any

from vigil import blobs, errors

DIGEST_PREFIX = "sha256:"


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    """Where an output was written (for the STEP_OUTPUT event) and the digest of its bytes."""

    locator: str
    digest: str


class OutputStore(abc.ABC):
    """Where step outputs live, by run id and step name."""

    @abc.abstractmethod
    def put(self, run_id: str, step: str, value: Any) -> Stored:
        """Persist a step's output atomically; its locator and digest."""

    @abc.abstractmethod
    def get(self, run_id: str, step: str, digest: str) -> Any:
        """Read a step's output back if its bytes have `digest`; raise errors.NotFound when
        there is none and errors.OutputMismatch, before unpickling, when they differ."""

    @abc.abstractmethod
    def has(self, run_id: str, step: str) -> bool:
        """Whether a step's output is stored."""

    @abc.abstractmethod
    def digest(self, run_id: str, step: str) -> str:
        """The digest of the stored bytes as they are now (errors.NotFound if none)."""


class _HashingWriter:
    """A file-like sink for `pickle.dump` that hashes what it passes on to `sink`."""

    def __init__(self, sink: blobs.Sink) -> None:
        self._sink = sink
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self._sink.write(data)
        return len(data)


class PickleOutputStore(OutputStore):
    """Pickle files at `ROOT/RUN_ID/STEP` under a blobs root (a local directory or an
    fsspec URL), each written atomically (see `vigil.blobs`)."""

    def __init__(self, root: blobs.Root) -> None:
        self.root = root

    def put(self, run_id: str, step: str, value: Any) -> Stored:
        writers: list[_HashingWriter] = []

        def fill(sink: blobs.Sink) -> None:
            writers.append(_HashingWriter(sink))
            pickle.dump(value, writers[0], protocol=pickle.HIGHEST_PROTOCOL)

        locator = self.root.put(_key(run_id, step), fill)
        return Stored(locator, DIGEST_PREFIX + writers[0].hash.hexdigest())

    def get(self, run_id: str, step: str, digest: str) -> Any:
        data = self._read(run_id, step)
        if DIGEST_PREFIX + hashlib.sha256(data).hexdigest() != digest:
            raise errors.OutputMismatch(
                f"output of step {step} from run {run_id} does not match what that run "
                "recorded: refusing to load it"
            )
        return pickle.loads(data)  # the bytes the run recorded, checked above

    def has(self, run_id: str, step: str) -> bool:
        return self.root.is_file(_key(run_id, step))

    def digest(self, run_id: str, step: str) -> str:
        return DIGEST_PREFIX + hashlib.sha256(self._read(run_id, step)).hexdigest()

    def _read(self, run_id: str, step: str) -> bytes:
        try:
            return self.root.read(_key(run_id, step))
        except FileNotFoundError:
            raise errors.NotFound(
                f"run '{run_id}' has no stored output for step '{step}'"
            ) from None


def _key(run_id: str, step: str) -> str:
    for part in (run_id, step):
        if not part or part in (".", "..") or "/" in part or os.sep in part:
            raise ValueError(f"{part!r} cannot name a directory entry")
    return f"{run_id}/{step}"
