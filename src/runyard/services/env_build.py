"""One environment's build with uv: lock (hashes pinned), create the virtualenv, install exactly the lock,
then mark it complete and make it read-only.

A directory without the marker file is a build cut short: it is removed before building again. uv runs as
a child process that dies with the thread that started it (and so with the server, even on kill -9), and
writes to the build log, which readers follow by offset while it grows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import uv

from runyard.services.pythons import Interpreter

MARKER = ".runyard-environment.json"
LOCK_FILE = "requirements.lock"
TAIL_LINES = 30
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
PINNED_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:==|@)\s*([^\s;\\]+)")
# Runs uv with PR_SET_PDEATHSIG: a uv left behind by a killed server would go on writing into the
# directory the next server builds in.
_WRAP = (
    "import ctypes, os, signal, sys; ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL);"
    "os.getppid() == int(sys.argv[1]) or os._exit(1); os.execv(sys.argv[2], sys.argv[2:])"
)


class BuildFailed(Exception):
    """uv said no: the message is its own text (ANSI stripped, the last lines)."""

    def __init__(self, message: str, lock: str | None = None):
        super().__init__(message)
        self.lock = lock


class BuildCancelled(Exception):
    """The server is closing: the build stays Building, for the next server to take over."""


@dataclass
class Built:
    lock: str
    packages: list[dict] = field(default_factory=list)
    size_bytes: int = 0


@cache
def uv_binary() -> str:
    return uv.find_uv_bin()


@cache
def uv_version() -> str:
    """ "uv 0.13.9": recorded as each environment's builder."""
    out = subprocess.run([uv_binary(), "--version"], capture_output=True, text=True, check=False).stdout
    return " ".join(out.split()[:2]) or "uv"


def uv_environ() -> dict[str, str]:
    """The server's environment (it carries any index configuration), minus what would steer uv to
    another interpreter or let it download one."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONHOME")}
    env.update(UV_PYTHON_DOWNLOADS="never", NO_COLOR="1", UV_NO_PROGRESS="1")
    return env


class UvBuild:
    """Build one environment into `directory`, logging to `log`. `procs` holds the uv processes running,
    so that close() can kill them; `cancelled` says the server is closing."""

    def __init__(
        self,
        directory: Path,
        log: Path,
        procs: set[subprocess.Popen],
        cancelled: threading.Event,
        on_lock: Callable[[str], None] | None = None,
    ):
        self.dir, self.log, self.procs, self.cancelled = directory, log, procs, cancelled
        self.on_lock = on_lock
        self.work = directory.with_name(f".work-{directory.name}")

    def run(self, python: Interpreter, kind: str, files: dict[str, str]) -> Built:
        remove_tree(self.dir)  # what a build cut short left
        remove_tree(self.work)
        self.work.mkdir(parents=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb", buffering=0) as out:
            try:
                return self._steps(out, python, kind, files)
            finally:
                remove_tree(self.work)

    def _steps(self, out, python: Interpreter, kind: str, files: dict[str, str]) -> Built:
        for name, text in files.items():
            (self.work / name).write_text(text)
        lock_path = self.work / LOCK_FILE
        say(
            out,
            f"resolving dependencies of {', '.join(sorted(files))} with {uv_version()} "
            f"for Python {python.version} ({python.path})",
        )
        if kind == "uv.lock":
            lock_cmd = ["export", "--frozen", "--no-emit-project", "--format", "requirements-txt"]
        else:
            source = "requirements.txt" if kind == "requirements" else "pyproject.toml"
            lock_cmd = ["pip", "compile", "--generate-hashes", source]
        self._uv(out, [*lock_cmd, "--python", python.path, "-o", str(lock_path)], quiet_stdout=True)
        lock = lock_path.read_text()
        if self.on_lock:
            self.on_lock(lock)
        packages = parse_packages(lock)
        say(out, f"creating the virtualenv at {self.dir}")
        self._uv(out, ["venv", "--no-project", "--python", python.path, str(self.dir)], lock=lock)
        say(out, f"installing {len(packages)} package{'s' if len(packages) != 1 else ''}")
        py = str(self.dir / "bin" / "python")
        self._uv(out, ["pip", "sync", "--require-hashes", "--python", py, str(lock_path)], lock=lock)
        size = tree_size(self.dir)
        (self.dir / MARKER).write_text(
            json.dumps({"python": python.as_dict(), "lockDigest": lock_digest(lock), "packages": packages})
        )
        make_read_only(self.dir)
        return Built(lock, packages, size)

    def _uv(self, out, args: list[str], quiet_stdout: bool = False, lock: str | None = None) -> None:
        if self.cancelled.is_set():
            raise BuildCancelled()
        start = out.tell()
        argv = [sys.executable, "-S", "-I", "-c", _WRAP, str(os.getpid()), uv_binary(), *args]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if quiet_stdout else out,
            stderr=out,
            cwd=self.work,
            env=uv_environ(),
            start_new_session=True,
        )
        self.procs.add(proc)
        if self.cancelled.is_set():  # close() may have killed the others just before this one was added
            kill({proc})
        try:
            code = proc.wait()
        finally:
            self.procs.discard(proc)
        if self.cancelled.is_set():
            raise BuildCancelled()
        if code != 0:
            raise BuildFailed(tail(self.log, start) or f"uv {args[0]} exited with code {code}", lock)


def say(out, line: str) -> None:
    out.write((line + "\n").encode())


def tail(log: Path, start: int, lines: int = TAIL_LINES) -> str:
    """What uv wrote from `start`, without ANSI codes, its last lines."""
    with open(log, "rb") as f:
        f.seek(start)
        text = ANSI_RE.sub("", f.read().decode(errors="replace"))
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def parse_packages(lock: str) -> list[dict]:
    """[{name, version}] of the pinned lines of a requirements-style lock."""
    found = []
    for line in lock.splitlines():
        m = PINNED_RE.match(line.strip())
        if m:
            found.append({"name": m.group(1), "version": m.group(2)})
    return found


def lock_digest(lock: str) -> str:
    return "sha256:" + hashlib.sha256(lock.encode()).hexdigest()


def tree_size(root: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def make_read_only(root: Path) -> None:
    """a-w on every file and folder: nothing (a run, a stray pip) changes an environment others share."""
    for folder, dirs, files in os.walk(root):
        for name in files + dirs:
            _chmod(os.path.join(folder, name), lambda m: m & ~0o222)
    _chmod(str(root), lambda m: m & ~0o222)


def remove_tree(root: Path) -> None:
    """Remove an environment's folder, read-only or not (write bits restored on its folders first)."""
    if not root.exists() and not root.is_symlink():
        return
    if root.is_symlink() or not root.is_dir():
        root.unlink()
        return
    _chmod(str(root), lambda m: m | stat.S_IWUSR | stat.S_IXUSR)
    for folder, dirs, _files in os.walk(root):
        for name in dirs:
            _chmod(os.path.join(folder, name), lambda m: m | stat.S_IWUSR | stat.S_IXUSR | stat.S_IRUSR)
    shutil.rmtree(root, ignore_errors=True)


def _chmod(path: str, change: Callable[[int], int]) -> None:
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(path, change(stat.S_IMODE(st.st_mode)))


def kill(procs: set[subprocess.Popen]) -> None:
    for proc in list(procs):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
