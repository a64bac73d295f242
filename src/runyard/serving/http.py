"""A small HTTP/1.1 server on asyncio for the replica's data plane. Standard library only (a replica runs in
the project's environment, which may have neither uvicorn nor httptools), and written for its one job: many
small JSON requests over keep-alive connections, with as little Python per request as possible.

Supported: keep-alive (HTTP/1.1 by default, HTTP/1.0 on request), Content-Length bodies, pipelined requests
(answered in order). Not supported: chunked request bodies (501), upgrades. A drain (see HttpServer.drain)
stops accepting, answers what is in flight with `Connection: close`, and closes keep-alive connections
once they have been quiet for DRAIN_QUIET seconds (closing one the very moment its client sends would
fail that request).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from itertools import islice

MAX_HEAD = 64 * 1024
# Seconds a keep-alive connection must be idle before a drain closes it. A connection in use gets its next
# answer with `Connection: close` and its client closes it, which cannot race; closing an idle one can
# meet a request its client sends at that instant (CI saw 3 such failures in a rolling update at 0.2 s).
DRAIN_QUIET = 2.0
DRAIN_TICK = 0.05
DRAIN_SETTLE = 0.25  # seconds a drain waits, after it stops accepting, for connections accepted meanwhile

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_CLOSE = b"Connection: close\r\n"


class Request:
    __slots__ = ("method", "path", "query", "headers", "body", "keep_alive")

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes, keep_alive: bool):
        self.method = method
        self.path, _, self.query = target.partition("?")
        self.headers = headers  # names lower-cased
        self.body = body
        self.keep_alive = keep_alive


Response = tuple[int, bytes]  # (status, JSON body)
App = Callable[[Request], Response | Awaitable[Response]]


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class HttpConnection(asyncio.Protocol):
    __slots__ = ("server", "transport", "buf", "busy", "head", "last_active")

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False  # a request is being answered (asynchronously)
        self.head: tuple | None = None  # a parsed request head, awaiting its body
        self.last_active = 0.0

    # -- asyncio callbacks -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.last_active = self.server.loop.time()
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.server.connections.discard(self)

    def pause_writing(self) -> None:  # the client does not read: stop reading its requests meanwhile
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.last_active = self.server.loop.time()
        if not self.busy:
            self._process()

    # -- requests --------------------------------------------------------------------------------------
    def idle(self) -> bool:
        return not self.busy and not self.buf

    def _process(self) -> None:
        app = self.server.app
        while self.transport is not None and not self.busy and self.buf:
            request = self._parse()
            if request is None:
                return
            result = app(request)
            if isinstance(result, tuple):
                self._write(result, request.keep_alive)
            else:
                self.busy = True
                task: asyncio.Task = self.server.loop.create_task(result)  # type: ignore[arg-type]
                task.add_done_callback(functools.partial(self._done, keep_alive=request.keep_alive))
                return

    def _done(self, task: asyncio.Task, keep_alive: bool) -> None:
        self.busy = False
        if task.cancelled():
            result: Response = (503, error_body("unavailable", "the request was cancelled"))
        elif task.exception() is not None:
            result = (500, error_body("internal", f"{type(task.exception()).__name__}"))
        else:
            result = task.result()
        self._write(result, keep_alive)
        if self.buf:
            self._process()

    def _parse(self) -> Request | None:
        """The next complete request in the buffer, or None (more to come, or the connection failed)."""
        buf = self.buf
        head = self.head
        if head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._fail(431, "headers_too_large", f"the request head is over {MAX_HEAD} bytes")
                return None
            head = self._parse_head(buf, end)
            if head is None:
                return None
        start, method, target, keep_alive, headers, length = head
        stop = start + length
        if len(buf) < stop:
            self.head = head
            return None
        self.head = None
        body = bytes(buf[start:stop])
        del buf[:stop]
        return Request(method, target, headers, body, keep_alive)

    def _parse_head(self, buf: bytearray, end: int) -> tuple | None:
        lines = buf[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._fail(400, "bad_request", "not an HTTP/1.x request line")
            return None
        headers = {}
        for line in islice(lines, 1, None):
            name, sep, value = line.partition(":")
            if not sep:
                self._fail(400, "bad_request", f"malformed header line {line[:80]!r}")
                return None
            headers[name.lower()] = value.strip()
        if "transfer-encoding" in headers:
            self._fail(
                501, "not_implemented", "chunked request bodies are not supported: send Content-Length"
            )
            return None
        declared = headers.get("content-length")
        if declared is not None and not declared.isdigit():
            self._fail(400, "bad_request", "Content-Length is not a non-negative integer")
            return None
        length = int(declared) if declared else 0
        if length > self.server.max_body:
            self._fail(413, "too_large", f"the body is over the limit of {self.server.max_body} bytes")
            return None
        if headers.get("expect", "").lower() == "100-continue" and len(buf) < end + 4 + length:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if parts[2] == "HTTP/1.1" else connection == "keep-alive"
        return end + 4, parts[0], parts[1], keep_alive, headers, length

    def _fail(self, status: int, code: str, message: str) -> None:
        """Answer an unreadable request and close: what follows it on the connection cannot be framed."""
        self.buf.clear()
        self.server.on_refused(status)
        self._write((status, error_body(code, message)), False)

    def _write(self, response: Response, keep_alive: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        status, body = response
        close = not keep_alive or self.server.draining
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (status, _REASONS.get(status, b"Unknown"), len(body), _CLOSE if close else b"", body)
        )
        self.last_active = self.server.loop.time()
        if close:
            self.buf.clear()
            transport.close()


class HttpServer:
    """Serves `app` on an already listening socket (the model's, shared with the other replicas)."""

    def __init__(self, app: App, max_body: int, on_refused: Callable[[int], None] = lambda status: None):
        self.app = app
        self.max_body = max_body
        self.on_refused = on_refused  # a request refused before it reached the app (413, 400, ...)
        self.connections: set[HttpConnection] = set()
        self.draining = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.base_events.Server | None = None

    async def start(self, sock: socket.socket) -> None:
        self.loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self._server = await self.loop.create_server(lambda: HttpConnection(self), sock=sock, backlog=4096)

    async def drain(self) -> None:
        """Stop accepting (only this process's copy of the socket closes: the others keep listening), let
        what is in flight finish, close keep-alive connections as they fall quiet; returns when none is
        left."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        # A connection the loop accepted just before the close is made (connection_made) a moment after it:
        # leaving before then would close it with its request unread, and its client would see a reset.
        await asyncio.sleep(DRAIN_SETTLE)
        while self.connections:
            now = self.loop.time()
            for conn in list(self.connections):
                if conn.idle() and now - conn.last_active >= DRAIN_QUIET and conn.transport is not None:
                    conn.transport.close()
            await asyncio.sleep(DRAIN_TICK)
