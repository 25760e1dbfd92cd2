"""What the worker template does before it forks, seen from a worker.

A module the worker path imports is imported again by every forked worker, which is paid
for in CPU by every run; the template imports them all up front. These tests run a real
run the way a forked worker does (the template's imports, then `vigil worker run`) in a
fresh interpreter and list what the worker still had to import.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import threading

import anyio
import pytest
import sqlalchemy as sa

from tests.acceptance.harness import base_env, store_yaml
from tests.integration import test_worker
from vigil import runs, storage
from vigil.config import loader
from vigil.storage import sql

# What the template process holds before its first fork: the CLI with the `worker`
# commands (it runs as `vigil worker template`), its warm-up run and imports.
WORKER_AFTER_TEMPLATE = """
import json, sys
from vigil.cli import main
from vigil.cli import worker
from vigil.storage import sql
from vigil.worker import template
sql.warm_up()
template._warm()
before = set(sys.modules)
try:
    main.cli(args=["worker", "run", sys.argv[1]], prog_name="vigil")
except SystemExit as exc:
    code = exc.code
with open(sys.argv[2], "w") as out:
    json.dump({"code": code, "imported": sorted(set(sys.modules) - before)}, out)
"""
# The code location itself is the worker's to import, fresh for each run.
LOCATION_MODULE = "vigil_location_it"
TIMEOUT = 60


@pytest.fixture(
    params=[
        pytest.param(("sqlite", "multiprocess"), id="sqlite-multiprocess"),
        pytest.param(("sqlite", "in_process"), id="sqlite-in_process"),
        pytest.param(
            ("postgres", "multiprocess"), id="postgres-multiprocess", marks=pytest.mark.postgres
        ),
    ]
)
def home(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> pathlib.Path:
    kind, executor = request.param
    url: sa.engine.URL | None = None
    if kind == "postgres":
        url = request.getfixturevalue("postgres_database")
    (tmp_path / "vigil.yaml").write_text(
        f"workspace:\n  - name: it\n    file: {test_worker.JOBS}\n"
        f"executor:\n  type: {executor}\n" + store_yaml(url)
    )
    return tmp_path


async def starting_run(home: pathlib.Path) -> str:
    store = await storage.open_store(loader.store_target(loader.load_settings(home)))
    try:
        run = test_worker.new_run(status=runs.RunStatus.STARTING)
        await store.add_run(run)
    finally:
        await store.close()
    return run.run_id


async def test_a_worker_imports_nothing_the_template_has_not_but_the_code_location(
    home: pathlib.Path,
) -> None:
    run_id = await starting_run(home)
    report = home / "imports.json"
    with anyio.fail_after(TIMEOUT):
        done = await anyio.run_process(
            [sys.executable, "-c", WORKER_AFTER_TEMPLATE, run_id, str(report)],
            cwd=home,
            env={**base_env(home), "PYTHONPATH": os.pathsep.join(sys.path)},
            check=False,
        )
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert report.exists(), output
    result = json.loads(report.read_text())
    assert result["code"] in (None, 0), output
    assert result["imported"] == [LOCATION_MODULE]


def test_the_warm_up_leaves_no_thread_file_or_descriptor_behind(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a forked worker must not inherit: threads, open files, connections.
    monkeypatch.chdir(tmp_path)
    threads = set(threading.enumerate())
    descriptors = set(os.listdir("/proc/self/fd"))

    sql.warm_up()
    sql.warm_up()

    assert set(threading.enumerate()) == threads
    assert set(os.listdir("/proc/self/fd")) == descriptors
    assert list(tmp_path.iterdir()) == []
