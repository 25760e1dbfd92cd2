"""Instance settings: vigil.yaml, VIGIL_* overrides, secrets, and clear errors."""

from __future__ import annotations

import pathlib

import pytest

from vigil import errors
from vigil.config import loader


def write(home: pathlib.Path, text: str) -> pathlib.Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "vigil.yaml"
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path: pathlib.Path) -> None:
    settings = loader.load_settings(tmp_path)
    assert settings.home == tmp_path
    assert settings.store.kind == "sqlite"
    assert settings.sqlite_path == tmp_path / "vigil.db"
    assert settings.run_launcher.type == "subprocess"
    assert settings.executor.type == "multiprocess"


def test_env_overrides_nested_keys(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path, "store:\n  kind: postgres\n  postgres:\n    host: db.internal\n    port: 5433\n"
    )
    monkeypatch.setenv("VIGIL_STORE__POSTGRES__PORT", "6000")
    settings = loader.load_settings(tmp_path)
    assert settings.store.postgres.host == "db.internal"
    assert settings.store.postgres.port == 6000


def test_password_from_env_is_redacted(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "store:\n  kind: postgres\n")
    monkeypatch.setenv("VIGIL_STORE__POSTGRES__PASSWORD", "s3cret-pw")
    settings = loader.load_settings(tmp_path)
    assert loader.store_target(settings).url.password == "s3cret-pw"
    shown = str(loader.redacted(settings))
    assert "s3cret-pw" not in shown
    assert "s3cret-pw" not in loader.store_target(settings).redacted()


def test_password_from_secret_file(tmp_path: pathlib.Path) -> None:
    secret = tmp_path / "db_password"
    secret.write_text("from-file\n")
    write(
        tmp_path / "home", f"store:\n  kind: postgres\n  postgres:\n    password_file: {secret}\n"
    )
    settings = loader.load_settings(tmp_path / "home")
    assert loader.store_target(settings).url.password == "from-file"


def test_missing_secret_file_names_the_key(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "store:\n  kind: postgres\n  postgres:\n    password_file: /nonexistent/pw\n")
    settings = loader.load_settings(tmp_path)
    with pytest.raises(errors.ConfigError, match=r"store\.postgres\.password_file: cannot read"):
        loader.store_target(settings)


def test_yaml_syntax_error_names_file_and_line(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "store:\n  kind: sqlite\n bad: [unclosed\n")
    with pytest.raises(errors.ConfigError) as info:
        loader.load_settings(tmp_path)
    assert str(path) in str(info.value)
    assert "line 3" in str(info.value)


def test_unknown_key_names_the_key_path(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "store:\n  kind: sqlite\n  colour: blue\n")
    with pytest.raises(errors.ConfigError) as info:
        loader.load_settings(tmp_path)
    assert str(info.value) == f"{path}: store.colour: unknown key"


def test_wrong_type_says_what_was_expected(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "store:\n  kind: postgres\n  postgres:\n    port: lots\n")
    with pytest.raises(errors.ConfigError) as info:
        loader.load_settings(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{path}: store.postgres.port: ")
    assert "valid integer" in message
    assert "'lots'" in message


def test_bad_env_override_names_the_variable(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_STORE__KIND", "oracle")
    with pytest.raises(
        errors.ConfigError, match=r"environment variable VIGIL_STORE__KIND: store.kind"
    ):
        loader.load_settings(tmp_path)


def test_top_level_must_be_a_mapping(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "- just\n- a list\n")
    with pytest.raises(errors.ConfigError, match="expected a mapping"):
        loader.load_settings(tmp_path)


def test_code_location_needs_exactly_one_source(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "workspace:\n  - module: a\n    file: b.py\n")
    with pytest.raises(
        errors.ConfigError, match=r"workspace\.0: .*exactly one of 'module' or 'file'"
    ):
        loader.load_settings(tmp_path)


def test_the_same_file_and_environment_give_the_same_settings_back(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "store:\n  busy_timeout: 7\n")
    first = loader.load_settings(tmp_path)
    assert loader.load_settings(tmp_path) is first


def test_settings_follow_a_changed_file(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "store:\n  busy_timeout: 7\n")
    assert loader.load_settings(tmp_path).store.busy_timeout == 7
    path.write_text("store:\n  busy_timeout: 8\n")
    assert loader.load_settings(tmp_path).store.busy_timeout == 8
    path.unlink()
    assert loader.load_settings(tmp_path).store.busy_timeout == 30


def test_settings_follow_a_changed_environment(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "store:\n  busy_timeout: 7\n")
    assert loader.load_settings(tmp_path).store.busy_timeout == 7
    monkeypatch.setenv("VIGIL_STORE__BUSY_TIMEOUT", "9")
    assert loader.load_settings(tmp_path).store.busy_timeout == 9
    monkeypatch.setenv("vigil_store__busy_timeout", "10")  # the names are case-insensitive
    monkeypatch.delenv("VIGIL_STORE__BUSY_TIMEOUT")
    assert loader.load_settings(tmp_path).store.busy_timeout == 10


def test_settings_follow_another_home(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "a", "store:\n  busy_timeout: 7\n")
    write(tmp_path / "b", "store:\n  busy_timeout: 7\n")
    assert loader.load_settings(tmp_path / "a").home == tmp_path / "a"
    assert loader.load_settings(tmp_path / "b").home == tmp_path / "b"


def test_a_file_broken_after_a_good_one_is_refused(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "store:\n  busy_timeout: 7\n")
    loader.load_settings(tmp_path)
    path.write_text("store:\n  busy_timeout: -1\n")
    with pytest.raises(errors.ConfigError, match=r"store\.busy_timeout"):
        loader.load_settings(tmp_path)


def test_monitoring_and_retries_defaults_and_overrides(tmp_path: pathlib.Path) -> None:
    defaults = loader.load_settings(tmp_path)
    monitoring = defaults.run_monitoring
    assert monitoring.enabled
    assert (monitoring.poll_interval, monitoring.start_timeout, monitoring.cancel_timeout) == (
        10.0,
        120.0,
        120.0,
    )
    assert (monitoring.max_resume_attempts, monitoring.max_runtime) == (1, None)
    assert defaults.run_retries.max_retries == 0
    assert defaults.run_retries.strategy == "from_failure"
    write(
        tmp_path,
        "run_monitoring: {poll_interval: 0.2, max_runtime: 30}\n"
        "run_retries: {max_retries: 3, strategy: all_steps, delay: {initial: 1, max: 5}}\n",
    )
    settings = loader.load_settings(tmp_path)
    assert settings.run_monitoring.max_runtime == 30
    assert settings.run_retries.delay.initial == 1
    assert settings.run_retries.strategy == "all_steps"


def test_a_bad_retry_strategy_names_the_key(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "run_retries:\n  strategy: sometimes\n")
    with pytest.raises(errors.ConfigError) as info:
        loader.load_settings(tmp_path)
    assert str(info.value).startswith(f"{path}: run_retries.strategy: ")
