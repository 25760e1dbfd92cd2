"""An evaluator pool served as the daemon serves it, for fixtures and tests."""

from __future__ import annotations

import asyncio
import contextlib

import anyio

from vigil.evaluation import pool


def serve(evaluators: pool.EvaluatorPool) -> asyncio.Task[None]:
    """Serve the pool in a task of its own, as a daemon service does (a fixture's setup
    and teardown may run in different tasks, so no task group can span its yield)."""
    return asyncio.get_running_loop().create_task(evaluators.serve())


async def stop(evaluators: pool.EvaluatorPool, served: asyncio.Task[None]) -> None:
    await evaluators.close()
    served.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await served


async def loaded(evaluators: pool.EvaluatorPool) -> list[pool.LocationCatalog]:
    """The catalogs once no location is loading any more (a loaded machine may take a
    location longer to import than `catalogs` waits)."""
    with anyio.fail_after(60):
        while True:
            found = await evaluators.catalogs()
            if not any(c.loading for c in found):
                return found
            await anyio.sleep(0.05)
