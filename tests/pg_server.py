"""A throwaway PostgreSQL server for the test session, and a fresh database per test.

Binaries come from $VIGIL_TEST_PG_BIN, else `pg_config --bindir`, else the highest
/usr/lib/postgresql/*/bin. initdb refuses to run as root, so as root every server command
runs as the `postgres` user (`runuser -u postgres --`) in a directory it owns. The server
listens on 127.0.0.1 only, on a free port, with durability off for speed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator

import asyncpg
import sqlalchemy as sa

SERVER_OPTIONS = "-c listen_addresses=127.0.0.1 -c max_connections=200"
# Tests trade durability for speed; benchmarks keep PostgreSQL's defaults.
NOT_DURABLE = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
START_DEADLINE_SECONDS = 60


class PostgresNotFound(RuntimeError):
    """No PostgreSQL binaries: the storage suite must run on PostgreSQL too."""


@dataclasses.dataclass(frozen=True)
class Server:
    """A running throwaway server and what it takes to stop it."""

    url: sa.engine.URL
    directory: pathlib.Path
    bindir: pathlib.Path
    pid: int
    as_postgres: bool

    @property
    def data_dir(self) -> pathlib.Path:
        return self.directory / "data"


def find_bindir() -> pathlib.Path:
    """Where initdb, pg_ctl and pg_isready live; raises PostgresNotFound."""
    configured = os.environ.get("VIGIL_TEST_PG_BIN")
    if configured:
        if not (pathlib.Path(configured) / "initdb").is_file():
            raise PostgresNotFound(f"VIGIL_TEST_PG_BIN={configured} has no initdb")
        return pathlib.Path(configured)
    for candidate in (_pg_config_bindir(), _highest_system_bindir()):
        if candidate and (pathlib.Path(candidate) / "initdb").is_file():
            return pathlib.Path(candidate)
    raise PostgresNotFound(
        "the storage tests need PostgreSQL: install it (e.g. apt-get install postgresql), "
        "set VIGIL_TEST_PG_BIN to its bin directory, or set VIGIL_TEST_POSTGRES_URL to a "
        "server where the test user may CREATE DATABASE"
    )


def _pg_config_bindir() -> str | None:
    if shutil.which("pg_config") is None:
        return None
    done = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def _highest_system_bindir() -> str | None:
    root = pathlib.Path("/usr/lib/postgresql")
    versions = [p for p in root.glob("*") if re.fullmatch(r"\d+(\.\d+)?", p.name)]
    if not versions:
        return None
    best = max(versions, key=lambda p: tuple(int(n) for n in p.name.split(".")))
    return str(best / "bin")


def start(bindir: pathlib.Path, durable: bool = False, password: str | None = None) -> Server:
    """initdb and start a server in a new temporary directory; ready when it returns.

    With `password`, TCP connections must give it (scram-sha-256; the URL carries it).
    """
    as_postgres = os.geteuid() == 0
    directory = _make_directory(as_postgres)
    options = SERVER_OPTIONS if durable else f"{SERVER_OPTIONS} {NOT_DURABLE}"
    try:
        return _start_in(directory, bindir, as_postgres, options, password)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def _start_in(
    directory: pathlib.Path,
    bindir: pathlib.Path,
    as_postgres: bool,
    server_options: str,
    password: str | None = None,
) -> Server:
    data, port = directory / "data", _free_port()
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres"]
    initdb += _auth_options(directory, as_postgres, password)
    _run(as_postgres, [*initdb, "--no-sync", "-E", "UTF8", "--locale=C"])
    options = f"-p {port} -k {directory} {server_options}"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(directory / "server.log")]
    # -w: pg_ctl polls the server until it accepts connections, up to -t seconds.
    start_cmd = [*pg_ctl, "-w", "-t", str(START_DEADLINE_SECONDS), "-o", options, "start"]
    _run(as_postgres, start_cmd, log=directory / "server.log")
    pid = int((data / "postmaster.pid").read_text().split()[0])
    url = sa.engine.URL.create(
        "postgresql+asyncpg",
        username="postgres",
        password=password,
        host="127.0.0.1",
        port=port,
        database="postgres",
    )
    server = Server(url=url, directory=directory, bindir=bindir, pid=pid, as_postgres=as_postgres)
    _run(as_postgres, [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)])
    return server


def _auth_options(directory: pathlib.Path, as_postgres: bool, password: str | None) -> list[str]:
    if password is None:
        return ["--auth=trust"]
    pwfile = directory / "pwfile"
    pwfile.write_text(password + "\n")
    if as_postgres:
        user = pwd.getpwnam("postgres")
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    return ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]


def stop(server: Server) -> None:
    """Stop the server by its pid file (then by pid if needed) and delete its directory."""
    pg_ctl = [str(server.bindir / "pg_ctl"), "-D", str(server.data_dir), "-m", "immediate"]
    done = _run(server.as_postgres, [*pg_ctl, "stop"], check=False)
    if done.returncode != 0:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGKILL)
    shutil.rmtree(server.directory, ignore_errors=True)


def _make_directory(as_postgres: bool) -> pathlib.Path:
    base = pathlib.Path(tempfile.gettempdir())
    if as_postgres and not _traversable_by_all(base):
        base = pathlib.Path("/tmp")
    directory = pathlib.Path(tempfile.mkdtemp(prefix="vigil-pg-", dir=base))
    if as_postgres:
        if not _traversable_by_all(directory.parent):
            raise PostgresNotFound(f"{directory.parent} is not traversable by the postgres user")
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
    return directory


def _traversable_by_all(path: pathlib.Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(
    as_postgres: bool, command: list[str], *, check: bool = True, log: pathlib.Path | None = None
) -> subprocess.CompletedProcess[str]:
    if as_postgres:
        command = ["runuser", "-u", "postgres", "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd="/")
    if check and done.returncode != 0:
        output = done.stdout + done.stderr
        output += log.read_text() if log is not None and log.exists() else ""
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{output}")
    return done


# databases --------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def fresh_database(admin_url: sa.engine.URL) -> AsyncIterator[sa.engine.URL]:
    """A new empty database on the server for one test, dropped afterwards."""
    name = f"vigil_test_{uuid.uuid4().hex[:16]}"
    await admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.set(database=name)
    finally:
        await admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def admin_execute(admin_url: sa.engine.URL, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def asyncpg_dsn(url: sa.engine.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
