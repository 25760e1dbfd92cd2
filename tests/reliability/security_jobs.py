"""Jobs of the security checks (tests/reliability/test_security.py).

- environment: returns what its process can read of its environment (`os.environ` and
  `/proc/self/environ`), so the test can look for secrets in it.
- victim: `produce` stores an output, `consume` fails the first time (run config names a
  marker file) so that a re-execution reads `produce`'s stored output.
- planter: writes a pickle over the path named in its run config; loading that pickle
  creates the marker file it names (its `__reduce__` opens the file for writing).
"""

from __future__ import annotations

import os
import pathlib
import pickle
from typing import Any

import pydantic

from vigil import Definitions, job, step


@step
def look() -> dict[str, Any]:
    return {
        "environ": dict(os.environ),
        "proc": pathlib.Path("/proc/self/environ").read_bytes().decode(errors="replace"),
    }


class MarkerConfig(pydantic.BaseModel):
    marker: str


@step
def produce() -> int:
    return 41


@step
def consume(produce: int, config: MarkerConfig) -> int:
    marker = pathlib.Path(config.marker)
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("failing the first time on purpose")
    return produce + 1


class Planted:
    """Once unpickled, the marker file exists."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


class PlantConfig(pydantic.BaseModel):
    target: str
    marker: str


@step
def plant(config: PlantConfig) -> str:
    target = pathlib.Path(config.target)
    target.write_bytes(pickle.dumps(Planted(config.marker)))
    return str(target)


defs = Definitions(
    jobs=[
        job("environment", [look]),
        job("victim", [produce, consume]),
        job("planter", [plant]),
    ]
)
