"""Loops for the daemon's tests, named in vigil.yaml as `tests.daemon.loops:Class`.

Real extension loops, written only against `ExtensionLoop`: one that ticks, one that
raises every N iterations, one whose iterations block past their timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio

from vigil.config import settings
from vigil.daemon import extension

logger = logging.getLogger(__name__)


class Ticker(extension.ExtensionLoop):
    """Counts its iterations; logs the workspace it is given on reload."""

    default_name = "ticker"

    def __init__(self, options: extension.LoopOptions, context: extension.LoopContext) -> None:
        super().__init__(options, context)
        self.ticks = 0

    async def iterate(self) -> None:
        self.ticks += 1

    async def reload(self, workspace: Sequence[settings.CodeLocationSettings]) -> None:
        names = [location.location_name for location in workspace]
        logger.info(
            "ticker reloaded: %s",
            ", ".join(names),
            extra={"event": "ticker.reloaded", "loop": self.name, "locations": names},
        )


class FlakyOptions(extension.LoopOptions):
    every: int = 2  # the iterations whose number is a multiple of this raise


class Flaky(extension.ExtensionLoop):
    """Raises `RuntimeError('planned failure N')` on every `every`-th iteration."""

    Options = FlakyOptions
    default_name = "flaky"

    def __init__(self, options: extension.LoopOptions, context: extension.LoopContext) -> None:
        super().__init__(options, context)
        assert isinstance(options, FlakyOptions)
        if options.every < 1:
            raise ValueError("every must be at least 1")
        self.every = options.every
        self.count = 0

    async def iterate(self) -> None:
        self.count += 1
        if self.count % self.every == 0:
            raise RuntimeError(f"planned failure {self.count}")


class Blocker(extension.ExtensionLoop):
    """Every iteration waits forever (until cancelled): past its timeout it is hung."""

    default_name = "blocker"

    async def iterate(self) -> None:
        await anyio.sleep_forever()
