"""Files and directories vigil creates in VIGIL_HOME are private: 0600 and 0700.

The modes are given explicitly at creation (`os.open(..., 0o600)`, `os.mkdir(..., 0o700)`):
a umask can only take bits away, so the result is private whatever the umask of the process
(outside systemd it is often 0022). The process's umask itself is left alone: user code run
by the same processes creates its own files as its operator expects.
The SQLite database is created here, empty, before SQLite opens it: SQLite gives its `-wal`
and `-shm` files the mode of the database file.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dirs(path: pathlib.Path) -> None:
    """Create `path` and any missing parents, each new one 0700; existing ones are kept."""
    missing: list[pathlib.Path] = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, DIR_MODE)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")


def private_open(path: pathlib.Path, mode: str, **kwargs: Any) -> IO[Any]:
    """`open(path, mode)` for writing ('w', 'a', 'x', binary or text), a new file 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    if "a" in mode:
        flags |= os.O_APPEND
    elif "x" in mode:
        flags |= os.O_EXCL
    else:
        flags |= os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    try:
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def private_file(path: pathlib.Path) -> None:
    """Create `path` empty and 0600 if missing (its parents 0700). An existing file of this
    user loses its group and other bits (a file made by an older vigil); one of another
    user is left as it is."""
    private_dirs(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))
    except FileExistsError:
        info = path.stat()
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            with contextlib.suppress(PermissionError):
                path.chmod(FILE_MODE)
