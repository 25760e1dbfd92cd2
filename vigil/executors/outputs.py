"""Step outputs, persisted so that a retried or resumed run can start from a failure."""

from __future__ import annotations

import abc
import os
import pathlib
import pickle
import uuid
from typing import Any

from vigil import errors


class OutputStore(abc.ABC):
    """Where step outputs live, by run id and step name."""

    @abc.abstractmethod
    def put(self, run_id: str, step: str, value: Any) -> str:
        """Persist a step's output; return a locator for the STEP_OUTPUT event."""

    @abc.abstractmethod
    def get(self, run_id: str, step: str) -> Any:
        """Read a step's output back; raise errors.NotFound when there is none."""

    @abc.abstractmethod
    def has(self, run_id: str, step: str) -> bool:
        """Whether a step's output is stored."""


class PickleOutputStore(OutputStore):
    """Pickle files at `base_dir/RUN_ID/STEP`, each written atomically."""

    def __init__(self, base_dir: pathlib.Path) -> None:
        self.base_dir = base_dir

    def put(self, run_id: str, step: str, value: Any) -> str:
        path = self._path(run_id, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{step}.{uuid.uuid4().hex}.tmp")
        try:
            with tmp.open("wb") as f:
                pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return str(path)

    def get(self, run_id: str, step: str) -> Any:
        path = self._path(run_id, step)
        try:
            with path.open("rb") as f:
                return pickle.load(f)
        except FileNotFoundError:
            raise errors.NotFound(
                f"run '{run_id}' has no stored output for step '{step}'"
            ) from None

    def has(self, run_id: str, step: str) -> bool:
        return self._path(run_id, step).is_file()

    def _path(self, run_id: str, step: str) -> pathlib.Path:
        for part in (run_id, step):
            if not part or part in (".", "..") or "/" in part or os.sep in part:
                raise ValueError(f"{part!r} cannot name a directory entry")
        return self.base_dir / run_id / step
