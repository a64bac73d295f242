"""`runyard attach` as users run it: in a real terminal (a PTY this test holds the other side of), and
with stdin a pipe."""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import struct
import subprocess
import sys
import termios
import time

from tests.attach.test_attach_ws import host_processes
from tests.support import experiment, until, wait_phase

SETSID = shutil.which("setsid") or "setsid"


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Screen:
    """The terminal the CLI runs in: `setsid --ctty` makes it the CLI's controlling terminal, so resizing
    it signals the CLI (SIGWINCH) as a terminal emulator's window would."""

    def __init__(self, srv, args: list[str], rows: int = 33, cols: int = 101) -> None:
        self.master, slave = os.openpty()
        set_size(slave, rows, cols)
        cli = [sys.executable, "-m", "runyard", "attach", *args]
        self.proc = subprocess.Popen(
            [SETSID, "--ctty", *cli], stdin=slave, stdout=slave, stderr=slave, env=srv.env()
        )
        os.close(slave)
        self.output = b""

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def read(self, timeout: float) -> bool:
        """Read what is there within `timeout`; False once the other side is closed."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the CLI is gone
            return False
        self.output += data
        return bool(data)

    def expect(self, needle: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while needle.encode() not in self.output:
            assert time.monotonic() < deadline, f"{needle!r} not seen in {self.output[-2000:]!r}"
            assert self.read(0.2), f"the CLI ended before {needle!r}: {self.output[-2000:]!r}"
        before, _, self.output = self.output.partition(needle.encode())
        return before.decode(errors="replace")

    def exit_code(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.read(0.2):  # drain, so the CLI never blocks writing
            assert time.monotonic() < deadline, f"the CLI did not exit: {self.output[-2000:]!r}"
        code = self.proc.wait(timeout=timeout)
        os.close(self.master)
        return code


def test_attach_in_a_terminal_runs_a_command_and_returns_its_exit_code(srv, busy):
    screen = Screen(srv, [busy, "--command=sh", "--command=-c", "--command=stty size; exit 7"])
    screen.expect("33 101")  # the local terminal's size, from the start
    assert screen.exit_code() == 7


def test_an_interactive_shell_gets_ctrl_c_and_resizes_from_the_local_terminal(srv, busy):
    screen = Screen(srv, [busy])
    screen.type("sleep 4323\r")
    until(lambda: host_processes(b"sleep\x004323\x00"), "the sleep started through the CLI")
    screen.type("\x03")  # raw mode: a byte for the remote terminal, not a SIGINT for the CLI
    until(lambda: not host_processes(b"sleep\x004323\x00"), "Ctrl-C ended the remote sleep")
    assert screen.proc.poll() is None
    set_size(screen.master, 40, 120)  # the kernel sends the CLI SIGWINCH
    tries = iter(range(1000))

    def resized() -> bool:
        n = next(tries)
        screen.type(f"stty size; echo size-{n}-$((n + 1))\r".replace("$((n + 1))", f"$(({n} + 1))"))
        return "40 120" in screen.expect(f"size-{n}-{n + 1}")

    until(resized, "the remote terminal took the local one's new size")
    screen.type("exit 5\r")
    assert screen.exit_code() == 5


def test_attach_with_a_pipe_sends_it_then_ends_the_input(srv, busy):
    """A shell without line editing (sh), the local stdin a pipe: what a shell with rc files reads
    before it starts its line editor (typed ahead) is up to those files."""
    cli = [sys.executable, "-m", "runyard", "attach", busy, "--command=sh"]
    done = subprocess.run(cli, input=b"echo $((5 * 5))\nexit 4\n", capture_output=True, env=srv.env())
    assert done.returncode == 4, done
    assert b"25" in done.stdout
    # no exit in the script: the end of the pipe is a Ctrl-D, which ends the shell
    done = subprocess.run(cli, input=b"echo $((6 * 6))\n", capture_output=True, env=srv.env())
    assert done.returncode == 0 and b"36" in done.stdout, done


def test_attach_to_a_finished_run_says_why(srv):
    api = srv.api()
    api.put("/experiments/over", json=experiment("over", "true"))
    wait_phase(api, "over", {"Succeeded"})
    cli = [sys.executable, "-m", "runyard", "attach", "over"]
    done = subprocess.run(cli, capture_output=True, env=srv.env(), timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and b"Succeeded" in done.stderr, done
