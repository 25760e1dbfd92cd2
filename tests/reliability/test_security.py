"""Security checks: a planted secret never reaches user code or anything vigil writes;
VIGIL_HOME is private whatever the umask; a planted output is never loaded.

The PostgreSQL server here requires a password (scram-sha-256 on TCP), so a run that
succeeds proves its worker got the password, and a step that finds it nowhere in its
environment proves the worker got it some other way. The password is given as
VIGIL_STORE__POSTGRES__PASSWORD to the CLI and the daemon, as an operator outside systemd
would. A second secret is a value of the subprocess launcher's `env` (meant for user code:
it must reach the step, and nothing vigil writes). Every command runs as a process with
umask 000, so only the modes vigil gives make VIGIL_HOME private.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import secrets
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from tests import pg_server
from tests.acceptance import harness
from tests.daemon.process import free_port, http_get
from tests.waiting import eventually

PASSWORD = "pw-" + secrets.token_hex(12)
LAUNCHER_SECRET = "launcher-" + secrets.token_hex(12)
JOBS = pathlib.Path(__file__).with_name("security_jobs.py")
UMASK = 0o000
COMMAND_TIMEOUT = 120


@pytest.fixture(scope="module")
def guarded_server() -> Iterator[sa.engine.URL]:
    """A PostgreSQL server of its own that refuses TCP connections without PASSWORD."""
    server = pg_server.start(pg_server.find_bindir(), password=PASSWORD)
    try:
        yield server.url
    finally:
        pg_server.stop(server)


@pytest.fixture
async def guarded_database(guarded_server: sa.engine.URL) -> AsyncIterator[sa.engine.URL]:
    async with pg_server.fresh_database(guarded_server) as url:
        yield url


class Site:
    """A vigil instance in a temp dir, every command run with a permissive umask."""

    def __init__(self, tmp_path: pathlib.Path, store: str, env: dict[str, str]) -> None:
        self.home = tmp_path / "home"
        self.cwd = tmp_path / "cwd"
        self.home.mkdir()
        self.cwd.mkdir()
        self.store = store
        self.env = {**harness.base_env(self.home), **env}
        self.daemon_log = tmp_path / "daemon.log"

    def configure(self, executor: str, prefork: bool, coordinator: str, extra: str = "") -> None:
        (self.home / "vigil.yaml").write_text(
            f"workspace:\n  - name: security\n    file: {JOBS}\n"
            f"executor:\n  type: {executor}\n"
            f"run_coordinator:\n  type: {coordinator}\n"
            "run_launcher:\n  type: subprocess\n  options:\n"
            f"    prefork: {str(prefork).lower()}\n"
            f"    env: {{AWS_SECRET_ACCESS_KEY: {LAUNCHER_SECRET}}}\n"
            f"{self.store}{extra}"
        )

    def vigil(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vigil", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
            umask=UMASK,
        )

    def launch(self, job: str, config: dict[str, Any] | None = None) -> tuple[str, int]:
        args = ["run", "launch", job, "--wait"]
        if config is not None:
            path = self.cwd / f"{job}-{secrets.token_hex(4)}.json"
            path.write_text(json.dumps(config))
            args += ["--config", str(path)]
        done = self.vigil(*args)
        assert done.stdout, f"vigil run launch {job}: {done.stderr}"
        return harness.run_id_of(done.stdout), done.returncode

    def events(self, run_id: str) -> list[dict[str, Any]]:
        done = self.vigil("run", "events", run_id, "--json")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def start_daemon(self) -> subprocess.Popen[bytes]:
        with self.daemon_log.open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "vigil", "daemon", "run"],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                umask=UMASK,
            )


def postgres_store(url: sa.engine.URL) -> str:
    """The store section naming the server but not its password (that is in the env)."""
    return harness.store_yaml(url)


def daemon_section(port: int) -> str:
    return (
        "daemon:\n  heartbeat_interval: 0.3\n  shutdown_grace: 5\n"
        f"http:\n  enabled: true\n  port: {port}\n"
        "scheduling:\n  enabled: false\n"
    )


async def metrics_text(port: int) -> str:
    text = ""

    async def served() -> bool:
        nonlocal text
        try:
            code, text = await anyio.to_thread.run_sync(http_get, port, "/metrics")
        except OSError:
            return False
        return code == 200 and "vigil_runs" in text

    await eventually(served, 60)
    return text


async def stop(daemon: subprocess.Popen[bytes]) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)

    async def exited() -> bool:
        return daemon.poll() is not None

    try:
        await eventually(exited, 60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(30)


def step_environment(site: Site, run_id: str) -> dict[str, Any]:
    """What the `look` step saw (its pickled output, read by the test that trusts it)."""
    with (site.home / "storage" / run_id / "look").open("rb") as f:
        seen: dict[str, Any] = pickle.load(f)  # written by this test's own job
    return seen


def assert_step_saw_no_password(seen: dict[str, Any]) -> None:
    environ: dict[str, str] = seen["environ"]
    assert not [name for name in environ if "PASSWORD" in name.upper()], sorted(environ)
    assert PASSWORD not in json.dumps(environ)
    assert PASSWORD not in seen["proc"]
    # The launcher's env is for user code: it does arrive (so this is the step's env).
    assert environ["AWS_SECRET_ACCESS_KEY"] == LAUNCHER_SECRET


def files_under(root: pathlib.Path) -> Iterator[pathlib.Path]:
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            yield pathlib.Path(directory) / name


def assert_nothing_written_holds_a_secret(site: Site, run_ids: list[str]) -> None:
    leaks = [
        str(path)
        for path in files_under(site.home)
        if path.is_file()
        # the step's output (what user code saw, checked above) and the test's own config
        and path.name not in ("look", "vigil.yaml")
        and any(s.encode() in path.read_bytes() for s in (PASSWORD, LAUNCHER_SECRET))
    ]
    assert leaks == []
    for run_id in run_ids:
        text = json.dumps(site.events(run_id))
        assert PASSWORD not in text
        assert LAUNCHER_SECRET not in text
    if site.daemon_log.exists():
        text = site.daemon_log.read_text(errors="replace")
        assert PASSWORD not in text
        assert LAUNCHER_SECRET not in text


def assert_private(home: pathlib.Path) -> None:
    """Every file vigil made under `home` is 0600, every directory 0700 (vigil.yaml and
    the run config files are the test's own)."""
    loose = []
    for path in files_under(home):
        if path.name == "vigil.yaml":
            continue
        try:
            info = path.lstat()
        except FileNotFoundError:  # a -wal or -shm file SQLite just removed
            continue
        mode = stat.S_IMODE(info.st_mode)
        wanted = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
        if mode != wanted:
            loose.append(f"{path.relative_to(home)} {mode:o}")
    assert loose == []


@pytest.mark.postgres
@pytest.mark.parametrize("prefork", [True, False], ids=["prefork", "popen"])
async def test_cli_launched_steps_never_see_the_store_password(
    tmp_path: pathlib.Path, guarded_database: sa.engine.URL, prefork: bool
) -> None:
    site = Site(
        tmp_path, postgres_store(guarded_database), {"VIGIL_STORE__POSTGRES__PASSWORD": PASSWORD}
    )
    run_ids = []
    for executor in ("in_process", "multiprocess"):
        site.configure(executor, prefork, "immediate")
        run_id, code = site.launch("environment")
        assert code == 0, site.events(run_id)
        assert_step_saw_no_password(step_environment(site, run_id))
        run_ids.append(run_id)
    assert_nothing_written_holds_a_secret(site, run_ids)
    assert_private(site.home)


@pytest.mark.postgres
@pytest.mark.parametrize("prefork", [True, False], ids=["prefork", "popen"])
async def test_daemon_launched_steps_never_see_the_store_password(
    tmp_path: pathlib.Path, guarded_database: sa.engine.URL, prefork: bool
) -> None:
    site = Site(
        tmp_path, postgres_store(guarded_database), {"VIGIL_STORE__POSTGRES__PASSWORD": PASSWORD}
    )
    port = free_port()
    site.configure("multiprocess", prefork, "queued", daemon_section(port))
    daemon = site.start_daemon()
    try:
        await metrics_text(port)
        run_ids = []
        for executor in ("in_process", "multiprocess"):
            # Workers read vigil.yaml themselves: the daemon's launcher is unchanged.
            site.configure(executor, prefork, "queued", daemon_section(port))
            run_id, code = site.launch("environment")
            assert code == 0, site.events(run_id)
            assert_step_saw_no_password(step_environment(site, run_id))
            run_ids.append(run_id)
        exposition = await metrics_text(port)
        assert PASSWORD not in exposition
        assert LAUNCHER_SECRET not in exposition
    finally:
        await stop(daemon)
    assert_nothing_written_holds_a_secret(site, run_ids)
    assert_private(site.home)


@pytest.mark.postgres
@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
async def test_a_planted_output_is_refused_and_never_unpickled(
    tmp_path: pathlib.Path, guarded_database: sa.engine.URL, executor: str
) -> None:
    site = Site(
        tmp_path,
        postgres_store(guarded_database),
        {"VIGIL_STORE__POSTGRES__PASSWORD": PASSWORD},
    )
    site.configure(executor, True, "immediate")
    failed_once = {"steps": {"consume": {"marker": str(tmp_path / "failed-once")}}}
    victim, code = site.launch("victim", failed_once)
    assert code == 1
    marker = tmp_path / "unpickled"
    target = site.home / "storage" / victim / "produce"
    planting = {"steps": {"plant": {"target": str(target), "marker": str(marker)}}}
    _, code = site.launch("planter", planting)
    assert code == 0

    done = site.vigil("run", "reexecute", victim, "--wait")
    assert done.returncode == 1, done.stdout + done.stderr
    retry = harness.run_id_of(done.stdout)
    failures = [e for e in site.events(retry) if e["type"] == "STEP_FAILURE"]
    assert [(e["step"], e["message"]) for e in failures] == [
        (
            "consume",
            f"OutputMismatch: output of step produce from run {victim} does not match what "
            "that run recorded: refusing to load it",
        )
    ]
    assert not marker.exists()


async def test_vigil_home_is_private_whatever_the_umask(tmp_path: pathlib.Path) -> None:
    """SQLite (its database, -wal and -shm live in VIGIL_HOME), a daemon and the CLI with
    umask 000, runs through the worker template and a popen'd worker, both executors, a
    re-execution reading outputs: every file 0600, every directory 0700."""
    site = Site(tmp_path, "", {})
    port = free_port()
    site.configure("multiprocess", True, "queued", daemon_section(port))
    daemon = site.start_daemon()
    try:
        await metrics_text(port)
        for executor, prefork in (("in_process", True), ("multiprocess", False)):
            site.configure(executor, prefork, "queued", daemon_section(port))
            failed_once = {"steps": {"consume": {"marker": str(tmp_path / executor)}}}
            victim, code = site.launch("victim", failed_once)
            assert code == 1
            done = site.vigil("run", "reexecute", victim, "--wait")
            assert done.returncode == 0, done.stdout + done.stderr
        assert (site.home / "vigil.db-wal").exists()
        assert_private(site.home)
    finally:
        await stop(daemon)
    assert_private(site.home)
