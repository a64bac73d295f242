"""The launcher ("zygote"): a long-lived helper that forks one shim per run, so that starting a run costs a
fork instead of a fresh Python interpreter.

Run as a script by LocalRuntime: `python -I -S launcher.py`, hence standard library only (and the sibling
modules shim.py and limits.py, which are standard library only too). Protocol: one JSON request per line
on stdin, one JSON reply per line on stdout: {"shim_pid": N, "shim_create_time": T}, {"claimed": true}
(the attempt was already started by an earlier request) or {"error": "..."}. Exits when stdin closes.
"""

from __future__ import annotations

import json
import os
import signal
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


def spawn(req: dict) -> dict:
    """Fork a shim for `req` and wait until it has claimed the attempt and written state.json."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            shim.main(req, ready_w)
        finally:
            os._exit(1)
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as f:
        data = f.read()
    if not data:
        return {"error": "the run's supervisor process died while starting"}
    return json.loads(data)


def main() -> None:
    shim.create_time(os.getpid())  # reads the boot time once here, not in every shim
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is not ours; stdin EOF is
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    for line in iter(stdin.readline, b""):
        try:
            reply = spawn(json.loads(line))
        except Exception as e:  # keep serving: one bad request must not take the launcher down
            reply = {"error": f"{type(e).__name__}: {e}"}
        stdout.write(json.dumps(reply).encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    main()
