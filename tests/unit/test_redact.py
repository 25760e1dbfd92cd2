"""The one rule for secrets in what vigil prints: keys, env mappings, URL credentials."""

from __future__ import annotations

import io
import logging
import time
from typing import Any

import pytest

from vigil.config import redact
from vigil.daemon import logs


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "db_passwd",
        "pwd",
        "secret",
        "client_secret",
        "api_token",
        "accessToken",
        "key",
        "aws_secret_access_key",
        "API_KEY",
        "credentials",
        "auth",
        "private_key_pem",
        "passphrase",
        "broker_url",
        "result_backend",
    ],
)
def test_secret_like_keys(key: str) -> None:
    assert redact.is_secret_key(key)
    assert redact.tree({"a": {key: "s3"}}) == {"a": {key: redact.MASK}}


@pytest.mark.parametrize("key", ["host", "port", "user", "type", "interval", "name", "module"])
def test_plain_keys_are_shown(key: str) -> None:
    assert redact.tree({key: "value"}) == {key: "value"}


def test_anything_under_a_secret_key_is_masked_whatever_its_type() -> None:
    data = {"password": 12345, "token": {"a": 1}, "secret": ["x"], "key": None}
    assert redact.tree(data) == {"password": "***", "token": "***", "secret": "***", "key": None}


def test_every_env_value_is_masked_and_the_names_kept() -> None:
    data = {"run_launcher": {"options": {"env": {"AWS_REGION": "eu", "PATH": "/bin"}}}}
    shown = redact.tree(data)
    assert shown["run_launcher"]["options"]["env"] == {"AWS_REGION": "***", "PATH": "***"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://bob:hunter2@db:5432/x", "postgresql://bob:***@db:5432/x"),
        ("see redis://:pw@cache/0 and s3://u:p@b", "see redis://:***@cache/0 and s3://u:***@b"),
        ("https://user@host/path", "https://user@host/path"),
        ("no url: user:pass@host", "no url: user:pass@host"),
        ("1postgres://u:pw@h x-s3://u:pw@b", "1postgres://u:***@h x-s3://u:***@b"),
        ("abc1def+x://u:pw@h", "abc1def+x://u:***@h"),
    ],
)
def test_url_credentials_are_masked_in_any_text(text: str, expected: str) -> None:
    assert redact.text(text) == expected
    assert redact.tree({"anything": [text]}) == {"anything": [expected]}


@pytest.mark.parametrize("tail", ["", "://", " postgresql://bob:hunter2@db/x"])
def test_a_long_line_is_masked_in_linear_time(tail: str) -> None:
    # A run of letters was tried as a scheme from each of its letters: 8 KiB took most of
    # a second, 64 KiB about a minute. Linear, it takes milliseconds; the bound is generous.
    line = "x" * 65536 + tail
    began = time.perf_counter()
    masked = redact.text(line)
    assert time.perf_counter() - began < 5.0
    assert masked == line.replace("hunter2", redact.MASK)


def test_vigil_keys_that_only_look_secret_are_shown() -> None:
    data: dict[str, Any] = {
        "store": {"postgres": {"password_file": "/run/pw", "password": "pw"}},
        "run_coordinator": {
            "options": {"tag_concurrency_limits": [{"key": "team", "limit": 2}]},
        },
    }
    shown = redact.tree(data)
    assert shown["store"]["postgres"] == {"password_file": "/run/pw", "password": "***"}
    assert shown["run_coordinator"]["options"]["tag_concurrency_limits"] == [
        {"key": "team", "limit": 2}
    ]
    # the same key elsewhere is a secret
    assert redact.tree({"daemon": {"loops": [{"options": {"password_file": "x"}}]}}) == {
        "daemon": {"loops": [{"options": {"password_file": "***"}}]}
    }


def test_value_masks_by_the_path_it_was_found_at() -> None:
    assert redact.value(["store", "postgres", "password"], 12345) == "***"
    assert redact.value(["run_launcher", "options", "env", "X"], "v") == "***"
    assert redact.value(["run_launcher", "options", "env"], 5) == 5
    assert redact.value(["daemon"], [{"token": "t"}]) == [{"token": "***"}]
    assert redact.value(["http", "port"], "lots") == "lots"


def test_a_tree_that_contains_itself_ends() -> None:
    looped: list[Any] = []
    looped.append(looped)
    assert redact.tree({"a": looped}) == {"a": ["..."]}


def test_the_input_is_not_changed() -> None:
    data = {"password": "pw", "env": {"A": "1"}}
    redact.tree(data)
    assert data == {"password": "pw", "env": {"A": "1"}}


@pytest.mark.parametrize("log_format", logs.FORMATS)
def test_log_lines_mask_url_credentials(log_format: logs.LogFormat) -> None:
    stream = io.StringIO()
    formatter = logs.JsonFormatter() if log_format == "json" else logs.TextFormatter()
    record = logging.LogRecord(
        "user", logging.ERROR, __file__, 1, "cannot reach %s", ("postgresql://bob:pw@db/x",), None
    )
    record.dsn = "redis://:hunter2@cache/0"
    stream.write(formatter.format(record))
    assert "pw@" not in stream.getvalue()
    assert "hunter2" not in stream.getvalue()
    assert "bob:***@db" in stream.getvalue()


def test_the_celery_brokers_url_is_masked_and_its_files_name_shown() -> None:
    options = {"broker_url": "redis://b:6379/0", "broker_url_file": "/run/b", "queue": "gpu"}
    shown = redact.tree({"run_launcher": {"type": "celery", "options": options}})
    masked = {"broker_url": redact.MASK, "broker_url_file": "/run/b", "queue": "gpu"}
    assert shown == {"run_launcher": {"type": "celery", "options": masked}}
