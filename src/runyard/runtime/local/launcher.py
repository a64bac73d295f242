"""The launcher ("zygote"): a long-lived helper that forks one shim per run, so that starting a run costs a
fork instead of a fresh Python interpreter.

Run as a script by LocalRuntime: `python -I -S launcher.py`, hence standard library only (and the sibling
modules shim.py and limits.py, which are standard library only too). Protocol: one JSON request per line
on stdin, one JSON reply per line on stdout: {"shim_pid": N, "shim_create_time": T}, {"claimed": true}
(the attempt was already started by an earlier request) or {"error": "..."}. Exits when stdin closes.

File descriptors (a model's listening socket) cannot travel in JSON: they come over the AF_UNIX socket
whose number is the script's argument, sent (SCM_RIGHTS) just before a request that has "listen_fd" (the
number the run's process gets it as).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import shim  # noqa: E402  (a sibling module, found through the path set just above)


def _reap(*_: object) -> None:
    """Reap exited shims so they do not linger as zombies."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


FD_FLOOR = 10  # a received fd is moved at or above this: never one the shim maps fds 0-5 onto or from


def receive_fd(fds: socket.socket) -> int:
    """The fd sent with the current request, moved to FD_FLOOR or above and made close-on-exec (the
    shim hands it on explicitly: no other process may inherit it)."""
    _msg, received, _flags, _addr = socket.recv_fds(fds, 1, 1)
    if not received:
        raise ValueError("the request has listen_fd but no file descriptor came with it")
    for extra in received[1:]:
        os.close(extra)
    moved = fcntl.fcntl(received[0], fcntl.F_DUPFD_CLOEXEC, FD_FLOOR)
    os.close(received[0])
    return moved


def spawn(req: dict, fds: socket.socket | None = None, listen: int | None = None) -> dict:
    """Fork a shim for `req` and wait until it has claimed the attempt and written state.json."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            if fds is not None:  # the launcher's, not the shim's: it outlives the launcher
                fds.close()
            shim.main(req, ready_w, listen)
        finally:
            os._exit(1)
    os.close(ready_w)
    if listen is not None:  # the shim has it now
        os.close(listen)
    with os.fdopen(ready_r, "rb") as f:
        data = f.read()
    if not data:
        return {"error": "the run's supervisor process died while starting"}
    return json.loads(data)


def main() -> None:
    shim.create_time(os.getpid())  # reads the boot time once here, not in every shim
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is not ours; stdin EOF is
    fds = None
    if len(sys.argv) > 1:
        fds = socket.socket(fileno=int(sys.argv[1]))
        os.set_inheritable(fds.fileno(), False)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    for line in iter(stdin.readline, b""):
        try:
            req = json.loads(line)
            listen = None
            if req.get("listen_fd") is not None:
                if fds is None:
                    raise ValueError("a listen_fd request, but this launcher has no fd socket")
                listen = receive_fd(fds)
            reply = spawn(req, fds, listen)
        except Exception as e:  # keep serving: one bad request must not take the launcher down
            reply = {"error": f"{type(e).__name__}: {e}"}
        stdout.write(json.dumps(reply).encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    main()
