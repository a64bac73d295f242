"""LocalRuntime hands a listening socket to a run's process as fd 5 (a replica), sandboxed or not."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
from tests.support import until

from runyard.runtime.base import AttemptState, LaunchSpec
from runyard.runtime.local import LocalRuntime
from runyard.runtime.local.sandbox import probe
from runyard.serving.protocol import LISTEN_FD

# Accepts one connection on fd 5 and answers what it sees: its fds that are that same socket, the
# socket's options, and the peer's message.
SERVE_ONE = """
import json, os, socket, stat
s = socket.socket(fileno=5)
same = [int(n) for n in os.listdir("/proc/self/fd")
        if n.isdigit() and int(n) != 5 and os.path.exists(f"/proc/self/fd/{n}")
        and os.stat(f"/proc/self/fd/{n}").st_ino == os.fstat(5).st_ino]
print("accepting", flush=True)
conn, _ = s.accept()
msg = conn.recv(100).decode()
listening = s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
conn.sendall(json.dumps({"msg": msg, "listening": listening, "copies": same}).encode())
conn.close()
"""


def _modes() -> list:
    sandboxed = probe("auto").available
    return ["off", pytest.param("required", marks=pytest.mark.skipif(not sandboxed, reason="no bubblewrap"))]


@pytest.mark.parametrize("sandbox", _modes())
@pytest.mark.parametrize("cgroups", [True, False])
def test_process_accepts_on_fd_5(tmp_path: Path, sandbox: str, cgroups: bool):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    rt = LocalRuntime(tmp_path / "home", sandbox=sandbox, cgroups=cgroups)
    try:
        spec = LaunchSpec(
            run_uid="r1", project="p", name="n", attempt=1, argv=[sys.executable, "-c", SERVE_ONE],
            env={}, listen_fd=listener.fileno(),
        )  # fmt: skip
        handle = rt.launch(spec)
        until(
            lambda: (
                any(e.text == "accepting" for e in rt.read_logs(handle).entries)
                or rt.observe(handle).state == AttemptState.EXITED
            ),
            "the process started",
        )
        listener.close()  # the process's copy must keep the socket listening
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"hello")
            reply = json.loads(c.recv(1000))
        assert reply == {"msg": "hello", "listening": 1, "copies": []}, reply
        observed = until(
            lambda: (o := rt.observe(handle)).state == AttemptState.EXITED and o, "the process exited"
        )
        assert observed.exit_code == 0, [e.text for e in rt.read_logs(handle).entries]
        assert observed.sandbox["mechanism"] == ("bubblewrap" if sandbox == "required" else "none")
    finally:
        listener.close()
        rt.close()


def _links(pid: int | str) -> list[str]:
    fds = Path(f"/proc/{pid}/fd")
    return [os.readlink(fd) for fd in fds.iterdir() if fd.exists()]


def test_the_listener_goes_to_that_run_only(tmp_path: Path):
    rt = LocalRuntime(tmp_path / "home", sandbox="off")
    try:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            ours = os.readlink(f"/proc/self/fd/{listener.fileno()}")
            argv = [sys.executable, "-c", "import os; print(os.readlink('/proc/self/fd/5'))"]
            first = rt.launch(LaunchSpec("r0", "p", "n", 1, argv, {}, listen_fd=listener.fileno()))
        until(lambda: rt.observe(first).state == AttemptState.EXITED, "the first process exited")
        assert [e.text for e in rt.read_logs(first).entries if e.stream == "stdout"] == [ours]
        assert rt._launcher is not None and ours not in _links(rt._launcher.pid)  # it closed its copy
        check = f"import os; print(os.path.exists('/proc/self/fd/{LISTEN_FD}'))"
        second = rt.launch(LaunchSpec("r1", "p", "n", 1, [sys.executable, "-c", check], {}))
        until(lambda: rt.observe(second).state == AttemptState.EXITED, "the second process exited")
        assert [e.text for e in rt.read_logs(second).entries if e.stream == "stdout"] == ["False"]
    finally:
        rt.close()
