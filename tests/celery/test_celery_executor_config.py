"""`vigil config check` on the celery executor's settings (no broker needed)."""

from __future__ import annotations

import pathlib

from tests.acceptance import harness

EXECUTOR = "executor:\n  type: celery\n"


def test_config_check_refuses_the_celery_executor_without_the_celery_launcher(
    tmp_path: pathlib.Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    instance = harness.Instance(home=home, cwd=tmp_path, env=harness.base_env(home))
    instance.write_config(EXECUTOR)

    checked = instance.vigil("config", "check")

    assert checked.returncode == 2
    assert checked.stderr.strip().splitlines() == [
        f"error: {home / 'vigil.yaml'}: executor.type: the celery executor sends steps "
        "through the celery run launcher's broker (this instance's launcher is 'subprocess')"
    ]
