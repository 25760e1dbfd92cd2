"""The daemon's one small HTTP server, for machines: /metrics, /healthz, /readyz.

A GET/HEAD-only HTTP/1.1 responder on an anyio TCP listener, so it lives in the daemon's
task group and stops when that is cancelled, without a thread or a web framework (a few
hundred kilobytes of RSS instead of tens of megabytes). Each connection carries one
request and is closed after the response (`Connection: close`: no keep-alive, so no idle
connection outlives its answer):

- the request line and headers must arrive within `READ_TIMEOUT` (2 s, however slowly the
  bytes trickle in; else 408); a request line over `MAX_REQUEST_LINE` bytes gets 414,
  headers over `MAX_HEAD` bytes or `MAX_HEADERS` fields 431, a request line that is not
  exactly `METHOD SP /path SP HTTP/1.x` or a header line that is not `name: value` 400;
  methods other than GET and HEAD get 405; header values and bodies are ignored;
- at most `MAX_CONNECTIONS` are served at once. When all are taken, the connection that
  has waited longest for its request head is closed to make room: idle or slow clients
  can delay nobody, so a scrape, which sends its request at once, is always answered;
  only when every slot is answering a request is a new connection closed at once;
- after the response the server stops writing and reads what the client still sends for
  up to `LINGER` seconds, so a client refused mid-request reads its answer, not a reset;
- a route that raises answers 500 and the server goes on; no request, however malformed,
  puts a traceback in the log.

Routes are plain coroutine functions of no argument returning a `Response`;
`daemon_routes` builds the three the daemon serves from narrow inputs.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Protocol

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from vigil.config import settings as settings_mod

logger = logging.getLogger(__name__)

READ_TIMEOUT = 2.0  # seconds for the request line and headers to arrive, in all
WRITE_TIMEOUT = 10.0  # seconds for the response to be taken
LINGER = 1.0  # seconds to read what a client still sends after its answer
LINGER_BYTES = 1 << 20  # bytes read (and dropped) at most while lingering
READY_TIMEOUT = 5.0  # seconds the readiness check may take before /readyz answers 503
MAX_REQUEST_LINE = 8192  # bytes of the request line (method, target, version)
MAX_HEAD = 8192  # bytes of the header lines after the request line
MAX_HEADERS = 100  # header fields
MAX_CONNECTIONS = 32
TEXT = "text/plain; charset=utf-8"

_REQUEST_LINE = re.compile(rb"(?P<method>[A-Z]{1,16}) (?P<target>/[!-~]*) HTTP/1\.[01]")
_HEADER = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n]*")
_END_OF_HEAD = b"\r\n\r\n"
_CLIENT_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[], Awaitable[Response]]
Routes = Mapping[str, Handler]
ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]
LivenessCheck = Callable[[], tuple[bool, str]]


class Exposition(Protocol):
    """What /metrics serves (`metrics.Metrics` is one)."""

    content_type: str

    def render(self) -> bytes: ...


def daemon_routes(metrics: Exposition, live: LivenessCheck, ready: ReadinessCheck) -> Routes:
    """/metrics, /healthz (`live()`: ok, reason; the systemd watchdog's judgement),
    /readyz (`ready()`: ok, reason)."""
    return {
        "/metrics": functools.partial(_metrics, metrics),
        "/healthz": functools.partial(_healthz, live),
        "/readyz": functools.partial(_readyz, ready),
    }


async def serve(
    settings: settings_mod.HttpSettings,
    routes: Routes,
    *,
    task_status: anyio.abc.TaskStatus[int | None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `routes` until cancelled; `task_status.started(port)` once listening.

    The bound port is reported (useful with port 0). When the server is disabled this
    reports None and waits to be cancelled, like any daemon service. Binding errors
    (`OSError`) propagate before `started`.
    """
    if not settings.enabled:
        task_status.started(None)
        await anyio.sleep_forever()
    listener = await anyio.create_tcp_listener(local_host=settings.host, local_port=settings.port)
    async with listener:
        port = listener.extra(SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
        logger.info(
            "serving http on %s:%s",
            settings.host,
            port,
            extra={"event": "http.listening", "host": settings.host, "port": port},
        )
        task_status.started(port)
        slots = _Slots(MAX_CONNECTIONS)
        await listener.serve(functools.partial(_connection, routes, slots))


class _Slots:
    """At most `limit` connections at once. One still waiting for its request head (or
    lingering after its answer) may be closed to make room for a new one, the longest
    waiting first; one being answered may not."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._waiting: dict[anyio.CancelScope, None] = {}  # in arrival order
        self._answering: set[anyio.CancelScope] = set()

    def take(self, scope: anyio.CancelScope) -> bool:
        """A slot for the connection `scope` runs; False when every slot is answering."""
        if len(self._waiting) + len(self._answering) >= self._limit:
            if not self._waiting:
                return False
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            oldest.cancel()
        self._waiting[scope] = None
        return True

    def answering(self, scope: anyio.CancelScope) -> None:
        """The connection sent its request: it may no longer be closed to make room."""
        if scope in self._waiting:
            del self._waiting[scope]
            self._answering.add(scope)

    def answered(self, scope: anyio.CancelScope) -> None:
        """The answer is sent; lingering, the connection may be closed to make room again."""
        if scope in self._answering:
            self._answering.discard(scope)
            self._waiting[scope] = None

    def release(self, scope: anyio.CancelScope) -> None:
        self._waiting.pop(scope, None)
        self._answering.discard(scope)


async def _connection(routes: Routes, slots: _Slots, stream: anyio.abc.SocketStream) -> None:
    async with stream:
        with anyio.CancelScope() as scope:
            if not slots.take(scope):
                return
            try:
                await _exchange(routes, stream, slots, scope)
            except _CLIENT_GONE:
                pass
            except Exception:  # a bug here must not stop the server for everyone else
                logger.exception("http connection failed", extra={"event": "http.error"})
            finally:
                slots.release(scope)


async def _exchange(
    routes: Routes, stream: anyio.abc.SocketStream, slots: _Slots, scope: anyio.CancelScope
) -> None:
    head_only = False
    head: bytes | Response = _text(HTTPStatus.REQUEST_TIMEOUT, "request timeout")
    with anyio.move_on_after(READ_TIMEOUT):
        head = await _read_head(stream)
    if isinstance(head, Response):
        response = head
    else:
        slots.answering(scope)
        head_only, response = await _answer(routes, head)
    with anyio.move_on_after(WRITE_TIMEOUT):
        await stream.send(_encode(response, head_only))
    slots.answered(scope)
    await _linger(stream)


async def _read_head(stream: anyio.abc.SocketStream) -> bytes | Response:
    """The request line and headers, or the refusal of a head too large."""
    buffer = bytearray()
    while (end := buffer.find(_END_OF_HEAD)) < 0:
        refusal = _too_large(buffer)
        if refusal is not None:
            return refusal
        buffer += await stream.receive(4096)
    head = bytes(buffer[:end])
    return _too_large(head) or head


def _too_large(head: bytes | bytearray) -> Response | None:
    """414 for a request line over its limit, 431 for header lines over theirs."""
    line_end = head.find(b"\r\n")
    line = len(head) if line_end < 0 else line_end
    if line > MAX_REQUEST_LINE:
        return _text(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
    if len(head) - line > MAX_HEAD + 2:
        return _text(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request headers too large")
    return None


async def _linger(stream: anyio.abc.SocketStream) -> None:
    """Stop writing, then drop what the client still sends until it closes (or LINGER)."""
    await stream.send_eof()
    dropped = 0
    with anyio.move_on_after(LINGER):
        while dropped < LINGER_BYTES:
            dropped += len(await stream.receive(65536))


async def _answer(routes: Routes, head: bytes) -> tuple[bool, Response]:
    """(HEAD request?, the response) for one request head."""
    line, *fields = head.split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        return False, _text(HTTPStatus.BAD_REQUEST, "bad request line")
    if len(fields) > MAX_HEADERS:
        return False, _text(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header fields")
    if not all(_HEADER.fullmatch(field) for field in fields):
        return False, _text(HTTPStatus.BAD_REQUEST, "bad header field")
    method = match["method"]
    if method not in (b"GET", b"HEAD"):
        allow = (("Allow", "GET, HEAD"),)
        return False, _text(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and HEAD", allow)
    path = match["target"].split(b"?", 1)[0].decode("ascii")
    return method == b"HEAD", await _dispatch(routes, path)


async def _dispatch(routes: Routes, path: str) -> Response:
    handler = routes.get(path)
    if handler is None:
        return _text(HTTPStatus.NOT_FOUND, "not found")
    try:
        return await handler()
    except Exception:
        logger.exception("http route %s failed", path, extra={"event": "http.error", "path": path})
        return _text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")


def _encode(response: Response, head_only: bool) -> bytes:
    status = HTTPStatus(response.status)
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


def _text(status: HTTPStatus, line: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status.value, (line + "\n").encode("utf-8"), TEXT, headers)


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else ""


async def _metrics(metrics: Exposition) -> Response:
    return Response(HTTPStatus.OK.value, metrics.render(), metrics.content_type)


async def _healthz(live: LivenessCheck) -> Response:
    ok, reason = live()
    if ok:
        return _text(HTTPStatus.OK, _one_line(f"ok: {reason}"))
    return _text(HTTPStatus.SERVICE_UNAVAILABLE, _one_line(reason) or "not live")


async def _readyz(ready: ReadinessCheck) -> Response:
    try:
        with anyio.fail_after(READY_TIMEOUT):
            ok, reason = await ready()
    except TimeoutError:
        reason = f"readiness check timed out ({READY_TIMEOUT:g} s)"
        return _text(HTTPStatus.SERVICE_UNAVAILABLE, reason)
    except Exception as exc:
        reason = f"readiness check failed: {type(exc).__name__}: {exc}"
        return _text(HTTPStatus.SERVICE_UNAVAILABLE, _one_line(reason))
    if ok:
        return _text(HTTPStatus.OK, _one_line(reason) or "ready")
    return _text(HTTPStatus.SERVICE_UNAVAILABLE, _one_line(reason) or "not ready")
