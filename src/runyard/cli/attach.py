"""`runyard attach RUN`: a terminal inside a running run, like `kubectl exec -it` (the protocol is the
server's services/pty_bridge.py).

With a terminal, it is put in raw mode (every key, Ctrl-C included, goes to the remote command) and a
resize is passed on; without one (a pipe), what stdin holds is sent, then Ctrl-D at its end, so a script
piped in ends as it would typed. The exit status is the remote command's (128+N when killed by signal N).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import termios
import threading
import tty
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from runyard.cli.context import state
from runyard.core.errors import RunyardError, Unavailable

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

EOT = b"\x04"  # Ctrl-D: the end of a piped stdin, for the remote terminal
LOST_EXIT = 255  # the connection ended without the command's exit status (as ssh reports it)


@click.command(short_help="A terminal inside a running run (like kubectl exec -it).")
@click.argument("run")
@click.option("--command", "-c", "command", multiple=True, help="Run this instead of a shell; repeatable.")
@click.pass_context
def attach(ctx: click.Context, run: str, command: tuple[str, ...]) -> None:
    """An interactive terminal inside RUN, which must be running: its sandbox, work directory and
    environment. `-c python -c -i` runs `python -i` instead of a shell. Exits with the command's status."""
    ctx.exit(attach_run(ctx, run, list(command)))


def attach_run(ctx: click.Context, run: str, command: list[str] | None = None) -> int:
    """Attach to the run `run` of the current project (see attach_to)."""
    project = state(ctx).rest().project
    path = f"/apis/runyard.dev/v1/projects/{project}/runs/{urllib.parse.quote(run, safe='')}/attach"
    return attach_to(ctx, path, command)


def attach_to(ctx: click.Context, websocket_path: str, command: list[str] | None = None) -> int:
    """Connect this terminal (or stdin and stdout) to the attach websocket at `websocket_path` (from the
    server's root; a query may be given) until the remote command exits; its exit status for this process
    (128+N when killed by signal N)."""
    from websockets.exceptions import InvalidHandshake, InvalidStatus
    from websockets.sync.client import connect

    rest = state(ctx).rest()
    cols, rows = _size()
    base, _, query = websocket_path.partition("?")
    params = urllib.parse.parse_qsl(query) + [("cols", str(cols)), ("rows", str(rows))]
    params += [("term", os.environ["TERM"])] if os.environ.get("TERM") else []
    params += [("command", arg) for arg in command or []]
    url = rest.url.replace("http", "ws", 1) + base + "?" + urllib.parse.urlencode(params)
    headers = {"Authorization": f"Bearer {rest.token}"} if rest.token else {}
    try:
        ws = connect(
            url, additional_headers=headers, proxy=None, open_timeout=rest.timeout, max_size=None, legacy=True
        )
    except InvalidStatus as e:
        raise _refusal(e.response.status_code, bytes(e.response.body)) from None
    except (OSError, InvalidHandshake, TimeoutError) as e:
        raise Unavailable(f"cannot reach the server at {rest.url}: {e}") from None
    with ws, _raw(sys.stdin.fileno()):
        code = _pump(ws)
    return LOST_EXIT if code is None else (128 - code if code < 0 else code)


def _refusal(status: int, body: bytes) -> RunyardError:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        return RunyardError.from_dict(json.loads(body)["error"])
    text = body[:200].decode(errors="replace")
    return RunyardError(f"the server refused to attach (HTTP {status}): {text}")


def _size() -> tuple[int, int]:
    for fd in (sys.stdout.fileno(), sys.stdin.fileno()):
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(fd)
            return size.columns, size.lines
    return 80, 24


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    """The terminal in raw mode while attached (restored after); nothing when `fd` is no terminal."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSADRAIN)  # not TCSAFLUSH: keys typed ahead are kept
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _pump(ws: ClientConnection) -> int | None:
    """Output to stdout here, stdin and resizes to the server from a thread; the exit code, or None when
    the connection ended without one."""
    from websockets.exceptions import ConnectionClosed

    wake_r, wake_w = os.pipe()  # SIGWINCH -> a byte here -> the input thread sends the new size
    os.set_blocking(wake_w, False)
    previous = signal.signal(signal.SIGWINCH, lambda *_: _wake(wake_w, b"w"))
    sender = threading.Thread(target=_send_input, args=(ws, wake_r), daemon=True)
    sender.start()
    code = None
    try:
        while True:
            message = ws.recv()
            if isinstance(message, bytes):
                _write(sys.stdout.fileno(), message)
                continue
            with contextlib.suppress(ValueError, TypeError):
                doc = json.loads(message)
                if isinstance(doc, dict) and doc.get("type") == "exit":
                    code = int(doc["code"])
    except ConnectionClosed:
        return code
    finally:
        signal.signal(signal.SIGWINCH, previous)
        _wake(wake_w, b"q")  # the input thread ends
        sender.join(timeout=1)
        for fd in (wake_r, wake_w):
            os.close(fd)


def _wake(fd: int, what: bytes) -> None:
    with contextlib.suppress(BlockingIOError):  # full: the thread has a wake-up to read already
        os.write(fd, what)


def _send_input(ws: ClientConnection, wake: int) -> None:
    from websockets.exceptions import ConnectionClosed

    stdin = sys.stdin.fileno()
    sources = [stdin, wake]
    try:
        while True:
            ready, _, _ = select.select(sources, [], [])
            if wake in ready:
                signals = os.read(wake, 64)
                if b"q" in signals:
                    return
                cols, rows = _size()
                ws.send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))
            if stdin in ready:
                data = os.read(stdin, 65536)
                if not data:  # a pipe's end: Ctrl-D for the remote terminal, then only resizes
                    ws.send(EOT)
                    sources.remove(stdin)
                    continue
                ws.send(data)
    except (ConnectionClosed, OSError):
        return


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
