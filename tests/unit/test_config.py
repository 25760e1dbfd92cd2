"""Instance settings: vigil.yaml, VIGIL_* overrides, secrets, and clear errors."""

from __future__ import annotations

import dataclasses
import pathlib
import re
import typing

import pydantic
import pytest

from vigil import assembly, errors
from vigil.config import environment, loader, names
from vigil.config import settings as settings_mod
from vigil.daemon import presence
from vigil.storage import store as store_mod


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


# bounds ------------------------------------------------------------------------------------
def numeric_settings(
    model: type[pydantic.BaseModel] = settings_mod.InstanceSettings, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], type]]:
    """Every int or float setting of the models, by key path."""
    found: list[tuple[tuple[str, ...], type]] = []
    for name, field in model.model_fields.items():
        members = typing.get_args(field.annotation) or (field.annotation,)
        for member in members:
            if isinstance(member, type) and issubclass(member, pydantic.BaseModel):
                found += numeric_settings(member, (*path, name))
            elif member in (int, float):
                found.append(((*path, name), member))
    return found


NUMERIC = numeric_settings()


def test_the_walk_finds_the_numeric_settings() -> None:
    paths = {".".join(p) for p, _ in NUMERIC}
    assert {"daemon.heartbeat_interval", "store.postgres.port", "run_retries.max_retries"} <= paths
    assert len(NUMERIC) > 30


@pytest.mark.parametrize(("path", "kind"), NUMERIC, ids=[".".join(p) for p, _ in NUMERIC])
def test_every_numeric_setting_refuses_absurd_values(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, path: tuple[str, ...], kind: type
) -> None:
    variable = "VIGIL_" + "__".join(part.upper() for part in path)
    absurd = ["1e308", "inf", "nan", "-1e308"] if kind is float else [str(10**30), str(-(10**30))]
    for value in absurd:
        monkeypatch.setenv(variable, value)
        with pytest.raises(errors.ConfigError) as info:
            loader.load_settings(tmp_path)
        assert str(info.value).startswith(f"environment variable {variable}: {'.'.join(path)}: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("daemon: {heartbeat_interval: 1e308}", "less than or equal to 3600"),
        ("daemon: {heartbeat_interval: 1e999}", "finite number"),
        ("daemon: {heartbeat_interval: .inf}", "finite number"),
        ("daemon: {heartbeat_interval: .nan}", "finite number"),
        ("scheduling: {poll_interval: 0}", "greater than or equal to 0.01"),
        ("run_monitoring: {start_timeout: 86401}", "less than or equal to 86400"),
        ("store: {postgres: {pool_size: 100000}}", "less than or equal to 1000"),
        ("daemon: {heartbeat_interval: 600, heartbeat_retention: 1200}", "3 heartbeat intervals"),
        (
            "run_coordinator: {type: queued, options: {poll_interval: .inf}}",
            None,  # a plugin's options: checked when the plugin is built (below)
        ),
    ],
)
def test_absurd_values_in_the_file_are_refused(
    tmp_path: pathlib.Path, text: str, expected: str | None
) -> None:
    path = write(tmp_path, text + "\n")
    if expected is None:
        settings = loader.load_settings(tmp_path)
        with pytest.raises(errors.PluginError, match="poll_interval: Input should be a finite"):
            assembly.check_plugins(settings)
        return
    with pytest.raises(errors.ConfigError) as info:
        loader.load_settings(tmp_path)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_generous_values_are_accepted(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        "daemon: {heartbeat_interval: 0.01, heartbeat_retention: 60}\n"
        "run_monitoring: {poll_interval: 86400, max_runtime: 2592000}\n"
        "run_retries: {max_retries: 1000, delay: {max: 86400}}\n",
    )
    settings = loader.load_settings(tmp_path)
    assert settings.daemon.heartbeat_interval == 0.01
    assert settings.run_monitoring.max_runtime == 30 * 86400


def test_a_stored_huge_heartbeat_interval_cannot_keep_a_dead_daemon_live() -> None:
    """A heartbeat written before the bounds, by a daemon with heartbeat_interval 1e308,
    counts as at most the longest interval allowed: the dead daemon stops being in the way."""
    now = 1_000_000.0
    hours = settings_mod.MAX_HEARTBEAT_INTERVAL
    stale = store_mod.Heartbeat(
        "dead", "supervisor", "box", 1, now - 3 * hours - 1, {"heartbeat_interval": 1e308}
    )
    assert presence.live_daemons([stale], now, heartbeat_interval=5.0) == []
    recent = dataclasses.replace(stale, last_heartbeat=now - 60)
    assert presence.live_daemons([recent], now, heartbeat_interval=5.0) == [recent]


# the environment ---------------------------------------------------------------------------
def test_a_mistyped_variable_is_refused_with_the_closest_name(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_DAEMON_HEARTBEAT_INTERVAL", "2")  # one underscore
    monkeypatch.setenv("vigil_deamon__shutdown_grace", "2")  # names are case-insensitive
    with pytest.raises(errors.ConfigError) as info:
        loader.load_settings(tmp_path)
    assert str(info.value).splitlines() == [
        "environment variable VIGIL_DAEMON_HEARTBEAT_INTERVAL: no such setting; "
        "did you mean VIGIL_DAEMON__HEARTBEAT_INTERVAL?",
        "environment variable vigil_deamon__shutdown_grace: no such setting; "
        "did you mean VIGIL_DAEMON__SHUTDOWN_GRACE?",
    ]


def test_a_variable_like_no_setting_says_how_names_are_made(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_XYZZY", "1")
    with pytest.raises(errors.ConfigError, match="VIGIL_XYZZY: no such setting; the names are"):
        loader.load_settings(tmp_path)


def test_variables_that_are_not_settings_are_allowed(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (*names.NOT_SETTINGS, "VIGIL_TEST_ANYTHING", "VIGIL_HOME"):
        monkeypatch.setenv(name, str(tmp_path))
    monkeypatch.setenv("VIGIL_RUN_LAUNCHER__TYPE", "subprocess")
    monkeypatch.setenv("VIGIL_RUN_LAUNCHER__OPTIONS__ENV__AWS_REGION", "eu-west-1")
    settings = loader.load_settings(tmp_path)
    assert settings.run_launcher.options == {"env": {"aws_region": "eu-west-1"}}


# Files that name made-up VIGIL_ variables on purpose (typos, secret-variable detection).
MISTYPED_ON_PURPOSE = {
    "test_config.py",
    "test_cli_input.py",
    "test_fuzz.py",
    "test_secrets.py",
    "test_quick_settings.py",
    "test_cli_read_path.py",
}


def test_every_vigil_variable_the_project_uses_is_a_setting_or_listed() -> None:
    """The grep of the brief, kept: a new VIGIL_ name must be a setting or be listed."""
    root = pathlib.Path(__file__).resolve().parents[2]
    sources = [*root.glob("vigil/**/*.py"), *root.glob("tests/**/*.py"), *root.glob("bench/*.py")]
    sources += [*root.glob("deploy/**/*"), root / "Makefile", root / "Dockerfile"]
    used: set[str] = set()
    for source in sources:
        if source.is_file() and source.name not in MISTYPED_ON_PURPOSE:
            used |= set(re.findall(r"\bVIGIL_[A-Z0-9_]*[A-Z0-9]\b", source.read_text()))
    names, open_ended = environment.setting_names()
    unknown = [
        name
        for name in sorted(used)
        if environment.unknown_variables({name: "x"}) and not name.startswith("VIGIL_TEST_")
    ]
    assert unknown == [], (unknown, sorted(names)[:3], sorted(open_ended))


def test_a_section_given_as_bad_json_names_the_variable(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_DAEMON__SHUTDOWN_GRACE", "5")
    monkeypatch.setenv("VIGIL_DAEMON__RESTART_BACKOFF", "[1")
    with pytest.raises(errors.ConfigError) as info:
        loader.load_settings(tmp_path)
    assert str(info.value).startswith(
        "environment variable VIGIL_DAEMON__RESTART_BACKOFF: not valid JSON: "
    )


def test_a_section_made_by_variables_below_it_blames_them(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_RUN_LAUNCHER__OPTIONS__PREFORK", "false")
    with pytest.raises(errors.ConfigError) as info:
        loader.load_settings(tmp_path)
    assert str(info.value) == (
        "environment variable VIGIL_RUN_LAUNCHER__OPTIONS__PREFORK: run_launcher.type: "
        "Field required"
    )


# files that are not settings ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xfe\x00binary", "not a text file (UTF-8): byte 0xff at offset 0"),
        (b"a: " + b"[" * 5000 + b"]" * 5000, "invalid YAML: nested too deeply"),
        (b"store: {postgres: {port: 1" + b"0" * 5000 + b"}}", "invalid YAML: a number too long"),
        (b"just a string\n", "expected a mapping of settings at the top level"),
        (b"- a\n- list\n", "expected a mapping of settings at the top level"),
        (b"null: 1\n", "None: unknown key"),
        (b"1: 1\n", "1: unknown key"),
        (b"a: \x00\n", "invalid YAML"),
        (b"workspace: &a [*a]\n", "workspace.0: Input should be a valid dictionary"),
    ],
)
def test_malformed_files_are_one_line_naming_the_file(
    tmp_path: pathlib.Path, content: bytes, expected: str
) -> None:
    tmp_path.joinpath("vigil.yaml").write_bytes(content)
    with pytest.raises(errors.ConfigError) as info:
        loader.load_settings(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'vigil.yaml'}: ")
    assert expected in message
    assert len(message) < 300


def test_a_directory_instead_of_the_file(tmp_path: pathlib.Path) -> None:
    tmp_path.joinpath("vigil.yaml").mkdir()
    with pytest.raises(errors.ConfigError, match=r"vigil\.yaml: cannot read the file: Is a dir"):
        loader.load_settings(tmp_path)


def test_a_long_refused_value_is_cut(tmp_path: pathlib.Path) -> None:
    write(tmp_path, "http:\n  host: [" + ", ".join(["abcdef"] * 100) + "]\n")
    with pytest.raises(errors.ConfigError) as info:
        loader.load_settings(tmp_path)
    assert str(info.value).endswith("...)")
    assert len(str(info.value)) < 250


# secrets in errors -------------------------------------------------------------------------
def test_a_refused_secret_is_never_echoed(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "store:\n  postgres:\n    password: 12345\n")
    with pytest.raises(errors.ConfigError) as info:
        loader.load_settings(tmp_path)
    assert str(info.value) == (
        f"{path}: store.postgres.password: Input should be a valid string (got '***')"
    )
    path.unlink()
    monkeypatch.setenv("VIGIL_STORE", '{"postgres": {"password": 67890}}')
    with pytest.raises(errors.ConfigError) as info:
        loader.load_settings(tmp_path)
    assert "67890" not in str(info.value)
    assert "environment variable VIGIL_STORE" in str(info.value)


def test_a_refused_section_masks_the_secrets_inside_it(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        "run_launcher:\n  - api_token: tok-123\n    url: postgresql://bob:pw-456@db/x\n"
        "    env: {AWS_SECRET_ACCESS_KEY: aws-789}\n",
    )
    with pytest.raises(errors.ConfigError) as info:
        loader.load_settings(tmp_path)
    message = str(info.value)
    for secret in ("tok-123", "pw-456", "aws-789"):
        assert secret not in message
    assert "bob:***@db" in message


def test_config_show_masks_the_launcher_env_and_plugin_secrets(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        "run_launcher:\n  type: subprocess\n  options:\n"
        "    env: {AWS_SECRET_ACCESS_KEY: aws-789, PLAIN: visible-or-not}\n"
        "daemon:\n  loops:\n    - type: a:B\n"
        "      options: {Password: 12345, dsn: 'postgresql://bob:pw-456@db/x', interval: 5}\n"
        "store:\n  postgres:\n    password: pw-000\n    password_file: /run/secrets/pw\n",
    )
    shown = loader.redacted(loader.load_settings(tmp_path))
    assert shown["run_launcher"]["options"]["env"] == {
        "AWS_SECRET_ACCESS_KEY": "***",
        "PLAIN": "***",
    }
    loop_options = shown["daemon"]["loops"][0]["options"]
    assert loop_options == {"Password": "***", "dsn": "postgresql://bob:***@db/x", "interval": 5}
    assert shown["store"]["postgres"]["password"] == "***"
    assert shown["store"]["postgres"]["password_file"] == "/run/secrets/pw"


def test_a_plugin_error_names_where_the_plugin_was_configured(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "run_launcher:\n  type: subprocess\n  options: {env: 5}\n")
    assert loader.origin(tmp_path, {}, "run_launcher.options") == str(path)
    environ = {"VIGIL_RUN_LAUNCHER__OPTIONS": "{}"}
    assert loader.origin(tmp_path, environ, "run_launcher.options") == (
        "environment variable VIGIL_RUN_LAUNCHER__OPTIONS"
    )
    path.unlink()
    assert loader.origin(tmp_path, {}, "executor.type") == (
        f"{path} (or environment variable VIGIL_EXECUTOR__TYPE)"
    )
