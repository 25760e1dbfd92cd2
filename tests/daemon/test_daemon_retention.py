"""The real daemon purges old ended runs with their files, and counts them in /metrics."""

from __future__ import annotations

import signal

from tests.acceptance.harness import Instance, run_id_of
from tests.acceptance.test_cli_errors import assert_clean_error
from tests.acceptance.test_cli_purge import QUEUED_LONG_AGO, age_one_run
from tests.daemon.process import TICKER, Daemons, configure, free_port
from tests.daemon.test_daemon_http import answers


async def test_the_daemon_purges_runs_past_their_retention(
    instance: Instance, daemons: Daemons
) -> None:
    old = run_id_of(instance.ok("run", "launch", "hello", "--wait"))
    recent = run_id_of(instance.ok("run", "launch", "hello", "--wait"))
    await age_one_run(instance, old)
    port = free_port()
    configure(instance, TICKER, http_port=port)
    with (instance.home / "vigil.yaml").open("a") as config:
        config.write("retention: {success_days: 30, purge_interval: 0.5, batch_size: 1}\n")

    daemon = daemons.start()
    exposition = await answers(port, "/metrics", 200, "vigil_purged_runs_total 1.0")
    assert "vigil_purged_run_directories_total" in exposition

    assert_clean_error(instance.vigil("run", "show", old), old)
    assert not (instance.home / "logs" / old).exists()
    assert instance.show(recent)["status"] == "SUCCESS"
    assert instance.show(QUEUED_LONG_AGO)["status"] == "QUEUED"
    daemon.send(signal.SIGTERM)
    assert await daemon.exit_code() == 0
