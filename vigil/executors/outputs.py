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
import pathlib
import pickle
from typing import Any

from vigil import errors, filemodes

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
    """A file-like sink for `pickle.dump` that hashes what it writes."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self.hash.update(view)
        while view:
            view = view[os.write(self._fd, view) :]
        return len(data)


class PickleOutputStore(OutputStore):
    """Pickle files at `base_dir/RUN_ID/STEP` (0600 in 0700 directories), each written to a
    temporary file in the same directory, flushed to disk and renamed into place."""

    def __init__(self, base_dir: pathlib.Path) -> None:
        self.base_dir = base_dir

    def put(self, run_id: str, step: str, value: Any) -> Stored:
        path = self._path(run_id, step)
        filemodes.private_dirs(path.parent)
        tmp = path.with_name(f".{step}.{os.urandom(8).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, filemodes.FILE_MODE)
        try:
            writer = _HashingWriter(fd)
            pickle.dump(value, writer, protocol=pickle.HIGHEST_PROTOCOL)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, path)
        finally:
            if fd >= 0:
                os.close(fd)
            tmp.unlink(missing_ok=True)
        _sync_directory(path.parent)
        return Stored(str(path), DIGEST_PREFIX + writer.hash.hexdigest())

    def get(self, run_id: str, step: str, digest: str) -> Any:
        data = self._read(run_id, step)
        if DIGEST_PREFIX + hashlib.sha256(data).hexdigest() != digest:
            raise errors.OutputMismatch(
                f"output of step {step} from run {run_id} does not match what that run "
                "recorded: refusing to load it"
            )
        return pickle.loads(data)  # the bytes the run recorded, checked above

    def has(self, run_id: str, step: str) -> bool:
        return self._path(run_id, step).is_file()

    def digest(self, run_id: str, step: str) -> str:
        return DIGEST_PREFIX + hashlib.sha256(self._read(run_id, step)).hexdigest()

    def _read(self, run_id: str, step: str) -> bytes:
        try:
            return self._path(run_id, step).read_bytes()
        except FileNotFoundError:
            raise errors.NotFound(
                f"run '{run_id}' has no stored output for step '{step}'"
            ) from None

    def _path(self, run_id: str, step: str) -> pathlib.Path:
        for part in (run_id, step):
            if not part or part in (".", "..") or "/" in part or os.sep in part:
                raise ValueError(f"{part!r} cannot name a directory entry")
        return self.base_dir / run_id / step


def _sync_directory(directory: pathlib.Path) -> None:
    """Make the rename durable: flush the directory entry too."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
