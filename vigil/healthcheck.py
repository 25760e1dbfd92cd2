"""`python -m vigil.healthcheck`: the container's HEALTHCHECK, at the cost of one HTTP GET.

It asks the daemon's own `/healthz` on this host and exits 0 when it answers 200, else 1
with one line on stderr saying why. `/healthz` is the liveness judgement (`vigil daemon
liveness-check`'s, and the systemd watchdog's): the supervisor runs and no loop is hung. Not
`/readyz`, which also fails while the database is unreachable: restarting the daemon then
would not bring the database back.

Standard library only, and no other vigil module (`vigil/__init__.py` loads nothing
eagerly): it runs every 30 s, so it must not pay for the CLI, the settings or the store.
So the address comes from the environment only: `VIGIL_HTTP__PORT` (default 9464, the
daemon's) and `VIGIL_HTTP__HOST` (a wildcard such as `0.0.0.0` means loopback). A port set
in vigil.yaml must be given to the healthcheck as `VIGIL_HTTP__PORT` too.
"""

from __future__ import annotations

import http.client
import os
import sys
from collections.abc import Mapping

DEFAULT_PORT = 9464  # HttpSettings.port
TIMEOUT = 5.0
# Where the daemon listens on every interface, ask it on loopback.
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}  # noqa: S104


def address(environ: Mapping[str, str]) -> tuple[str, int]:
    """The host and port to ask, from the daemon's own HTTP settings variables."""
    host = environ.get("VIGIL_HTTP__HOST", "127.0.0.1").strip()
    port = int(environ.get("VIGIL_HTTP__PORT", DEFAULT_PORT))
    if not 0 < port < 65536:
        raise ValueError(port)
    return _WILDCARDS.get(host, host.strip("[]")), port


def check(host: str, port: int) -> str | None:
    """None when `/healthz` answers 200, else why not, in one line."""
    where = f"http://{host}:{port}/healthz"
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        body = response.read(4096).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        return f"{where}: no answer: {exc}"
    finally:
        connection.close()
    if response.status == 200:
        return None
    reason = body.splitlines()[0] if body else response.reason
    return f"{where} answered {response.status}: {reason}"


def main(environ: Mapping[str, str]) -> int:
    try:
        host, port = address(environ)
    except ValueError:
        print("vigil healthcheck: VIGIL_HTTP__PORT is not a port number", file=sys.stderr)
        return 2
    problem = check(host, port)
    if problem is None:
        return 0
    print(f"vigil healthcheck: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(os.environ))
