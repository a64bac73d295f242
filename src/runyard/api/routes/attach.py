"""Attach: a terminal inside a running run, over a websocket (`runyard attach RUN`, like `kubectl exec -it`).
The protocol is services/pty_bridge.py's."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool

from runyard.api import errors
from runyard.api.deps import AppState, state
from runyard.api.ws_auth import authorize_websocket
from runyard.core.errors import Conflict, FieldError, Invalid, RunyardError
from runyard.core.kinds import name_problem
from runyard.core.phases import Phase
from runyard.core.resources import Run
from runyard.runtime.base import AttemptState, Entry, Handle, Runtime
from runyard.services import pty_bridge
from runyard.services.auth import Access
from runyard.services.logs import find_run
from runyard.store import Store

router = APIRouter(tags=["runs"])

# The user's shell, found inside the run (its PATH): bash when it has one, else sh. Not a login shell: the
# system profile would reset PATH and lose the run's environment (its bin directory first).
DEFAULT_COMMAND = ["/bin/sh", "-c", "command -v bash >/dev/null 2>&1 && exec bash; exec sh"]
WATCH_SECONDS = 1.0  # how often an attached run is looked at, to end the terminal when the run ends
TERM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")  # a terminfo name, e.g. xterm-256color


def _size(value: str | None, default: int, name: str) -> int:
    if value is None:
        return default
    try:
        number = int(value)
        if 1 <= number <= pty_bridge.MAX_SIZE:
            return number
    except ValueError:
        pass
    reason = f"a whole number of 1 to {pty_bridge.MAX_SIZE}"
    raise Invalid(f"{name} must be {reason}", [FieldError(name, reason)])


def enter_run(
    store: Store, runtime: Runtime, project: str, name: str, argv: list[str]
) -> tuple[Run, Handle, Entry]:
    """How to run `argv` in the run's current attempt (and the run, its handle); Conflict when it is not
    running."""
    problem = name_problem(name)
    if problem:
        raise Invalid(f"run name {problem}", [FieldError("name", problem)])
    run = find_run(store, project, name)
    if run is None or run.status.phase != Phase.RUNNING or not run.status.attempts:
        phase = run.status.phase.value if run else "not started yet"
        raise Conflict(
            f"run {name} is {phase}: attach works only while it is Running (`runyard ps` shows its phase)"
        )
    handle = run.status.attempts[-1].handle
    if not handle:
        raise Conflict(f"run {name} has no process yet: try again once it is Running")
    return run, handle, runtime.enter(handle, argv)


async def _watch(runtime: Runtime, handle: Handle, ended: asyncio.Event) -> None:
    """Set `ended` once the attempt is no longer running: an unsandboxed run's end does not reach a
    command started in it (a sandboxed one's does, its PID namespace ending)."""
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        observed = await run_in_threadpool(runtime.observe, handle)
        if observed.state != AttemptState.RUNNING:
            ended.set()
            return


def _activity(s: AppState, run: Run) -> Callable[[], None] | None:
    """A session's terminal in use is the session in use: it keeps it from being reclaimed as idle."""
    session = next((o.uid for o in run.metadata.ownerReferences if o.kind == "Session"), None)
    gateway = s.sessions
    if session is None or gateway is None:
        return None
    return lambda: gateway.touch(session)


@router.websocket("/projects/{project}/runs/{name}/attach")
async def attach(ws: WebSocket, project: str, name: str) -> None:
    """Query: cols, rows (the terminal's size), term (its TERM; default the entry's), command (repeated:
    argv; default the user's shell)."""
    if await authorize_websocket(ws, Access.WRITE, project, ws.headers.get("authorization")) is None:
        return
    s = state(ws)  # type: ignore[arg-type]  # app.state is reached the same way
    query = ws.query_params
    try:
        cols = _size(query.get("cols"), 80, "cols")
        rows = _size(query.get("rows"), 24, "rows")
        term = query.get("term")
        if term is not None and not TERM_NAME.fullmatch(term):
            raise Invalid("term must be a terminal type name", [FieldError("term", "e.g. xterm-256color")])
        argv = query.getlist("command") or DEFAULT_COMMAND
        run, handle, entry = await run_in_threadpool(enter_run, s.store, s.runtime, project, name, argv)
        if term:
            entry.env["TERM"] = term
        ended = asyncio.Event()
        watcher = asyncio.create_task(_watch(s.runtime, handle, ended))
        try:
            await pty_bridge.bridge(ws, entry, cols, rows, on_activity=_activity(s, run), stop=ended)
        finally:
            watcher.cancel()
    except RunyardError as err:
        await ws.send_denial_response(errors.response(err, ws.url.path))
