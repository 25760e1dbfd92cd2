"""Every bad input gets one clear message, exit status 2, and leaves the store intact."""

from __future__ import annotations

import sqlite3

from tests.acceptance.harness import Instance, run_id_of


def assert_clean_error(result: object, *fragments: str, code: int = 2) -> str:
    assert result.returncode == code, result
    err: str = result.stderr
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_unknown_job(instance: Instance) -> None:
    result = instance.vigil("run", "launch", "nope")
    assert_clean_error(result, "error: no job named 'nope'", "orders")


def test_run_config_that_does_not_validate_names_the_key_path(instance: Instance) -> None:
    config = instance.home / "bad.yaml"
    config.write_text("steps:\n  load_orders:\n    orders: many\n")
    result = instance.vigil("run", "launch", "orders", "--config", str(config))
    assert_clean_error(result, "steps.load_orders.orders", "valid integer")
    assert "no runs" in instance.ok("run", "list")


def test_unknown_run_id(instance: Instance) -> None:
    for command in (("run", "show"), ("run", "events"), ("run", "cancel"), ("run", "logs")):
        result = instance.vigil(*command, "no-such-run")
        assert_clean_error(result, "no-such-run")


def test_bad_config_file_is_one_message(instance: Instance) -> None:
    instance.write_config("store:\n  kind: sqlite\n  colour: blue\n")
    result = instance.vigil("run", "list")
    assert_clean_error(result, f"{instance.home / 'vigil.yaml'}: store.colour: unknown key")
    assert_clean_error(instance.vigil("config", "check"), "store.colour")


def test_bad_tag_is_a_usage_error(instance: Instance) -> None:
    result = instance.vigil("run", "launch", "hello", "--tag", "novalue")
    assert_clean_error(result, "is not KEY=VALUE")


def test_code_location_that_fails_to_import_names_file_and_line(instance: Instance) -> None:
    broken = instance.home / "broken_location.py"
    broken.write_text("from vigil import Definitions\n\nx = 1\ny = undefined_name\n")
    instance.write_config(f"workspace:\n  - file: {broken}\n")
    result = instance.vigil("definitions", "check")
    assert_clean_error(result, f"{broken}:4", "NameError")


def test_old_schema_is_refused_until_migrated(sqlite_instance: Instance) -> None:
    run_id = run_id_of(sqlite_instance.ok("run", "launch", "hello", "--wait"))
    db = sqlite3.connect(sqlite_instance.home / "vigil.db")
    head = db.execute("select version_num from alembic_version").fetchone()[0]
    db.execute("update alembic_version set version_num = 'ffffffffffff'")
    db.commit()
    assert_clean_error(sqlite_instance.vigil("run", "list"), "upgrade vigil")
    db.execute("update alembic_version set version_num = ?", (head,))
    db.commit()
    db.close()
    assert run_id[:8] in sqlite_instance.ok("run", "list")


def test_store_down_is_a_readable_error(instance: Instance) -> None:
    instance.write_config(
        "store:\n  kind: postgres\n  postgres:\n    host: 127.0.0.1\n    port: 9\n"
        "    connect_timeout: 2\n"
    )
    result = instance.vigil("run", "list", env={"VIGIL_STORE__POSTGRES__PASSWORD": "hunter2"})
    err = assert_clean_error(result, "cannot reach the store", "127.0.0.1:9", code=1)
    assert "hunter2" not in err


def test_config_show_redacts_secrets(instance: Instance) -> None:
    out = instance.vigil("config", "show", env={"VIGIL_STORE__POSTGRES__PASSWORD": "hunter2"})
    assert out.returncode == 0
    assert "hunter2" not in out.stdout
    assert "password: '***'" in out.stdout


def test_config_check_names_a_loop_that_cannot_be_loaded(instance: Instance) -> None:
    instance.write_config("daemon:\n  loops:\n    - type: nowhere.at_all:Loop\n")
    assert_clean_error(instance.vigil("config", "check"), "daemon.loops.0.type", "nowhere.at_all")
