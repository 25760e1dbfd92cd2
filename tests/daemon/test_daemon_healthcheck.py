"""`python -m vigil.healthcheck` (the image's HEALTHCHECK) against a real daemon."""

from __future__ import annotations

import signal
import subprocess
import sys

import anyio

from tests.acceptance.harness import Instance
from tests.daemon.process import BLOCKER, TICKER, Daemons, configure, free_port
from tests.daemon.test_daemon_http import answers


async def healthcheck(instance: Instance, port: int) -> subprocess.CompletedProcess[str]:
    env = {**instance.env, "VIGIL_HTTP__HOST": "0.0.0.0", "VIGIL_HTTP__PORT": str(port)}
    done = await anyio.run_process(
        [sys.executable, "-m", "vigil.healthcheck"], cwd=instance.cwd, env=env, check=False
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


async def test_healthy_then_stopped(sqlite_instance: Instance, daemons: Daemons) -> None:
    port = free_port()
    configure(sqlite_instance, TICKER, http_port=port)
    daemon = daemons.start()
    await answers(port, "/healthz", 200)
    healthy = await healthcheck(sqlite_instance, port)
    assert (healthy.returncode, healthy.stdout, healthy.stderr) == (0, "", "")
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0

    stopped = await healthcheck(sqlite_instance, port)
    assert stopped.returncode == 1
    assert stopped.stderr.startswith(f"vigil healthcheck: http://127.0.0.1:{port}/healthz: ")
    assert stopped.stderr.count("\n") == 1  # one line


async def test_a_hung_loop_fails_with_the_daemons_reason(
    sqlite_instance: Instance, daemons: Daemons
) -> None:
    port = free_port()
    configure(sqlite_instance, BLOCKER, http_port=port)
    daemon = daemons.start()
    await answers(port, "/healthz", 503, containing="hung")
    hung = await healthcheck(sqlite_instance, port)
    assert hung.returncode == 1
    assert "/healthz answered 503: loop blocker is hung: " in hung.stderr
    assert hung.stderr.count("\n") == 1
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0


async def test_a_bad_port_is_bad_input(sqlite_instance: Instance) -> None:
    done = await healthcheck(sqlite_instance, 0)
    assert done.returncode == 2
    assert done.stderr == "vigil healthcheck: VIGIL_HTTP__PORT is not a port number\n"


def test_it_imports_no_other_vigil_module() -> None:
    """It runs every 30 s: the CLI, the settings and the store stay unloaded."""
    code = (
        "import sys, vigil.healthcheck;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'vigil'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['vigil', 'vigil.healthcheck']"
