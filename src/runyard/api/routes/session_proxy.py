"""The authenticated reverse proxy to a Session's Jupyter server: /sessions/{project}/{name}/...

Every method and websocket under the prefix goes to the session's Jupyter server on its loopback port,
with the same path (Jupyter's base_url is this prefix), carrying the session's Jupyter token, once the
caller has shown a runyard token with write access to the project. The token may come from
`Authorization: Bearer`, from `?token=` (a browser's first visit: it becomes a cookie scoped to the
session's path, and the browser is sent back to the URL without it) or from that cookie. Which one is
used is in that order: a link with a token signs in again over an old cookie.

These are plain Starlette routes, kept out of the OpenAPI document: they authenticate themselves here
(cookies and query tokens are not the API's Guard), with the same `authenticate`.

The hot paths stay lean: after the handshake a websocket message costs one receive and one send (the
upstream and the principal are looked up once, activity is a dict write), and HTTP bodies stream both
ways without being read whole (see loopback_http.py for why not httpx there).
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from runyard.api import errors
from runyard.api.deps import state
from runyard.api.loopback_http import LoopbackPool
from runyard.api.ws_auth import authorize_websocket
from runyard.core.errors import Forbidden, RunyardError, Unauthorized, Unavailable
from runyard.services.auth import Access, Principal, authenticate, cached_principal
from runyard.services.session_gateway import SessionGateway, Upstream

COOKIE = "runyard-session"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Not forwarded either way: hop-by-hop headers, and what the proxy itself sets.
HOP = frozenset(
    b"connection keep-alive proxy-authenticate proxy-authorization te trailer transfer-encoding upgrade "
    b"host authorization cookie origin expect".split()
)
SIGN_IN = (
    "sign in: open the session's URL with ?token=<a runyard token>, "
    "or send 'Authorization: Bearer <token>' (see `runyard session list` for its URL)"
)


def prefix(project: str, name: str) -> str:
    return f"/sessions/{project}/{name}/"


def credential(conn: HTTPConnection) -> tuple[str | None, str]:
    """('Bearer <token>', where it came from: query | header | cookie), or (None, '')."""
    if token := conn.query_params.get("token"):
        return f"Bearer {token}", "query"
    header = conn.headers.get("authorization")
    if header and header[:7].lower() == "bearer ":
        return header, "header"
    if cookie := conn.cookies.get(COOKIE):
        return f"Bearer {cookie}", "cookie"
    return None, ""


async def principal(conn: HTTPConnection, authorization: str | None, project: str) -> Principal:
    if authorization is None:
        raise Unauthorized(f"no runyard token: {SIGN_IN}")
    store = state(conn).store  # type: ignore[arg-type]  # app.state is reached the same way
    who = cached_principal(store, authorization)
    if who is None:
        who = await run_in_threadpool(authenticate, store, authorization)
    assert who is not None
    who.authorize(Access.WRITE, project)
    return who


def check_origin(conn: HTTPConnection) -> None:
    """A browser's cross-origin request (another site's page, a form) is refused: the cookie would
    otherwise act for it. Clients that send no Origin are not browsers acting for a page."""
    origin = conn.headers.get("origin")
    if origin and urlsplit(origin).netloc != conn.headers.get("host"):
        raise Forbidden(f"cross-origin request from {origin!r} refused: open the session from this server")


def gateway(conn: HTTPConnection) -> SessionGateway:
    gw = getattr(state(conn), "sessions", None)  # type: ignore[arg-type]
    if gw is None:
        raise Unavailable("this server does not serve sessions")
    return gw


async def upstream(conn: HTTPConnection, project: str, name: str) -> Upstream:
    gw = gateway(conn)
    up = gw.cached(project, name)
    return up if up is not None else await run_in_threadpool(gw.upstream, project, name)


def unreachable(gw: SessionGateway, project: str, name: str) -> Unavailable:
    gw.forget(project, name)
    return Unavailable(
        f"session {name!r} does not answer (it may be restarting): try again, or see `runyard session list`"
    )


def forwarded_query(conn: HTTPConnection, source: str) -> str:
    """The query string as sent, less a runyard token (Jupyter has no use for it, and logs URLs)."""
    query = conn.scope.get("query_string", b"").decode("latin-1")
    if source != "query":
        return query
    return urlencode([(k, v) for k, v in conn.query_params.multi_items() if k != "token"])


def strip_cookie(value: bytes) -> bytes:
    """The Cookie header less ours: Jupyter's own cookies (e.g. _xsrf) go through."""
    kept = [c for c in value.split(b";") if not c.strip().startswith(COOKIE.encode() + b"=")]
    return b";".join(kept).strip()


def _pool(request: Request) -> LoopbackPool:
    """One pool of kept-alive upstream connections per app."""
    pool = getattr(request.app.state, "session_proxy_pool", None)
    if pool is None:
        pool = request.app.state.session_proxy_pool = LoopbackPool()
    return pool


async def bare(request: Request) -> Response:
    """/sessions/{project}/{name}: to Jupyter's root, which sends a browser on to its default page."""
    p = request.path_params
    query = request.url.query
    return RedirectResponse(prefix(p["project"], p["name"]) + (f"?{query}" if query else ""))


async def forward(request: Request) -> Response:
    project, name = request.path_params["project"], request.path_params["name"]
    authorization, source = credential(request)
    await principal(request, authorization, project)
    if source == "query" and request.method in ("GET", "HEAD"):
        return sign_in(request, project, name, authorization)
    check_origin(request)
    up = await upstream(request, project, name)
    gw = gateway(request)
    if b"no_track_activity" not in request.scope["query_string"]:  # as Jupyter counts activity
        gw.touch(up.session_uid)
    headers = [(k, v) for k, v in request.headers.raw if k not in HOP]
    if "cookie" in request.headers:
        cookie = strip_cookie(request.headers.get("cookie", "").encode("latin-1"))
        if cookie:
            headers.append((b"cookie", cookie))
    headers.append((b"authorization", f"token {up.token}".encode()))
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    if has_body and "content-length" not in request.headers:
        headers.append((b"transfer-encoding", b"chunked"))  # streamed on as it comes
    query = forwarded_query(request, source)
    target = request.scope.get("raw_path") or request.url.path.encode()
    target += b"?" + query.encode() if query else b""
    try:
        reply = await _pool(request).request(
            (up.host, up.port), request.method, target, headers, request.stream() if has_body else None
        )
    except OSError as err:
        raise unreachable(gw, project, name) from err
    out = StreamingResponse(reply.body(), status_code=reply.status)
    origin = f"http://{up.host}:{up.port}".encode()
    out.raw_headers = [
        (k, v.removeprefix(origin) if k == b"location" else v) for k, v in reply.headers if k not in HOP
    ]
    return out


def sign_in(request: Request, project: str, name: str, authorization: str | None) -> Response:
    """?token= on a browser's visit: the token becomes a cookie for this session's path only, and the
    browser goes on to the same URL without it (out of its history and the server's logs)."""
    assert authorization is not None
    query = forwarded_query(request, "query")
    out = RedirectResponse(request.url.path + (f"?{query}" if query else ""), status_code=302)
    out.set_cookie(
        COOKIE,
        authorization[7:].strip(),
        path=prefix(project, name),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return out


class SessionSocket:
    """The websocket proxy, a raw ASGI app: after the handshake it pumps ASGI messages to and from the
    upstream websocket with nothing between."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ws = WebSocket(scope, receive, send)
        project, name = ws.path_params["project"], ws.path_params["name"]
        authorization, source = credential(ws)
        who = await authorize_websocket(ws, Access.WRITE, project, authorization)
        if who is None:
            return
        try:
            check_origin(ws)
            up = await upstream(ws, project, name)
            conn = await self.connect(ws, up, source, project, name)
        except RunyardError as err:
            await ws.send_denial_response(errors.response(err, ws.url.path))
            return
        except InvalidStatus as err:  # Jupyter refused it (no such kernel, ...): said as it said it
            answer = err.response
            media = answer.headers.get("Content-Type", "application/json")
            await ws.send_denial_response(
                Response(bytes(answer.body or b""), answer.status_code, media_type=media)
            )
            return
        async with conn:
            await ws.accept(subprotocol=conn.subprotocol)
            await pump(receive, send, conn, gateway(ws), up.session_uid)

    async def connect(
        self, ws: WebSocket, up: Upstream, source: str, project: str, name: str
    ) -> ClientConnection:
        query = forwarded_query(ws, source)
        raw_path = (ws.scope.get("raw_path") or ws.url.path.encode()).decode("latin-1")
        uri = f"ws://{up.host}:{up.port}{raw_path}" + (f"?{query}" if query else "")
        offered = [Subprotocol(s) for s in ws.scope.get("subprotocols", [])]
        try:
            return await connect(
                uri,
                additional_headers={"Authorization": f"token {up.token}"},
                subprotocols=offered or None,
                compression=None,  # loopback: deflate would only cost time
                max_size=None,  # the browser side bounds what it sends; Jupyter's outputs may be large
                ping_interval=None,  # nothing between to keep alive
                proxy=None,
                user_agent_header=None,
            )
        except OSError as err:
            raise unreachable(gateway(ws), project, name) from err


async def pump(
    receive: Receive, send: Send, upstream: ClientConnection, gw: SessionGateway, uid: str
) -> None:
    """Both directions until either side closes; the other is closed with the same code."""

    async def from_client() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.receive":
                gw.touch(uid)
                text = message.get("text")
                await upstream.send(text if text is not None else message["bytes"])
            elif message["type"] == "websocket.disconnect":
                await upstream.close(sendable(message.get("code")))
                return

    async def from_upstream() -> None:
        try:
            async for data in upstream:
                gw.touch(uid)
                if isinstance(data, str):
                    await send({"type": "websocket.send", "text": data})
                else:
                    await send({"type": "websocket.send", "bytes": data})
        except ConnectionClosed:
            pass
        code, reason = sendable(upstream.close_code), upstream.close_reason or ""
        await send({"type": "websocket.close", "code": code, "reason": reason})

    client, relay = asyncio.ensure_future(from_client()), asyncio.ensure_future(from_upstream())
    tasks = (client, relay)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if client.done() and isinstance(client.exception(), ConnectionClosed):
            await relay  # the upstream closed as the browser sent: its close still goes to the browser
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError, RuntimeError):
                await task


def sendable(code: int | None) -> int:
    """A close code as a close frame may carry it: none (1005) is a normal close; gone without one
    (1006), or a TLS failure (1015), an error (1011)."""
    if code is None or code == 1005:
        return 1000
    return 1011 if code in (1004, 1006, 1015) else code


router = APIRouter(
    routes=[
        Route("/sessions/{project}/{name}", bare, methods=["GET", "HEAD"], include_in_schema=False),
        Route("/sessions/{project}/{name}/{path:path}", forward, methods=METHODS, include_in_schema=False),
        WebSocketRoute("/sessions/{project}/{name}/{path:path}", SessionSocket()),
    ]
)
