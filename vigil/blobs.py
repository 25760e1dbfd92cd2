"""Shared files: step outputs and compute logs under a root that any machine can reach.

A root is named by `storage_dir` or `logs_dir`: a plain path or a `file://` URL is a local
directory (`LocalRoot`, plain `os` calls, as fast as before); any other URL goes through
fsspec (`RemoteRoot`: `s3://`, `gs://`, a chained `simplecache::file://...`), whose
filesystem package the user installs. fsspec is imported only when such a root is opened.

Keys are `RUN_ID/NAME/...` relative to the root. `put` is atomic for every root: the bytes
go to a temporary name beside the key and are then moved onto it (`os.replace` locally,
the filesystem's `mv` through fsspec, a server-side copy on object stores), so a reader
sees the old file, no file, or the whole new one, never part of one.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import os
import pathlib
import shutil
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

from vigil import errors, filemodes
from vigil.config import redact


class Sink(Protocol):
    """Where `put` lets its caller write the bytes: a file open for binary writing."""

    def write(self, data: bytes, /) -> int: ...


Fill = Callable[[Sink], None]


class Root(abc.ABC):
    """A directory tree of shared files, by key (`RUN_ID/STEP`)."""

    url: str

    @property
    def is_local(self) -> bool:
        return False

    @abc.abstractmethod
    def put(self, key: str, fill: Fill) -> str:
        """Write what `fill` writes to its sink atomically at `key`; where it now lives."""

    @abc.abstractmethod
    def read(self, key: str, start: int = 0) -> bytes:
        """The bytes at `key` from offset `start`; FileNotFoundError if there are none."""

    @abc.abstractmethod
    def is_file(self, key: str) -> bool:
        """Whether a file exists at `key`."""

    @abc.abstractmethod
    def children(self, key: str) -> list[str]:
        """The names of the directories directly under `key`, sorted ([] if none)."""

    @abc.abstractmethod
    def remove_tree(self, key: str) -> bool:
        """Remove the directory at `key` and all under it; whether it existed."""

    @abc.abstractmethod
    def upload(self, key: str, source: pathlib.Path) -> None:
        """Copy the local file `source` to `key`, atomically."""


def local_path(url: str) -> pathlib.Path | None:
    """The local directory a root names (a plain path or `file://`), or None for a URL
    that goes through fsspec."""
    if "::" in url:
        return None
    if url.startswith("file://"):
        return pathlib.Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if "://" in url:
        return None
    return pathlib.Path(url)


def open_root(url: str, key: str) -> Root:
    """The root `url` names; `key` is the setting that named it, for errors."""
    path = local_path(url)
    if path is not None:
        return LocalRoot(path)
    check(url, key)
    return RemoteRoot(url)


def check(url: str, key: str) -> None:
    """Refuse a URL whose fsspec filesystem cannot be loaded, naming `key` and the package
    to install. Connects to nothing."""
    if local_path(url) is not None:
        return
    import fsspec.core

    for link in url.split("::"):
        protocol = fsspec.core.split_protocol(link)[0] or "file"
        try:
            fsspec.get_filesystem_class(protocol)
        except ImportError:
            package = _package(protocol)
            raise errors.PluginError(
                f"{key}: {url!r} needs the fsspec filesystem of {protocol}://, which is not "
                f"installed: install the package {package}",
                key=key,
            ) from None
        except ValueError:
            raise errors.PluginError(
                f"{key}: {url!r}: fsspec knows no filesystem for {protocol}://", key=key
            ) from None


def _package(protocol: str) -> str:
    # The module, not `fsspec.registry`: fsspec's package attribute of that name is a dict.
    registry = importlib.import_module("fsspec.registry")
    known: dict[str, Any] = dict(registry.known_implementations.get(protocol, {}))
    return str(known.get("class", protocol)).split(".")[0]


class LocalRoot(Root):
    """Files under a local (or shared-mount) directory: 0600 files in 0700 directories,
    written to a temporary file, flushed to disk and renamed into place."""

    def __init__(self, base: pathlib.Path) -> None:
        self.base = base
        self.url = str(base)

    @property
    def is_local(self) -> bool:
        return True

    def path(self, key: str) -> pathlib.Path:
        return self.base / _checked(key)

    def put(self, key: str, fill: Fill) -> str:
        path = self.path(key)
        filemodes.private_dirs(path.parent)
        tmp = path.with_name(f".{path.name}.{os.urandom(8).hex()}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            with open(os.open(tmp, flags, filemodes.FILE_MODE), "wb") as fh:
                fill(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _sync_directory(path.parent)
        return str(path)

    def read(self, key: str, start: int = 0) -> bytes:
        with self.path(key).open("rb") as fh:
            fh.seek(start)
            return fh.read()

    def is_file(self, key: str) -> bool:
        return self.path(key).is_file()

    def children(self, key: str) -> list[str]:
        directory = self.path(key)
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if p.is_dir())

    def remove_tree(self, key: str) -> bool:
        directory = self.path(key)
        if not directory.is_dir() or directory.is_symlink():
            return False
        shutil.rmtree(directory, ignore_errors=True)
        return True

    def upload(self, key: str, source: pathlib.Path) -> None:
        if source.resolve() != self.path(key).resolve():  # else already in place
            self.put(key, _copy_of(source))


class RemoteRoot(Root):
    """Files under any fsspec URL. Writes go to a temporary name beside the key, then a
    `mv` puts them in place (on object stores a copy, itself atomic, then a delete)."""

    def __init__(self, url: str) -> None:
        import fsspec.core

        self.url = url.rstrip("/")
        fs, base = fsspec.core.url_to_fs(self.url)
        self._fs: Any = fs
        self._base: str = base.rstrip("/")

    def _path(self, key: str) -> str:
        return f"{self._base}/{_checked(key)}"

    def put(self, key: str, fill: Fill) -> str:
        path = self._path(key)
        parent, name = path.rsplit("/", 1)
        tmp = f"{parent}/.{name}.{os.urandom(8).hex()}.tmp"
        self._fs.makedirs(parent, exist_ok=True)
        try:
            with self._fs.open(tmp, "wb") as fh:
                fill(fh)
            self._fs.mv(tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):
                self._fs.rm(tmp)  # a partial upload may have left it
            raise
        return redact.text(f"{self.url}/{_checked(key)}")  # it goes into events

    def read(self, key: str, start: int = 0) -> bytes:
        data: bytes = self._fs.cat_file(self._path(key), start=start or None)
        return data

    def is_file(self, key: str) -> bool:
        return bool(self._fs.isfile(self._path(key)))

    def children(self, key: str) -> list[str]:
        try:
            entries = self._fs.ls(self._path(key), detail=True)
        except FileNotFoundError:
            return []
        names = (
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"
        )
        return sorted(names)

    def remove_tree(self, key: str) -> bool:
        path = self._path(key)
        if not self._fs.exists(path):
            return False
        self._fs.rm(path, recursive=True)
        return True

    def upload(self, key: str, source: pathlib.Path) -> None:
        self.put(key, _copy_of(source))


def _copy_of(source: pathlib.Path) -> Fill:
    """A `fill` that copies the local file `source`."""

    def fill(sink: Sink) -> None:
        with source.open("rb") as fh:
            shutil.copyfileobj(fh, sink)

    return fill


def _checked(key: str) -> str:
    """`key` if each of its parts can name a directory entry; ValueError otherwise."""
    for part in key.split("/"):
        if not part or part in (".", "..") or os.sep in part or "\\" in part:
            raise ValueError(f"{part!r} cannot name a directory entry")
    return key


def _sync_directory(directory: pathlib.Path) -> None:
    """Make a rename durable: flush the directory entry too."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
