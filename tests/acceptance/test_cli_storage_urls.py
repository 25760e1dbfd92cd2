"""storage_dir and logs_dir at a URL, through the real CLI: a run fails, its re-execution
reads its parent's output through the URL, `vigil run logs` reads the logs there, and a
purge removes the run's files there. The URL chains fsspec's simplecache over its local
filesystem, so every read and write crosses processes through fsspec."""

from __future__ import annotations

import importlib
import importlib.util
import json
import pathlib
from typing import Any

from tests.acceptance import test_cli_purge
from tests.acceptance.harness import Instance, run_id_of
from tests.acceptance.test_cli_errors import assert_clean_error


def _use_urls(instance: Instance, shared: pathlib.Path) -> None:
    config = (instance.home / "vigil.yaml").read_text()
    instance.write_config(
        config
        + f"storage_dir: simplecache::file://{shared}/storage\n"
        + f"logs_dir: simplecache::file://{shared}/logs\n"
    )


def _events(instance: Instance, run_id: str) -> list[dict[str, Any]]:
    out = instance.ok("run", "events", run_id, "--json")
    return [json.loads(line) for line in out.splitlines()]


async def test_outputs_logs_and_purges_go_through_the_urls(
    instance: Instance, tmp_path: pathlib.Path
) -> None:
    shared = tmp_path / "shared"
    _use_urls(instance, shared)
    assert instance.ok("config", "check").strip().endswith("vigil.yaml: ok")

    root = run_id_of(instance.vigil("run", "launch", "broken", "--wait").stdout)
    assert instance.show(root)["status"] == "FAILURE"
    assert (shared / "storage" / root / "fetch_rates").is_file()
    assert not (instance.home / "storage").exists()  # nothing went to the default place

    done = instance.vigil("run", "reexecute", root, "--wait")
    assert done.returncode == 1, done.stderr
    child = run_id_of(done.stdout)
    events = _events(instance, child)
    assert [e["step"] for e in events if e["type"] == "STEP_START"] == ["convert"]
    # convert names the currencies it read: its parent's output, through the URL.
    failure = next(e for e in events if e["type"] == "STEP_FAILURE")
    assert "(known: EUR, USD)" in failure["message"]

    chatty = run_id_of(instance.ok("run", "launch", "chatty", "--wait"))
    assert (shared / "logs" / chatty / "talk" / "stdout.log").is_file()
    logs = instance.ok("run", "logs", chatty)
    assert "[talk stdout] written to stdout" in logs
    assert "[talk stderr] written to stderr" in logs

    await test_cli_purge.age_one_run(instance, chatty)
    purged = instance.ok("instance", "purge", "--older-than", "30d")
    assert purged.startswith("purged 1 runs")
    assert not (shared / "logs" / chatty).exists()
    assert not (shared / "storage" / chatty).exists()
    assert not (instance.home / "logs" / chatty).exists()  # the worker's local copy too
    assert (shared / "storage" / root / "fetch_rates").is_file()  # other runs keep theirs


def _uninstalled_scheme() -> tuple[str, str]:
    """A scheme fsspec knows whose filesystem package is not installed here."""
    registry = importlib.import_module("fsspec.registry")  # fsspec.registry is a dict
    for scheme, known in sorted(registry.known_implementations.items()):
        package = str(known["class"]).split(".")[0]
        if package != "fsspec" and importlib.util.find_spec(package) is None:
            return scheme, package
    raise AssertionError("every filesystem fsspec knows is installed")


def test_a_url_without_its_filesystem_is_one_line_at_config_check(
    sqlite_instance: Instance,
) -> None:
    instance = sqlite_instance
    scheme, package = _uninstalled_scheme()
    config = (instance.home / "vigil.yaml").read_text()
    instance.write_config(config + f"storage_dir: {scheme}://bucket/vigil\n")
    err = assert_clean_error(
        instance.vigil("config", "check"), "vigil.yaml", "storage_dir", f"package {package}"
    )
    assert len(err.strip().splitlines()) == 1
    instance.write_config(config + "logs_dir: nosuch://bucket/logs\n")
    err = assert_clean_error(
        instance.vigil("config", "check"), "logs_dir", "fsspec knows no filesystem for nosuch://"
    )
    assert len(err.strip().splitlines()) == 1
