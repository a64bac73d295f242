"""Running a command inside a running local attempt (LocalRuntime.enter), as `kubectl exec` does.

A sandboxed attempt is entered with util-linux's nsenter into the namespaces of the sandbox's init
(state.json's sandbox_pid: bubblewrap's child, pid 1 of the run's PID namespace), then setpriv drops what
the sandbox dropped: a root server would otherwise hand the shell every capability (it could unmount what
hides the server's data) and no_new_privs keeps setuid binaries from giving any back.

Where bubblewrap made a user namespace (a server that is not root), it made two: an outer one that owns the
mount, PID, IPC and UTS namespaces, and an inner one the command runs in. nsenter 2.38 joins one user
namespace only, and neither works alone: the inner one grants no right over namespaces its parent owns, and
without a user namespace an unprivileged server may not join a mount namespace. So the outer one (found
with the NS_GET_USERNS ioctl, opened by nsenter through the server's fd) is joined with the others, then a
second nsenter joins the inner one, where the run's command is; the user id is kept
(--preserve-credentials) and exec leaves a non-root process no capabilities. The bounding set cannot be
emptied there (that takes CAP_SETPCAP), which no_new_privs makes moot.

The command's environment is the run's process's (bubblewrap's, or the command's when not sandboxed), read
from /proc, and so is its work directory: both are what the shim gave it. It joins the run's cgroups, so
the run's limits hold for it too (Entry.adopt).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
from pathlib import Path
from typing import Any

from runyard.core.errors import Conflict, Unavailable
from runyard.runtime.base import Entry
from runyard.runtime.local import limits
from runyard.runtime.local.shim import create_time

NS_GET_USERNS = 0xB701  # _IO(0xb7, 0x1): an fd for the user namespace that owns a namespace
_CREATE_TIME_SLACK = 1.0  # see runtime.py
DEFAULT_TERM = "xterm-256color"
NOT_RUNNING = "the run's process is not running: a command can be run in it only while it is"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _alive(pid: int | None, ctime: float | None) -> bool:
    """Whether `pid` is still the process created at `ctime` (and not a zombie)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return False
    except (OSError, IndexError):
        return False
    now = create_time(pid)
    return now is not None and (ctime is None or abs(now - ctime) <= _CREATE_TIME_SLACK)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise Unavailable(f"{name} is not installed on the server's host (it is part of util-linux)")
    return path


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
    return {k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape") for k, v in pairs}


def entry(adir: Path, argv: list[str]) -> Entry:
    """How to run `argv` in the attempt whose directory is `adir` (see the module docstring)."""
    state = _read_json(adir / "state.json")
    child: int = state.get("child_pid") or 0
    shim = _alive(state.get("shim_pid"), state.get("shim_create_time"))
    if (adir / "exit.json").exists() or not shim or not _alive(child, state.get("child_create_time")):
        raise Conflict(NOT_RUNNING)
    try:
        env = _environ(child)
        cwd = os.readlink(f"/proc/{child}/cwd")
    except OSError as e:
        raise Unavailable(f"cannot read the run's environment from /proc: {e}") from e
    env["TERM"] = DEFAULT_TERM  # the server's own, if it has one, is not the client's
    cgroups = list(state.get("cgroups") or [])
    adopt = functools.partial(limits.join, cgroups) if cgroups else None
    if (state.get("sandbox") or {}).get("mechanism") != "bubblewrap":
        return Entry(list(argv), env, cwd, adopt=adopt)
    init: int = state.get("sandbox_pid") or 0
    if not _alive(init, state.get("sandbox_create_time")):
        raise Conflict(NOT_RUNNING)
    made = _sandboxed(init, cwd, list(argv), env)
    made.adopt = adopt
    return made


def _sandboxed(init: int, cwd: str, argv: list[str], env: dict[str, str]) -> Entry:
    nsenter, setpriv = _tool("nsenter"), _tool("setpriv")
    root = os.geteuid() == 0
    drop = ["--bounding-set=-all", "--inh-caps=-all"] if root else ["--inh-caps=-all"]
    tail = [setpriv, *drop, "--no-new-privs", "--", *argv]
    namespaces = ["--mount", "--uts", "--ipc", "--pid", f"--wd={cwd}"]
    try:
        mnt = os.open(f"/proc/{init}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise Conflict(f"cannot open the run's namespaces: {e}") from e
    try:
        owner = fcntl.ioctl(mnt, NS_GET_USERNS)  # a new fd (close-on-exec)
    except OSError as e:
        raise Unavailable(f"cannot find the user namespace of the run's sandbox: {e}") from e
    finally:
        os.close(mnt)
    if _same(owner, "/proc/self/ns/user"):  # no user namespace: bubblewrap ran as root, or setuid
        os.close(owner)
        if not root:
            raise Unavailable("a sandbox made by a setuid bubblewrap can be entered by a root server only")
        return Entry(tail, env, cwd, wrapper=[nsenter, f"--target={init}", *namespaces, "--"])
    inner: list[str] = []
    if not _same(owner, f"/proc/{init}/ns/user"):  # bubblewrap's nested one: joined from inside
        inner = [nsenter, "--user=/proc/1/ns/user", "--preserve-credentials", "--"]
    # nsenter opens the outer namespace through this process's fd, which stays open here while it starts:
    # nothing of the user's inherits it (it would be a way back out of the inner namespace)
    outer = [nsenter, f"--user=/proc/{os.getpid()}/fd/{owner}", "--preserve-credentials", f"--target={init}"]
    return Entry(tail, env, cwd, wrapper=[*outer, *namespaces, "--", *inner], fds=(owner,))


def _same(fd: int, path: str) -> bool:
    """Whether the namespace fd `fd` is the namespace at `path`."""
    mine, theirs = os.fstat(fd), None
    with contextlib.suppress(OSError):
        theirs = os.stat(path)
    return theirs is not None and (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)
