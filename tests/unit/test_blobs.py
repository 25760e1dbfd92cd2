"""vigil.blobs: the same files through a local path, a file:// URL and fsspec URLs."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable

import fsspec
import pytest

from vigil import blobs, errors

REPO = pathlib.Path(__file__).resolve().parents[2]
CHUNK = 64 * 1024
CHUNKS = 32  # a version is 2 MiB, written a chunk at a time
VERSIONS = 24


def _url_of(kind: str, tmp_path: pathlib.Path) -> str:
    return {
        "path": str(tmp_path),
        "file": f"file://{tmp_path}",
        "chained": f"simplecache::file://{tmp_path}",
        "local": f"local://{tmp_path}",
        "memory": f"memory://vigil-{uuid.uuid4().hex}",
    }[kind]


@pytest.fixture(params=["path", "file", "chained", "local", "memory"])
def root(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> blobs.Root:
    return blobs.open_root(_url_of(request.param, tmp_path), "storage_dir")


def _bytes(data: bytes) -> Callable[[blobs.Sink], None]:
    def fill(sink: blobs.Sink) -> None:
        sink.write(data)

    return fill


def test_a_path_and_a_file_url_stay_local_and_other_urls_go_through_fsspec(
    tmp_path: pathlib.Path,
) -> None:
    assert blobs.local_path("relative/dir") == pathlib.Path("relative/dir")
    assert blobs.local_path("file:///srv/vigil%20x") == pathlib.Path("/srv/vigil x")
    for url in ("memory://x", "s3://bucket/x", "simplecache::file:///tmp/x", "local:///x"):
        assert blobs.local_path(url) is None
    assert isinstance(blobs.open_root(f"file://{tmp_path}", "logs_dir"), blobs.LocalRoot)
    assert isinstance(blobs.open_root(f"local://{tmp_path}", "logs_dir"), blobs.RemoteRoot)


def test_put_read_list_and_remove(root: blobs.Root, tmp_path: pathlib.Path) -> None:
    locator = root.put("r1/step/out", _bytes(b"hello world"))
    assert locator.endswith("/r1/step/out")
    assert root.read("r1/step/out") == b"hello world"
    assert root.read("r1/step/out", 6) == b"world"
    assert root.is_file("r1/step/out")
    assert not root.is_file("r1/step/other")
    with pytest.raises(FileNotFoundError):
        root.read("r1/step/other")
    root.put("r1/second/out", _bytes(b"2"))
    assert root.children("r1") == ["second", "step"]
    assert root.children("r9") == []
    assert root.remove_tree("r1")
    assert not root.remove_tree("r1")
    assert not root.is_file("r1/step/out")
    with pytest.raises(ValueError, match="cannot name"):
        root.put("../r1/out", _bytes(b""))


def test_files_land_where_the_url_points(tmp_path: pathlib.Path) -> None:
    for kind in ("path", "file", "chained", "local"):
        blobs.open_root(_url_of(kind, tmp_path), "storage_dir").put(f"{kind}/s", _bytes(b"x"))
        assert (tmp_path / kind / "s").read_bytes() == b"x"
        assert sorted(p.name for p in (tmp_path / kind).iterdir()) == ["s"]  # no temp left


@pytest.mark.parametrize("kind", ["path", "file", "chained", "local"])
def test_a_put_that_fails_leaves_the_old_file_and_no_temporary(
    kind: str, tmp_path: pathlib.Path
) -> None:
    root = blobs.open_root(_url_of(kind, tmp_path), "storage_dir")
    root.put("r1/step", _bytes(b"old"))

    def half_then_fail(sink: blobs.Sink) -> None:
        sink.write(b"ne")
        raise RuntimeError("the pickle failed")

    with pytest.raises(RuntimeError, match="the pickle failed"):
        root.put("r1/step", half_then_fail)
    assert root.read("r1/step") == b"old"
    assert [p.name for p in (tmp_path / "r1").iterdir()] == ["step"]


def test_upload_copies_a_local_file(root: blobs.Root, tmp_path: pathlib.Path) -> None:
    source = tmp_path / "staged.log"
    source.write_bytes(b"line 1\nline 2\n")
    root.upload("r1/step/stdout.log", source)
    assert root.read("r1/step/stdout.log") == b"line 1\nline 2\n"


def test_a_locator_never_carries_a_password() -> None:
    root = blobs.RemoteRoot("memory://bob:hunter2@vigil-locator")
    assert "hunter2" not in root.put("r1/s", _bytes(b"x"))


def test_a_local_root_writes_private_files(tmp_path: pathlib.Path) -> None:
    blobs.LocalRoot(tmp_path / "base").put("r1/s", _bytes(b"x"))
    assert (tmp_path / "base" / "r1" / "s").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "base" / "r1").stat().st_mode & 0o777 == 0o700


def _version(number: int) -> Callable[[blobs.Sink], None]:
    """A 2 MiB file of one byte value, written in chunks: a torn read shows two values."""

    def fill(sink: blobs.Sink) -> None:
        for _ in range(CHUNKS):
            sink.write(bytes([number]) * CHUNK)

    return fill


def test_a_concurrent_reader_never_sees_a_partial_file(root: blobs.Root) -> None:
    done = threading.Event()
    seen: list[tuple[int, frozenset[int]]] = []

    def read_once() -> None:
        try:
            data = root.read("r1/step")
        except FileNotFoundError:
            return
        seen.append((len(data), frozenset(data)))

    def reader() -> None:
        while not done.is_set():
            read_once()
        read_once()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for number in range(VERSIONS):
            root.put("r1/step", _version(number))
    finally:
        done.set()
        thread.join()
    assert seen, "the reader read nothing"
    # Whole versions only (a caching URL such as simplecache:: may keep showing the first).
    assert all(size == CHUNK * CHUNKS and len(values) == 1 for size, values in seen)


READER = """
import pathlib, sys
from vigil import blobs
root = blobs.open_root(sys.argv[1], "storage_dir")
stop, size = pathlib.Path(sys.argv[2]), int(sys.argv[3])
reads = torn = 0
print("ready", flush=True)
while True:
    last = stop.exists()
    try:
        data = root.read("r1/step")
    except FileNotFoundError:
        data = None
    if data is not None:
        reads += 1
        torn += len(data) != size or len(set(data)) != 1
    if last:
        break
print(reads, torn)
"""


@pytest.mark.parametrize("kind", ["path", "file", "chained", "local"])
def test_a_reader_in_another_process_never_sees_a_partial_file(
    kind: str, tmp_path: pathlib.Path
) -> None:
    url, stop = _url_of(kind, tmp_path / "root"), tmp_path / "stop"
    args = [sys.executable, "-c", READER, url, str(stop), str(CHUNK * CHUNKS)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env) as reader:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"
        root = blobs.open_root(url, "storage_dir")
        for number in range(VERSIONS):
            root.put("r1/step", _version(number))
        stop.touch()
        reads, torn = map(int, reader.stdout.read().split())
    assert reader.returncode == 0
    assert reads >= 1
    assert torn == 0


def test_a_missing_filesystem_package_names_the_key_and_the_package() -> None:
    fsspec.register_implementation(
        "vigiltestfs", "vigil_no_such_package.FileSystem", errtxt="absent", clobber=True
    )
    with pytest.raises(errors.PluginError, match="install the package vigil_no_such_package"):
        blobs.check("vigiltestfs://bucket/outputs", "storage_dir")
    with pytest.raises(errors.PluginError) as refused:
        blobs.open_root("vigiltestfs://bucket/outputs", "storage_dir")
    assert refused.value.key == "storage_dir"
    with pytest.raises(errors.PluginError, match="fsspec knows no filesystem for nosuch://"):
        blobs.check("simplecache::nosuch://x", "logs_dir")
    assert importlib.util.find_spec("vigil_no_such_package") is None
