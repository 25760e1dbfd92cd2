"""What vigil creates is private whatever the umask."""

from __future__ import annotations

import os
import pathlib
import stat
from collections.abc import Iterator

import pytest

from vigil import filemodes


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_private_dirs_and_files_with_umask_zero(tmp_path: pathlib.Path) -> None:
    deep = tmp_path / "a" / "b" / "c"
    filemodes.private_dirs(deep)
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", deep)] == [0o700] * 3
    with filemodes.private_open(deep / "log", "a", encoding="utf-8") as f:
        f.write("x")
    with filemodes.private_open(deep / "log", "a", encoding="utf-8") as f:
        f.write("y")
    assert (deep / "log").read_text() == "xy"
    assert mode(deep / "log") == 0o600
    filemodes.private_file(tmp_path / "db" / "vigil.db")
    assert mode(tmp_path / "db") == 0o700
    assert mode(tmp_path / "db" / "vigil.db") == 0o600


def test_private_file_tightens_an_existing_loose_file(tmp_path: pathlib.Path) -> None:
    db = tmp_path / "vigil.db"
    db.write_bytes(b"data")
    db.chmod(0o644)
    filemodes.private_file(db)
    assert mode(db) == 0o600
    assert db.read_bytes() == b"data"


def test_private_dirs_refuses_a_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError):
        filemodes.private_dirs(tmp_path / "f")
