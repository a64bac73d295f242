"""A command on a new pseudo-terminal, pumped over a websocket: `runyard attach`, like `kubectl exec -it`.

The protocol (cli/attach.py is the client): client -> server binary frames are keystrokes, text frames JSON
`{"type": "resize", "cols": C, "rows": R}`; server -> client binary frames are output, and once the command
has exited one text frame `{"type": "exit", "code": N}` (negative: killed by that signal), then close 1000.

The command leads a session of its own with the PTY as its controlling terminal, made by `setsid --ctty`
inside the attempt (between the Entry's wrapper and its argv): so Ctrl-C reaches the command's foreground
process group and never the wrapper (nsenter), whose exit status is the command's. Nothing is left behind:
when the command exits, or the client goes, what is still in that session gets SIGHUP, then SIGKILL after
GRACE seconds (a process left over in an unsandboxed run would otherwise outlive the run).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import termios
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from runyard.core.errors import Unavailable
from runyard.runtime.base import Entry

log = logging.getLogger(__name__)

GRACE = 2.0  # seconds between the SIGHUP and the SIGKILL of what is left in the command's session
CHUNK = 64 * 1024
TIOCGSID = getattr(termios, "TIOCGSID", 0x5429)  # the session a terminal belongs to (Linux's number)
# Holds the command, stdin a pipe, until the server has moved it into the run's cgroups (a line on the pipe),
# then execs the rest with stdin the terminal (as stdout is).
HOLD = ["/bin/sh", "-c", 'read _ || exit 126; exec "$@" 0<&1', "sh"]
MAX_SIZE = 10_000  # columns or rows: anything larger is a client's mistake


def set_size(fd: int, cols: int, rows: int) -> None:
    """Set a terminal's size (the kernel sends SIGWINCH to its foreground process group)."""
    cols, rows = max(1, min(int(cols), MAX_SIZE)), max(1, min(int(rows), MAX_SIZE))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """A started command and the PTY's master side."""

    def __init__(self, entry: Entry, cols: int, rows: int) -> None:
        """Start the command; Unavailable when it cannot be. Takes over the entry's fds."""
        self.fds = entry.fds  # named by the command's argv: open until it has ended
        self.sid: int | None = None  # the command's session, once seen (see session_id)
        self.master = -1
        self.pidfd: int | None = None
        try:
            self.proc = self._start(entry, cols, rows)
        except OSError as e:
            self.close()
            raise Unavailable(f"could not start {entry.argv[0]!r} in the run: {e}") from e
        except BaseException:
            self.close()
            raise
        with contextlib.suppress(OSError, AttributeError):  # no pidfd on this host: exited() polls
            self.pidfd = os.pidfd_open(self.proc.pid)

    def _start(self, entry: Entry, cols: int, rows: int) -> subprocess.Popen[bytes]:
        setsid = shutil.which("setsid")
        if setsid is None:
            raise Unavailable("setsid is not installed on the server's host (it is part of util-linux)")
        self.master, slave = os.openpty()
        hold_r, hold_w = os.pipe() if entry.adopt else (slave, -1)
        try:
            set_size(self.master, cols, rows)
            os.set_blocking(self.master, False)
            # A wrapper (nsenter) leads a process group of its own, so that setsid, run by its child, is no
            # group leader: setsid forks (and loses the exit status) when it is one.
            proc = subprocess.Popen(
                [*entry.wrapper, *(HOLD if entry.adopt else []), setsid, "--ctty", *entry.argv],
                stdin=hold_r,
                stdout=slave,
                stderr=slave,
                cwd=entry.cwd,
                env=entry.env,
                process_group=0 if entry.wrapper else None,
            )
        finally:
            for fd in {slave, hold_r}:
                os.close(fd)
        if entry.adopt:
            try:
                _adopt(entry.adopt, proc.pid, grouped=bool(entry.wrapper))
                os.write(hold_w, b"\n")
            except OSError:
                proc.kill()
                proc.wait()
                raise
            finally:
                os.close(hold_w)
        return proc

    def session_id(self) -> int | None:
        """The session the PTY is the controlling terminal of (the command's), remembered: once its leader
        has exited the terminal has none, and the processes left in it are still to be ended."""
        with contextlib.suppress(OSError):
            buf = fcntl.ioctl(self.master, TIOCGSID, b"\0\0\0\0")
            self.sid = struct.unpack("i", buf)[0]
        return self.sid

    async def exited(self) -> int:
        """Wait for the command to exit; its exit code (negative: killed by that signal)."""
        loop = asyncio.get_running_loop()
        while (code := self.proc.poll()) is None:
            if self.pidfd is None:
                await asyncio.sleep(0.05)
                continue
            ready = loop.create_future()
            loop.add_reader(self.pidfd, _resolve, ready)
            try:
                await ready
            finally:
                loop.remove_reader(self.pidfd)
        return code

    async def read(self) -> bytes:
        """The next output; b"" once every process holding the terminal has closed it."""
        while True:
            try:
                data = os.read(self.master, CHUNK)
                self.session_id()
                return data
            except BlockingIOError:
                await _ready(self.master, write=False)
            except OSError:  # EIO: the other side is closed
                return b""

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view) :]
            except BlockingIOError:
                await _ready(self.master, write=True)
            except OSError:  # the command is gone: its input goes nowhere
                return

    def signal_session(self, sig: int) -> None:
        """Send `sig` to every process in the command's session, and to the wrapper."""
        sid = self.session_id()
        targets = set(_session_members(sid)) if sid else set()
        if not targets:
            self.sid = None  # an empty session's id may be any new process's soon
        if self.proc.poll() is None:
            targets.add(self.proc.pid)
        for pid in targets:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)

    async def hang_up(self, until: asyncio.Future[Any]) -> None:
        """SIGHUP what is in the command's session; SIGKILL it if `until` is not done GRACE seconds later."""
        self.signal_session(signal.SIGHUP)
        done, _ = await asyncio.wait({until}, timeout=GRACE)
        if not done:
            self.signal_session(signal.SIGKILL)
            await asyncio.wait({until}, timeout=GRACE)

    async def end(self) -> None:
        """End what is left of the command's session; close the terminal and reap the command."""
        gone = asyncio.ensure_future(self._session_gone())
        try:
            await self.hang_up(gone)
        finally:
            gone.cancel()
            self.close()

    async def _session_gone(self) -> None:
        await self.exited()
        while self.sid and _session_members(self.sid):
            await asyncio.sleep(0.05)

    def close(self) -> None:
        _close(self.fds)
        self.fds = ()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


def _adopt(adopt: Callable[[list[int]], None], pid: int, grouped: bool) -> None:
    """Move the held command into the attempt's resource groups: the started process first (what it forks
    from then on follows it), then what it forked before (its process group, when it leads one)."""
    adopt([pid])
    forked = [member for member in _members(2, pid) if member != pid] if grouped else []
    if forked:  # never an empty list: limits.join() would move the caller, this server
        adopt(forked)


def _close(fds: tuple[int, ...]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _session_members(sid: int) -> list[int]:
    """The live processes of session `sid` (host pids), from /proc."""
    return _members(3, sid)


def _members(field: int, value: int) -> list[int]:
    """The live processes whose /proc stat `field` (after the name; 2: process group, 3: session) is
    `value`."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if len(fields) > field and fields[0] != b"Z" and int(fields[field]) == value:
            members.append(int(name))
    return members


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _ready(fd: int, write: bool) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)
    add(fd, _resolve, ready)
    try:
        await ready
    finally:
        remove(fd)


async def bridge(
    ws: WebSocket,
    entry: Entry,
    cols: int,
    rows: int,
    on_activity: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int | None:
    """Start `entry` on a new PTY of `cols` x `rows`, accept the websocket `ws` (not accepted yet: a
    command that cannot start raises Unavailable before) and pump the two until the command exits (returns
    its exit code) or the client goes (returns None). `on_activity` is called on every message either way
    (a session's idle clock); `stop`, once set, hangs the command up (e.g. its run has ended)."""
    term = await asyncio.to_thread(Terminal, entry, cols, rows)
    touch = on_activity or (lambda: None)
    tasks: list[asyncio.Task[Any]] = []
    try:
        await ws.accept()
        output = asyncio.create_task(_pump_output(ws, term, touch))
        client = asyncio.create_task(_pump_input(ws, term, touch))
        exited = asyncio.create_task(term.exited())
        tasks += [output, client, exited]
        if stop is not None:
            tasks.append(asyncio.create_task(_hang_up_on(stop, term, exited)))
        await asyncio.wait({client, exited}, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():  # the client went first
            return None
        # What the command wrote before it exited is in the terminal still: read to the end, which comes
        # once nothing holds the terminal (anything left in the session is hung up, then killed).
        await term.hang_up(output)
        code = exited.result()
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await ws.send_text(json.dumps({"type": "exit", "code": code}))
            await ws.close(1000)
        return code
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await term.end()


async def _hang_up_on(stop: asyncio.Event, term: Terminal, exited: asyncio.Task[int]) -> None:
    await stop.wait()
    await term.hang_up(exited)


async def _pump_output(ws: WebSocket, term: Terminal, touch: Callable[[], None]) -> None:
    while data := await term.read():
        touch()
        try:
            await ws.send_bytes(data)
        except (WebSocketDisconnect, RuntimeError):
            return  # the client is gone: the input side sees it too


async def _pump_input(ws: WebSocket, term: Terminal, touch: Callable[[], None]) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        touch()
        if message.get("bytes") is not None:
            await term.write(message["bytes"])
        elif message.get("text") is not None:
            _control(term, message["text"])


def _control(term: Terminal, text: str) -> None:
    """A text frame: a resize (anything else is ignored, for clients newer than this server)."""
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and doc.get("type") == "resize":
            set_size(term.master, int(doc["cols"]), int(doc["rows"]))
    except (ValueError, KeyError, TypeError, OSError):
        log.debug("attach: ignored a control message %r", text[:200])
