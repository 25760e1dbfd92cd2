"""Which VIGIL_* variables carry a secret, and handing them over on a descriptor."""

from __future__ import annotations

import os

import pytest

from vigil import errors
from vigil.config import secrets


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VIGIL_STORE__POSTGRES__PASSWORD", "x"),
        ("vigil_store__postgres__password", "x"),  # pydantic-settings ignores case
        ("VIGIL_RUN_LAUNCHER__OPTIONS__ENV__AWS_SECRET_ACCESS_KEY", "x"),
        ("VIGIL_SOME__API_TOKEN", "x"),
        ("VIGIL_STORE", '{"kind": "postgres", "postgres": {"password": "x"}}'),
        ("VIGIL_RUN_LAUNCHER__OPTIONS", '{"env": {"GITHUB_TOKEN": "x"}}'),
        ("VIGIL_RUN_LAUNCHER__OPTIONS__BROKER_URL", "redis://:pw@broker/0"),
        ("VIGIL_RUN_LAUNCHER__OPTIONS__RESULT_BACKEND", "redis://:pw@broker/1"),
        ("VIGIL_RUN_LAUNCHER", '{"type": "celery", "options": {"broker_url": "redis://b"}}'),
    ],
)
def test_secret_variables(name: str, value: str) -> None:
    assert secrets.is_secret_variable(name, value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VIGIL_STORE__POSTGRES__PASSWORD_FILE", "/run/secrets/db"),
        ("VIGIL_STORE__POSTGRES__HOST", "db"),
        ("VIGIL_WORKSPACE", '[{"name": "a", "file": "a.py"}]'),
        ("VIGIL_STORE", "{not json"),
        ("PGPASSWORD", "x"),  # not vigil's: the operator's business
        ("VIGIL_HOME", "/var/lib/vigil"),
        ("VIGIL_RUN_LAUNCHER__OPTIONS__BROKER_URL_FILE", "/run/secrets/broker"),
        ("VIGIL_RUN_LAUNCHER__OPTIONS__QUEUE", "gpu"),
    ],
)
def test_public_variables(name: str, value: str) -> None:
    assert not secrets.is_secret_variable(name, value)


def test_split_and_scrub() -> None:
    environ = {"VIGIL_HOME": "h", "VIGIL_STORE__POSTGRES__PASSWORD": "pw", "PATH": "/bin"}
    public, secret = secrets.split(environ)
    assert public == {"VIGIL_HOME": "h", "PATH": "/bin"}
    assert secret == {"VIGIL_STORE__POSTGRES__PASSWORD": "pw"}
    assert secrets.scrub(environ) == secret
    assert environ == public


def test_overlaid_sets_for_the_block_only() -> None:
    environ = {"A": "1", "VIGIL_X_TOKEN": "old"}
    with secrets.overlaid(environ, {"VIGIL_X_TOKEN": "new", "VIGIL_Y_KEY": "k"}):
        assert environ == {"A": "1", "VIGIL_X_TOKEN": "new", "VIGIL_Y_KEY": "k"}
    assert environ == {"A": "1", "VIGIL_X_TOKEN": "old"}


def test_hand_over_and_take_over_round_trip_and_close() -> None:
    fd = secrets.hand_over({"VIGIL_STORE__POSTGRES__PASSWORD": "p\u00e4ss word"})
    assert not os.get_inheritable(fd)
    assert secrets.take_over(fd) == {"VIGIL_STORE__POSTGRES__PASSWORD": "p\u00e4ss word"}
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)


def test_take_over_refuses_what_is_not_a_mapping_of_strings() -> None:
    read, write = os.pipe()
    os.write(write, b'{"A": 1}')
    os.close(write)
    with pytest.raises(errors.ConfigError, match=f"--secret-fd {read}: expected a JSON object"):
        secrets.take_over(read)
    with pytest.raises(errors.ConfigError, match="--secret-fd 987: cannot read it"):
        secrets.take_over(987)
