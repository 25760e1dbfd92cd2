"""Secrets out of everything vigil prints: settings, validation errors, error messages.

One rule for every printer (`vigil config show`, a config error's `(got ...)`, the CLI's
error lines):

- the value at a secret-like key is `***`: a key named like password, passphrase, secret,
  token, key, credential, auth or private, or a URL key that carries credentials
  (`broker_url`, `result_backend`) (any case, anywhere in the tree, plugin `options`
  included), and everything under it;
- every value of an `env` mapping is `***` (the launcher's `env` goes to the workers; it is
  where operators put cloud keys): the names are kept;
- credentials in a URL, anywhere in a string: `scheme://user:pw@host` -> `user:***@host`.

A few keys of vigil's own match the pattern but hold no secret (the password *file*'s
path, a tag limit's tag `key`); they are named in `NOT_SECRET`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|pwd|secret|token|key|credential|auth|private"
    r"|broker_url|result_backend",
    re.I,
)
# A scheme begins at the first letter of a run of letters (a match beginning later in the
# run would have begun at its first letter anyway): without that, a long run of letters
# was tried from each of its letters, quadratic (user code printing 8 KiB lines of one
# letter held the daemon's event loop for most of a second per log line).
_URL_CREDENTIALS = re.compile(r"(?<![A-Za-z])([A-Za-z][A-Za-z0-9+.-]*://)([^\s:/@]*):([^\s@]+)@")
ENV_KEYS = frozenset({"env", "environment"})
# Key paths (with `*` for any list index) that match the pattern but are not secrets.
NOT_SECRET = frozenset(
    {
        ("store", "postgres", "password_file"),
        ("run_launcher", "options", "broker_url_file"),
        ("run_coordinator", "options", "tag_concurrency_limits", "*", "key"),
    }
)
MAX_DEPTH = 64  # deeper than this a tree is shown as "..." (a YAML alias may even loop)

Path = Sequence[str | int]


def is_secret_key(name: str | int) -> bool:
    return isinstance(name, str) and _SECRET_KEY.search(name) is not None


def is_secret_path(path: Path) -> bool:
    """Whether the value at this key path is a secret (or lies under one)."""
    for i, part in enumerate(path):
        if is_secret_key(part) and not _exempt(path[: i + 1]):
            return True
        if isinstance(part, str) and part.lower() in ENV_KEYS and i < len(path) - 1:
            return True
    return False


def _exempt(path: Path) -> bool:
    shape = tuple("*" if isinstance(p, int) or p.isdigit() else p for p in map(str, path))
    return shape in NOT_SECRET


def text(value: str) -> str:
    """The string with the password of every URL in it masked."""
    if "://" not in value:  # most lines: no URL, and no scan
        return value
    return _URL_CREDENTIALS.sub(rf"\1\2:{MASK}@", value)


def tree(data: Any, path: Path = ()) -> Any:
    """A copy of plain data (mappings, lists, scalars) with every secret masked."""
    return _tree(data, tuple(path), frozenset())


def value(path: Path, data: Any) -> Any:
    """The data found at `path` (a validation error's input), masked as `tree` would."""
    if is_secret_path(path):
        return MASK
    return tree(data, path)


def _tree(data: Any, path: tuple[str | int, ...], seen: frozenset[int]) -> Any:
    if isinstance(data, str):
        return text(data)
    if not isinstance(data, Mapping | list | tuple):
        return data
    if id(data) in seen or len(path) > MAX_DEPTH:
        return "..."
    inside = seen | {id(data)}
    if isinstance(data, Mapping):
        return {key: _entry((*path, str(key)), item, inside) for key, item in data.items()}
    return [_tree(item, (*path, i), inside) for i, item in enumerate(data)]


def _entry(path: tuple[str | int, ...], item: Any, seen: frozenset[int]) -> Any:
    if item is not None and is_secret_path(path):
        return MASK
    return _tree(item, path, seen)
