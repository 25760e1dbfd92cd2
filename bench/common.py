"""What the benchmarks share: an instance in a temp dir, a PostgreSQL server, figures.

Each benchmark drives vigil's own API the way `vigil run launch --wait` does (coordinator,
subprocess launcher, a real worker process), keeping one store and launcher open across
runs as the daemon will, and prints the median and spread of several runs.
"""

from __future__ import annotations

import contextlib
import pathlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from tests import pg_server
from vigil import assembly, runs, submission
from vigil.config import loader
from vigil.definitions import workspace as workspace_mod
from vigil.storage import engine
from vigil.storage import store as store_mod

REPO = pathlib.Path(__file__).resolve().parents[1]

JOBS = REPO / "bench" / "jobs.py"


def figures(name: str, samples: Sequence[float], unit: str = "ms", scale: float = 1000.0) -> str:
    """One line: median, min, max and population stdev of the samples."""
    scaled = [s * scale for s in samples]
    return (
        f"{name}: median {statistics.median(scaled):.1f} {unit}, "
        f"min {min(scaled):.1f}, max {max(scaled):.1f}, "
        f"stdev {statistics.pstdev(scaled):.1f} over {len(scaled)} runs"
    )


@contextlib.contextmanager
def postgres_server() -> Iterator[pg_server.Server]:
    """A throwaway PostgreSQL server with its default durability settings (its `pid` is
    the postmaster's, whose reaped backends' CPU time is the server's work)."""
    server = pg_server.start(pg_server.find_bindir(), durable=True)
    try:
        yield server
    finally:
        pg_server.stop(server)


@contextlib.contextmanager
def postgres() -> Iterator[sa.engine.URL]:
    """A throwaway PostgreSQL server with its default durability settings."""
    with postgres_server() as server:
        yield server.url


def config_yaml(
    pg_url: sa.engine.URL | None, executor: str = "multiprocess", immediate: bool = True
) -> str:
    """The bench instance; `immediate` launches runs in the submitting process (no daemon)."""
    text = f"workspace:\n  - name: bench\n    file: {JOBS}\nexecutor:\n  type: {executor}\n"
    if immediate:
        text += "run_coordinator:\n  type: immediate\n"
    if pg_url is not None:
        text += (
            "store:\n  kind: postgres\n  postgres:\n"
            f"    host: {pg_url.host}\n    port: {pg_url.port}\n"
            f"    user: {pg_url.username}\n    database: {pg_url.database}\n"
        )
    return text


@contextlib.contextmanager
def instance_home(
    pg_url: sa.engine.URL | None, executor: str = "multiprocess"
) -> Iterator[pathlib.Path]:
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        home = pathlib.Path(tmp)
        (home / "vigil.yaml").write_text(config_yaml(pg_url, executor))
        yield home


class Launcher:
    """Submit runs through the configured coordinator and wait for their end."""

    def __init__(self, home: pathlib.Path, environ: dict[str, str]) -> None:
        self.settings = loader.load_settings(home)
        self.environ = {**environ, "VIGIL_HOME": str(home)}
        self.workspace = workspace_mod.load_workspace(self.settings.workspace, REPO)

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[Launcher]:
        self.store = await engine.open_store(loader.store_target(self.settings))
        ctx = assembly.launch_context(self.settings, self.environ, REPO)
        self.launcher = assembly.build_launcher(self.settings, ctx)
        self.coordinator = assembly.build_coordinator(
            self.settings, self.store, self.launcher, time.time
        )
        try:
            yield self
        finally:
            await self.launcher.close()
            await self.store.close()

    async def launch_and_wait(
        self, job: str, config: dict[str, Any] | None = None
    ) -> tuple[float, runs.Run]:
        run = submission.new_run(self.workspace, job, config or {}, {}, time.time())
        start = time.perf_counter()
        await self.coordinator.submit(run)
        final = await submission.wait_for_end(self.store, run.run_id)
        elapsed = time.perf_counter() - start
        if final.status is not runs.RunStatus.SUCCESS:
            raise SystemExit(f"run {run.run_id} of {job} ended {final.status}")
        return elapsed, final

    @property
    def run_store(self) -> store_mod.Store:
        return self.store
