"""The run launcher interface: how a run gets a worker, and how vigil watches it."""

from __future__ import annotations

import abc
import dataclasses
import enum
import pathlib
from collections.abc import Mapping
from typing import Any, ClassVar

import anyio
import pydantic

from vigil import runs


class WorkerHealth(enum.StrEnum):
    RUNNING = "RUNNING"
    DEAD = "DEAD"
    UNKNOWN = "UNKNOWN"  # the launcher cannot tell; never to be taken for DEAD


@dataclasses.dataclass(frozen=True, slots=True)
class HealthCheck:
    health: WorkerHealth
    detail: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class LaunchContext:
    """What every launcher may need from the instance, resolved at the edge."""

    home: pathlib.Path
    logs_dir: pathlib.Path
    environ: Mapping[str, str]
    working_directory: pathlib.Path


class NoOptions(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class RunLauncher(abc.ABC):
    """Gives runs their workers. Subclass it, declare `Options`, name it in vigil.yaml."""

    Options: ClassVar[type[pydantic.BaseModel]] = NoOptions
    supports_resume: ClassVar[bool] = False

    def __init__(self, options: pydantic.BaseModel, context: LaunchContext) -> None:
        self.options = options
        self.context = context

    @classmethod
    def reachable(cls, options: pydantic.BaseModel) -> str | None:
        """Why the service these options name cannot be reached (`vigil config check`), in
        one line that begins with the key (`run_launcher.options.KEY: ...`); None when it
        can, or when the launcher needs none (the default)."""
        return None

    @abc.abstractmethod
    async def launch(self, run: runs.Run) -> Mapping[str, Any]:
        """Start a worker for a STARTING run; returns facts to record as launcher_info.

        Raises LaunchError when no worker could be started.
        """

    @abc.abstractmethod
    async def terminate(self, run: runs.Run) -> bool:
        """Ask the run's worker to stop (it ends the run CANCELED); False if none is alive."""

    @abc.abstractmethod
    async def check_worker_health(self, run: runs.Run) -> HealthCheck:
        """Whether the run's worker is RUNNING, DEAD, or UNKNOWN (cannot tell)."""

    async def resume(self, run: runs.Run) -> Mapping[str, Any]:
        """Start a new worker that continues a STARTED run whose worker died."""
        raise NotImplementedError(f"{type(self).__name__} cannot resume runs")

    async def kill(self, run: runs.Run) -> bool:
        """Stop the run's worker at once, whatever it is doing; False if none is alive.

        Default: `terminate`. A launcher that can should kill the worker's whole group.
        """
        return await self.terminate(run)

    async def wait_for_exits(self) -> None:
        """Return when a worker this launcher started has exited (the monitor then checks).

        Only workers of this launcher object; others are found by the monitor's poll.
        Default: never (a launcher without exit notices relies on the poll alone).
        """
        await anyio.sleep_forever()

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release whatever the launcher holds."""
