"""The daemon's one small HTTP server, for machines: /metrics, /healthz, /readyz.

A GET/HEAD-only HTTP/1.1 responder on an anyio TCP listener, so it lives in the daemon's
task group and stops when that is cancelled, without a thread or a web framework (a few
hundred kilobytes of RSS instead of tens of megabytes). Each connection carries one
request and is closed after the response (`Connection: close`):

- the request head must arrive within `READ_TIMEOUT` and fit in `MAX_HEAD` bytes
  (else 408 / 431); the request line must be exactly `METHOD SP /path SP HTTP/1.x`
  (else 400); methods other than GET and HEAD get 405; headers and bodies are ignored;
- at most `MAX_CONNECTIONS` are served at once; more are closed at once;
- a route that raises answers 500 and the server goes on.

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

READ_TIMEOUT = 5.0  # seconds for the request head to arrive
WRITE_TIMEOUT = 10.0  # seconds for the response to be taken
READY_TIMEOUT = 5.0  # seconds the readiness check may take before /readyz answers 503
MAX_HEAD = 8192  # bytes of request line and headers
MAX_CONNECTIONS = 32
TEXT = "text/plain; charset=utf-8"

_REQUEST_LINE = re.compile(rb"(?P<method>[A-Z]{1,16}) (?P<target>/[!-~]{0,2048}) HTTP/1\.[01]")
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
        limiter = anyio.CapacityLimiter(MAX_CONNECTIONS)
        await listener.serve(functools.partial(_connection, routes, limiter))


async def _connection(
    routes: Routes, limiter: anyio.CapacityLimiter, stream: anyio.abc.SocketStream
) -> None:
    async with stream:
        try:
            limiter.acquire_nowait()
        except anyio.WouldBlock:
            return
        try:
            await _exchange(routes, stream)
        except _CLIENT_GONE:
            pass
        except Exception:  # a bug here must not stop the server for everyone else
            logger.exception("http connection failed", extra={"event": "http.error"})
        finally:
            limiter.release()


async def _exchange(routes: Routes, stream: anyio.abc.SocketStream) -> None:
    head_only, head = False, None
    with anyio.move_on_after(READ_TIMEOUT) as reading:
        head = await _read_head(stream)
    if reading.cancelled_caught:
        response = _text(HTTPStatus.REQUEST_TIMEOUT, "request timeout")
    elif head is None:
        response = _text(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
    else:
        head_only, response = await _answer(routes, head)
    with anyio.move_on_after(WRITE_TIMEOUT):
        await stream.send(_encode(response, head_only))


async def _read_head(stream: anyio.abc.SocketStream) -> bytes | None:
    """The request line and headers; None when they exceed MAX_HEAD."""
    buffer = bytearray()
    while (end := buffer.find(_END_OF_HEAD)) < 0:
        if len(buffer) > MAX_HEAD:
            return None
        buffer += await stream.receive(4096)
    return bytes(buffer[:end]) if end <= MAX_HEAD else None


async def _answer(routes: Routes, head: bytes) -> tuple[bool, Response]:
    """(HEAD request?, the response) for one request head."""
    match = _REQUEST_LINE.fullmatch(head.split(b"\r\n", 1)[0])
    if match is None:
        return False, _text(HTTPStatus.BAD_REQUEST, "bad request line")
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
