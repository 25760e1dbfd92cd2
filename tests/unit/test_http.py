"""The daemon's HTTP server: a real listener on 127.0.0.1, real HTTP clients.

The server runs in the test's task group as it runs in the daemon's; requests go through
the stdlib `http.client` in a worker thread, or raw bytes over a TCP stream for what a
well-behaved client never sends.
"""

from __future__ import annotations

import dataclasses
import http.client
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import pytest

from vigil.config import settings as settings_mod
from vigil.daemon import http as http_mod

LOOPBACK = settings_mod.HttpSettings(host="127.0.0.1", port=0)


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class FakeMetrics:
    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def render(self) -> bytes:
        return b"# TYPE vigil_up gauge\nvigil_up 1.0\n"


class Probes:
    """What the daemon injects: liveness and readiness, each with a reason."""

    def __init__(self) -> None:
        self.alive = True
        self.ready: tuple[bool, str] = (True, "store reachable, schema current, 3 loops healthy")
        self.error: Exception | None = None
        self.hang = anyio.Event()
        self.hanging = False

    def liveness(self) -> tuple[bool, str]:
        return (True, "3 loops live") if self.alive else (False, "loop q is hung: 95s\nmore")

    async def readiness(self) -> tuple[bool, str]:
        if self.error is not None:
            raise self.error
        if self.hanging:
            await self.hang.wait()
        return self.ready


@asynccontextmanager
async def running(routes: http_mod.Routes) -> AsyncIterator[int]:
    """The server on a free loopback port; yields the port, cancels the server after.

    A context manager in the test's own task, not a fixture: an async fixture's setup and
    teardown run in different tasks, and a task group must be left by the task that entered.
    """
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            port = await group.start(http_mod.serve, LOOPBACK, routes)
            assert isinstance(port, int)
            yield port
            group.cancel_scope.cancel()


def serving(probes: Probes) -> AbstractAsyncContextManager[int]:
    return running(http_mod.daemon_routes(FakeMetrics(), probes.liveness, probes.readiness))


@pytest.fixture
def probes() -> Probes:
    return Probes()


def _request(port: int, method: str, path: str) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        connection.close()


async def request(port: int, path: str, method: str = "GET") -> Reply:
    return await anyio.to_thread.run_sync(_request, port, method, path)


async def raw(port: int, data: bytes, *, close_write: bool = True) -> bytes:
    """Send raw bytes, read the whole answer until the server closes."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(data)
        if close_write:
            await stream.send_eof()
        return await read_all(stream)


async def read_all(stream: anyio.abc.ByteReceiveStream) -> bytes:
    received = bytearray()
    try:
        while True:
            received += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        return bytes(received)


async def test_metrics_in_the_text_format(probes: Probes) -> None:
    async with serving(probes) as port:
        reply = await request(port, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert reply.body == FakeMetrics().render()
    assert reply.headers["content-length"] == str(len(reply.body))
    assert reply.headers["connection"] == "close"


async def test_healthz_answers_the_liveness_and_its_reason_on_one_line(probes: Probes) -> None:
    async with serving(probes) as port:
        live = await request(port, "/healthz")
        probes.alive = False
        reply = await request(port, "/healthz")
    assert (live.status, live.body) == (200, b"ok: 3 loops live\n")
    assert (reply.status, reply.body) == (503, b"loop q is hung: 95s\n")


async def test_readyz_gives_the_reason(probes: Probes) -> None:
    async with serving(probes) as port:
        ready = await request(port, "/readyz")
        probes.ready = (False, "loop queue is hung: running for 95 s (timeout 60 s)\nmore")
        not_ready = await request(port, "/readyz")
    assert ready.status == 200
    assert ready.body == b"store reachable, schema current, 3 loops healthy\n"
    assert not_ready.status == 503
    assert not_ready.body == b"loop queue is hung: running for 95 s (timeout 60 s)\n"


async def test_readyz_is_not_ready_when_the_check_raises(probes: Probes) -> None:
    probes.error = ConnectionRefusedError("connection refused")
    async with serving(probes) as port:
        reply = await request(port, "/readyz")
    assert reply.status == 503
    assert reply.body == b"readiness check failed: ConnectionRefusedError: connection refused\n"


async def test_readyz_does_not_wait_for_a_hung_check(
    probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_mod, "READY_TIMEOUT", 0.05)
    probes.hanging = True
    async with serving(probes) as port:
        reply = await request(port, "/readyz")
    assert (reply.status, reply.body) == (503, b"readiness check timed out (0.05 s)\n")


async def test_unknown_path_query_string_and_head(probes: Probes) -> None:
    async with serving(probes) as port:
        assert (await request(port, "/nope")).status == 404
        assert (await request(port, "/healthz?verbose=1")).status == 200
        head = await request(port, "/metrics", method="HEAD")
    assert (head.status, head.body) == (200, b"")
    assert head.headers["content-length"] == str(len(FakeMetrics().render()))


async def test_other_methods_are_refused(probes: Probes) -> None:
    async with serving(probes) as port:
        reply = await request(port, "/metrics", method="POST")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /metrics",
        b"GET  /metrics HTTP/1.1",
        b"GET metrics HTTP/1.1",
        b"get /metrics HTTP/1.1",
        b"GET /metrics HTTP/2.0",
        b"GET /met rics HTTP/1.1",
        b"GET /m\xc3\xa9trics HTTP/1.1",
        b"GET /metrics HTTP/1.1 extra",
    ],
)
async def test_a_malformed_request_line_is_a_bad_request(
    probes: Probes, request_line: bytes
) -> None:
    async with serving(probes) as port:
        answer = await raw(port, request_line + b"\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414 Request-URI Too Long"),
        (b"GET /" + b"a" * 20000, b"414 Request-URI Too Long"),  # refused before it ends
        (b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", b"431 Request Header"),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", b"400 Bad Request"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded: y\r\n\r\n", b"400 Bad Request"),
        (b"GET / HTTP/1.1\r\nBad Name: y\r\n\r\n", b"400 Bad Request"),
        (b"GET / HTTP/1.1\r\nX: a\nb\r\n\r\n", b"400 Bad Request"),
        (b"\x00\xff\x16\x03\x01\r\n\r\n", b"400 Bad Request"),  # a TLS hello, say
        (b"\r\n\r\n", b"400 Bad Request"),
    ],
)
async def test_over_long_and_malformed_requests_get_their_status_and_no_traceback(
    probes: Probes, data: bytes, status: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(probes) as port:
        answer = await raw(port, data, close_write=False)
        assert (await request(port, "/healthz")).status == 200  # and the server goes on
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:80]
    assert [r for r in caplog.records if r.exc_info] == []


async def test_a_request_line_up_to_the_limit_is_served(probes: Probes) -> None:
    target = b"/healthz?" + b"a" * (http_mod.MAX_REQUEST_LINE - 30)
    async with serving(probes) as port:
        answer = await raw(port, b"GET " + target + b" HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_idle_and_slow_clients_never_keep_a_scrape_waiting(
    probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Twice as many idle connections as slots, and slowloris clients trickling bytes; the
    # read timeout is long, so only the server's making room can let the scrape in.
    monkeypatch.setattr(http_mod, "READ_TIMEOUT", 60.0)
    async with serving(probes) as port, anyio.create_task_group() as clients:
        idle = [await anyio.connect_tcp("127.0.0.1", port) for _ in range(64)]
        for _ in range(4):
            clients.start_soon(slowloris, port)
        with anyio.fail_after(10):  # generous: an answer takes milliseconds
            reply = await request(port, "/metrics")
        assert reply.status == 200
        assert reply.body == FakeMetrics().render()
        for stream in idle:
            await stream.aclose()
        clients.cancel_scope.cancel()


SLOWLORIS_PAUSE = 0.2  # seconds between two bytes of a slowloris client


async def slowloris(port: int) -> None:
    """Open a connection and send a request one byte at a time, again when closed."""
    request_bytes = b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"z" * 1000
    while True:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            try:
                for byte in request_bytes:
                    await stream.send(bytes([byte]))
                    await anyio.sleep(SLOWLORIS_PAUSE)
            except (anyio.BrokenResourceError, OSError):
                continue


async def test_an_oversized_head_is_refused(probes: Probes) -> None:
    huge = b"GET /metrics HTTP/1.1\r\nX-Filler: " + b"a" * (http_mod.MAX_HEAD + 10) + b"\r\n\r\n"
    async with serving(probes) as port:
        answer = await raw(port, huge)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


async def test_a_slow_client_gets_408(probes: Probes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_mod, "READ_TIMEOUT", 0.05)
    async with serving(probes) as port:
        answer = await raw(port, b"GET /metrics HTTP/1.1\r\n", close_write=False)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")


async def test_a_client_that_hangs_up_does_not_stop_the_server(probes: Probes) -> None:
    async with serving(probes) as port:
        assert await raw(port, b"GET /metr") == b""
        assert (await request(port, "/healthz")).status == 200


async def test_a_route_that_raises_answers_500_and_the_server_goes_on() -> None:
    async def broken() -> http_mod.Response:
        raise RuntimeError("bug")

    async def fine() -> http_mod.Response:
        return http_mod.Response(200, b"fine\n")

    async with running({"/broken": broken, "/fine": fine}) as port:
        assert (await request(port, "/broken")).status == 500
        assert (await request(port, "/fine")).body == b"fine\n"


async def test_an_idle_connection_makes_room_for_a_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_mod, "MAX_CONNECTIONS", 1)
    monkeypatch.setattr(http_mod, "READ_TIMEOUT", 60.0)  # only the eviction can make room
    async with running({"/ok": _ok}) as port, await anyio.connect_tcp("127.0.0.1", port) as idle:
        await idle.send(b"GET /ok HTTP/1.1\r\n")  # holds the only slot, sends no more
        assert (await raw(port, b"GET /ok HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200 OK")
        assert await read_all(idle) == b""  # closed to make room


async def test_a_new_connection_is_closed_while_every_slot_is_answering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_mod, "MAX_CONNECTIONS", 1)
    release, entered = anyio.Event(), anyio.Event()

    async def slow() -> http_mod.Response:
        entered.set()
        await release.wait()
        return http_mod.Response(200, b"slow\n")

    async with running({"/slow": slow}) as port, await anyio.connect_tcp("127.0.0.1", port) as busy:
        await busy.send(b"GET /slow HTTP/1.1\r\n\r\n")
        await entered.wait()
        assert await raw(port, b"GET /slow HTTP/1.1\r\n\r\n") == b""
        release.set()
        assert (await read_all(busy)).startswith(b"HTTP/1.1 200 OK\r\n")


async def _ok() -> http_mod.Response:
    return http_mod.Response(200, b"ok\n")


async def test_cancelling_the_task_group_closes_the_listener() -> None:
    async with running({}) as port:
        assert (await request(port, "/")).status == 404
    with pytest.raises(OSError):  # noqa: PT011 - refused, whatever the errno
        await anyio.connect_tcp("127.0.0.1", port)


async def test_disabled_reports_no_port_and_waits_to_be_cancelled() -> None:
    disabled = settings_mod.HttpSettings(enabled=False)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            assert await group.start(http_mod.serve, disabled, {}) is None
            group.cancel_scope.cancel()


def test_settings_default_to_loopback_9464() -> None:
    defaults = settings_mod.InstanceSettings().http
    assert (defaults.enabled, defaults.host, defaults.port) == (True, "127.0.0.1", 9464)
