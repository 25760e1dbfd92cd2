"""Secrets in the environment: which VIGIL_* variables carry one, and how a run worker gets
them without a variable that user code could read.

Settings may come from the environment (`VIGIL_STORE__POSTGRES__PASSWORD`), and a process's
environment is inherited by its children and readable by any code in them (`os.environ`,
`/proc/self/environ`, which even `unsetenv` does not clear). So no process that runs user
code starts with such a variable:

- launchers and evaluation processes start their children with `public(environ)`;
- a run worker still needs them to build the same settings as its launcher: the launcher
  writes them (`hand_over`) to an anonymous file whose descriptor the worker is given
  (`vigil worker run --secret-fd N`); the worker reads it once and closes it
  (`take_over`), and builds its settings with them `overlaid` on its environment for that
  call only, before any user code is imported.

A variable carries a secret when a word of its last key (`PASSWORD`, `SECRET`, `TOKEN`,
`KEY`, ...) says so, when the key names a URL that may carry credentials (`BROKER_URL`,
`RESULT_BACKEND`), or when its value is a JSON object with such a key inside. A key
ending in `_FILE` names a file, not a secret (`password_file` is read by whoever needs it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from vigil import errors

PREFIX = "VIGIL_"
SECRET_WORDS = frozenset(
    {"PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "CREDENTIALS"}
)
# Whole keys that hold a URL with credentials in it (the Celery launcher's broker, say).
SECRET_KEYS = frozenset({"BROKER_URL", "RESULT_BACKEND"})
MAX_HANDOVER = 1024 * 1024  # bytes a worker reads from its secret descriptor at most


def is_secret_key(key: str) -> bool:
    """Whether a settings key (any case, words joined by `_`) names a secret."""
    words = [word for word in re.split(r"_+", key.upper()) if word]
    if not words or words[-1] == "FILE":
        return False
    return "_".join(words) in SECRET_KEYS or any(word in SECRET_WORDS for word in words)


def is_secret_variable(name: str, value: str) -> bool:
    """Whether this environment variable carries a secret setting of vigil's."""
    if not name.upper().startswith(PREFIX):
        return False
    last = name[len(PREFIX) :].split("__")[-1]
    return is_secret_key(last) or _json_has_secret(value)


def _json_has_secret(value: str) -> bool:
    if not value.lstrip().startswith(("{", "[")):
        return False
    try:
        data = json.loads(value)
    except ValueError:
        return False
    return _has_secret_key(data)


def _has_secret_key(data: Any) -> bool:
    if isinstance(data, dict):
        return any(
            (isinstance(k, str) and is_secret_key(k)) or _has_secret_key(v) for k, v in data.items()
        )
    if isinstance(data, list):
        return any(_has_secret_key(item) for item in data)
    return False


def split(environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the variables user code may see, the secret ones)."""
    public: dict[str, str] = {}
    secret: dict[str, str] = {}
    for name, value in environ.items():
        (secret if is_secret_variable(name, value) else public)[name] = value
    return public, secret


def public(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without any variable that carries a secret."""
    return split(environ)[0]


def scrub(environ: MutableMapping[str, str]) -> dict[str, str]:
    """Remove the secret variables from this process's environment; returns them."""
    _, secret = split(environ)
    for name in secret:
        del environ[name]
    return secret


@contextlib.contextmanager
def overlaid(environ: MutableMapping[str, str], secret: Mapping[str, str]) -> Iterator[None]:
    """`secret` in `environ` for the block only (to build settings: pydantic-settings reads
    the process's environment). Removing them unsets them in the C environment too, so a
    process forked or started afterwards never inherits them."""
    saved = {name: environ[name] for name in secret if name in environ}
    environ.update(secret)
    try:
        yield
    finally:
        for name in secret:
            environ.pop(name, None)
        environ.update(saved)


def hand_over(secret: Mapping[str, str]) -> int:
    """An anonymous file holding `secret`, rewound; returns its descriptor (close-on-exec:
    pass it on with `pass_fds`, or keep it in a forked child). Never a path on disk."""
    data = json.dumps(dict(secret)).encode()
    fd = _anonymous_file()
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _anonymous_file() -> int:
    if hasattr(os, "memfd_create"):
        return os.memfd_create("vigil-secrets", os.MFD_CLOEXEC)
    with tempfile.TemporaryFile() as f:  # unlinked at once; the dup keeps it alive
        fd = os.dup(f.fileno())
    os.set_inheritable(fd, False)
    return fd


def take_over(fd: int) -> dict[str, str]:
    """Read the secrets handed over on `fd` and close it; ConfigError if they are not."""
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_HANDOVER + 1)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise errors.ConfigError(f"--secret-fd {fd}: cannot read it: {exc.strerror}") from None
    try:
        secret = json.loads(data) if len(data) <= MAX_HANDOVER else None
    except ValueError:
        secret = None
    if not isinstance(secret, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in secret.items()
    ):
        raise errors.ConfigError(f"--secret-fd {fd}: expected a JSON object of strings")
    return secret
