"""`vigil daemon ...`: run the daemon, and watch its loops."""

from __future__ import annotations

from vigil.cli import lazy

daemon_group = lazy.LazyGroup(
    "daemon",
    help="Run the daemon and watch its loops.",
    lazy_subcommands={
        "run": "vigil.cli.daemon_run:run",
        "status": "vigil.cli.daemon_status:status",
        "liveness-check": "vigil.cli.daemon_status:liveness_check",
    },
    summaries={
        "run": "Run the daemon in the foreground until SIGTERM or SIGINT.",
        "status": "One row a loop: state, last iteration, heartbeat age, daemon, last error.",
        "liveness-check": (
            'Exit 0 ("ok: ...") while this daemon\'s loops are live; 1 with the reason otherwise.'
        ),
    },
)
