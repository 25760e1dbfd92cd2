"""The read commands' quick read of the store's location (`config.quick`) agrees with the
settings model wherever it answers, and answers None (the full path) wherever it is not
sure: it never accepts what the settings model refuses."""

from __future__ import annotations

import os
import pathlib

import pytest

from vigil import errors
from vigil.config import loader, quick
from vigil.config import settings as settings_mod
from vigil.coordinators import admission, queued

PG = "store:\n  kind: postgres\n  postgres:\n"

# vigil.yaml text and VIGIL_* variables the quick read must read as the model does.
SURE = [
    ("", {}),
    ("store: {kind: sqlite, busy_timeout: 2}\n", {}),
    ("store:\n  sqlite_path: data/x.db\n", {}),
    ("daemon: {heartbeat_interval: 0.5, shutdown_grace: 3}\nhttp: {port: 0}\n", {}),
    (PG + "    host: db\n    port: 6543\n    user: u\n    database: d\n    password: pw\n", {}),
    ("", {"VIGIL_STORE__KIND": "postgres", "VIGIL_STORE__POSTGRES__PORT": "7000"}),
    ("", {"vigil_store__kind": "postgres", "VIGIL_STORE__POSTGRES__PASSWORD": "s3"}),
    (PG + "    host: db\n", {"VIGIL_STORE__POSTGRES__HOST": "env-db"}),
    ("", {"VIGIL_DAEMON__HEARTBEAT_INTERVAL": "2.5", "VIGIL_TEST_ANYTHING": "x"}),
    ("", {"VIGIL_STORE__BUSY_TIMEOUT": "1e1", "VIGIL_CRASH_AT": "nowhere"}),
    (PG + "    connect_timeout: 3\n    pool_size: 2\n    max_overflow: 0\n", {}),
]

# Values the quick read leaves to the model: refused there, or read there in ways it does
# not attempt.
UNSURE = [
    ("store: {kind: mysql}\n", {}),
    ("store: {busy_timeout: 0}\n", {}),
    ("store: {busy_timeout: .nan}\n", {}),
    ("store: {busy_timeout: true}\n", {}),
    ("store: {colour: red}\n", {}),
    ("store: sqlite\n", {}),
    (PG + "    port: 70000\n", {}),
    (PG + "    port: '5432'\n    host: 5\n", {}),
    (PG + "    pool_size: 0\n", {}),
    ("daemon: {heartbeat_interval: 7200}\n", {}),
    ("daemon: [1]\n", {}),
    ("storage: {}\n", {}),
    ("- a list\n", {}),
    ("store: {kind: sqlite\n", {}),
    ("", {"VIGIL_STORE__POSTGRES__PORT": "54x"}),
    ("", {"VIGIL_STORE__POSTGRES__PORT": " 5432"}),
    ("", {"VIGIL_STORE": '{"kind": "postgres"}'}),
    ("", {"VIGIL_STORE__KIND": ""}),
    ("", {"VIGIL_DAEMON__SHUTDOWN_GRACE": "3"}),  # a setting the quick read does not read
    ("", {"VIGIL_STOER__KIND": "sqlite"}),  # a typo, which the full path reports
]


def write(
    home: pathlib.Path, text: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    home.mkdir(exist_ok=True)
    (home / "vigil.yaml").write_text(text, encoding="utf-8")
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def full(home: pathlib.Path) -> settings_mod.InstanceSettings | None:
    try:
        return loader.load_settings(home)
    except errors.ConfigError:
        return None


@pytest.mark.parametrize(("text", "env"), SURE)
def test_the_quick_read_agrees_with_the_settings_model(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, text: str, env: dict[str, str]
) -> None:
    home = tmp_path / "home"
    write(home, text, monkeypatch, env)
    read = quick.read(home, dict(os.environ))
    model = full(home)
    assert read is not None
    assert model is not None
    assert read.heartbeat_interval == model.daemon.heartbeat_interval
    target = loader.store_target(model)
    if isinstance(read.store, quick.Sqlite):
        assert target.is_sqlite
        assert (str(read.store.path), read.store.busy_timeout) == (
            target.url.database,
            target.busy_timeout,
        )
        return
    url = target.url
    assert (url.host, url.port, url.username, url.database, url.password) == (
        read.store.host,
        read.store.port,
        read.store.user,
        read.store.database,
        read.store.password,
    )
    assert read.store.connect_timeout == target.connect_timeout


@pytest.mark.parametrize(("text", "env"), UNSURE)
def test_the_quick_read_leaves_what_it_is_not_sure_of_to_the_model(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, text: str, env: dict[str, str]
) -> None:
    home = tmp_path / "home"
    write(home, text, monkeypatch, env)
    assert quick.read(home, dict(os.environ)) is None


def test_a_password_file_is_read_and_an_unreadable_one_is_left_to_the_model(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n", encoding="utf-8")
    write(home, PG + f"    password_file: {secret}\n", monkeypatch, {})
    read = quick.read(home, {})
    assert read is not None
    assert isinstance(read.store, quick.Postgres)
    assert read.store.password == "from-file"
    assert "from-file" not in repr(read)
    secret.unlink()
    assert quick.read(home, {}) is None
    with pytest.raises(errors.ConfigError, match="password_file"):
        loader.store_target(loader.load_settings(home))


def test_the_top_level_keys_are_the_settings_models() -> None:
    assert set(settings_mod.InstanceSettings.model_fields) == quick.TOP_LEVEL


COORDINATOR_SURE = [
    "",
    "run_coordinator: {type: queued}\n",
    "run_coordinator:\n  type: queued\n  options: {max_concurrent_runs: -1, poll_interval: 0.5}\n",
    "run_coordinator: {type: queued, options: {max_concurrent_runs: '3'}}\n",
    "run_coordinator:\n  type: queued\n  options:\n    max_concurrent_runs: 3\n"
    "    tag_concurrency_limits:\n      - {key: team, value: data, limit: 2}\n"
    "      - {key: gpu, limit: 1, per_value: true}\n      - {key: x, limit: 0, value: null}\n",
]
COORDINATOR_UNSURE = [
    "run_coordinator: {type: immediate}\n",
    "run_coordinator: {type: 'vigil.coordinators.queued:QueuedCoordinator'}\n",
    "run_coordinator: {type: queued, options: {max_concurrent_runs: -2}}\n",
    "run_coordinator: {options: {max_concurrent_runs: 3}}\n",  # no type: refused
    "run_coordinator: {type: queued, options: {colour: red}}\n",
    "run_coordinator: {type: queued, options: null}\n",
    "run_coordinator: {type: queued, options: {tag_concurrency_limits: [{key: '', limit: 1}]}}\n",
    "run_coordinator: {type: queued, options: {tag_concurrency_limits: [{key: a, limit: -1}]}}\n",
    "run_coordinator: {type: queued, options: {tag_concurrency_limits: "
    "[{key: a, limit: 1, per_value: 1}]}}\n",
    "run_coordinator: {type: queued, options: {tag_concurrency_limits: "
    "[{key: a, value: b, limit: 1, per_value: true}]}}\n",
    "run_coordinator: {type: queued, options: {tag_concurrency_limits: {key: a, limit: 1}}}\n",
]


@pytest.mark.parametrize("text", COORDINATOR_SURE)
def test_the_queue_limits_are_the_queued_coordinators(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    home = tmp_path / "home"
    write(home, text, monkeypatch, {})
    read = quick.read(home, {})
    model = loader.load_settings(home)
    assert read is not None
    assert read.queue is not None
    options = queued.QueuedOptions.model_validate(model.run_coordinator.options)
    tag_limits = tuple(admission.TagLimit(**limit) for limit in read.queue.tag_limits)
    assert admission.Limits(read.queue.max_concurrent_runs, tag_limits) == options.limits


@pytest.mark.parametrize("text", COORDINATOR_UNSURE)
def test_other_coordinators_and_doubtful_options_leave_the_queue_to_the_model(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    home = tmp_path / "home"
    write(home, text, monkeypatch, {})
    read = quick.read(home, {})
    assert read is not None  # the store is still read quickly
    assert read.queue is None
