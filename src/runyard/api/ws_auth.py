"""Authentication for websocket routes, where the HTTP dependencies (Guard) do not apply: the handshake
is refused with the same status and JSON body as an HTTP request would get (401, 403)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket

from runyard.api import errors
from runyard.api.deps import state
from runyard.core.errors import RunyardError
from runyard.services.auth import Access, Principal, authenticate


async def authorize_websocket(
    ws: WebSocket, need: Access, project: str, authorization: str | None
) -> Principal | None:
    """The principal the handshake's credentials (`authorization`: 'Bearer <token>' or None) name, when it
    may `need` the project; else None, the handshake having been refused with a JSON 401 or 403."""
    store = state(ws).store  # type: ignore[arg-type]  # app.state is reached the same way
    try:
        who = await run_in_threadpool(authenticate, store, authorization)
        who.authorize(need, project)
        return who
    except RunyardError as err:
        await ws.send_denial_response(errors.response(err, ws.url.path))
        return None
