"""The broker and the Celery launcher's settings: a broker down at launch loses no run and
launches none twice; a bad broker URL is one line at `vigil config check`, the URL (and its
password) never printed; a subprocess instance never imports Celery."""

from __future__ import annotations

import json
import pathlib
import sys

from tests import imports, redis_server
from tests.acceptance import harness
from tests.celery.conftest import celery_instance
from tests.celery.workers import Workers
from tests.daemon import process
from tests.daemon.process import Daemons
from tests.waiting import eventually


def run_events(instance: harness.Instance, run_id: str) -> list[dict[str, object]]:
    lines = instance.ok("run", "events", run_id, "--json").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


async def test_a_run_launched_while_the_broker_is_down_launches_once_it_is_back(
    sqlite_celery_instance: harness.Instance,
    redis: redis_server.Server,
    daemons: Daemons,
    workers: Workers,
    tmp_path: pathlib.Path,
) -> None:
    instance = sqlite_celery_instance
    daemons.start()
    redis_server.stop(redis)
    run_id = harness.run_id_of(instance.ok("run", "launch", "hello"))

    async def given_back() -> bool:
        messages = [str(e["message"]) for e in run_events(instance, run_id)]
        return sum("back in the queue" in m for m in messages) >= 2

    await eventually(given_back, 60.0, interval=0.2)
    assert instance.show(run_id)["status"] in ("QUEUED", "STARTING")

    back = redis_server.start(port=redis.port)
    worker = None
    try:
        worker = await workers.start()
        run = instance.wait_until(run_id, lambda r: r["status"] == "SUCCESS", 90.0)
    finally:
        if worker is not None:
            worker.stop()  # before its broker
        redis_server.stop(back)
    starts = [e for e in run_events(instance, run_id) if e["type"] == "RUN_START"]
    assert len(starts) == 1
    assert worker.log().count(f"Task vigil.run[{run['launcher_info']['task_id']}] received") == 1
    assert "cannot send run" in instance.ok("run", "events", run_id)


def test_an_unparsable_broker_url_is_one_line_at_config_check(
    tmp_path: pathlib.Path,
) -> None:
    instance = celery_instance(tmp_path, "redis://127.0.0.1:6379/0", "")
    text = (instance.home / "vigil.yaml").read_text()
    instance.write_config(text.replace("redis://127.0.0.1:6379/0", "'s3cret@nowhere'"))

    done = instance.vigil("config", "check")

    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "run_launcher.options.broker_url" in line
    assert "s3cret" not in line


def test_an_unreachable_broker_is_one_line_at_config_check(tmp_path: pathlib.Path) -> None:
    port = process.free_port()  # nothing listens there
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    instance = celery_instance(tmp_path, url, "")

    done = instance.vigil("config", "check")

    assert done.returncode == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert "run_launcher.options.broker_url: cannot reach the broker" in line
    assert f"127.0.0.1:{port}" in line
    assert "hunter2" not in done.stdout + done.stderr


def test_the_broker_url_from_the_environment_or_a_file_is_never_shown(
    tmp_path: pathlib.Path, redis: redis_server.Server
) -> None:
    instance = celery_instance(tmp_path, redis.url, "")
    text = (instance.home / "vigil.yaml").read_text()
    secret_file = tmp_path / "broker"
    secret_file.write_text(redis.url + "\n")
    instance.write_config(
        text.replace(f"broker_url: {redis.url}", f"broker_url_file: {secret_file}")
    )
    assert str(redis.port) not in instance.ok("config", "show")  # the file's name only
    assert instance.ok("config", "check").endswith(": ok\n")

    instance.write_config(text.replace(f"    broker_url: {redis.url}\n", ""))
    env = {"VIGIL_RUN_LAUNCHER__OPTIONS__BROKER_URL": "redis://:pw-in-env@127.0.0.1:1/0"}
    shown = instance.vigil("config", "show", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "pw-in-env" not in shown.stdout
    assert "broker_url: '***'" in shown.stdout


def test_a_subprocess_instance_never_imports_celery(
    sqlite_instance: harness.Instance,
) -> None:
    probe = imports.probe(("celery", "kombu", "redis", "vigil.celery", "vigil.launchers.celery"))
    for args in (["run", "launch", "hello", "--wait"], ["config", "check"]):
        done = harness.subprocess.run(
            [sys.executable, "-c", probe, *args],
            cwd=sqlite_instance.cwd,
            env=sqlite_instance.env,
            capture_output=True,
            text=True,
            timeout=harness.COMMAND_TIMEOUT,
            check=False,
        )
        assert json.loads(done.stderr.strip().splitlines()[-1]) == [], args


def test_a_celery_worker_needs_the_celery_launcher(sqlite_instance: harness.Instance) -> None:
    done = sqlite_instance.vigil("celery", "worker")

    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "run_launcher.type: vigil celery worker needs the celery launcher" in line
