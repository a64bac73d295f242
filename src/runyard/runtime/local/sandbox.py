"""The bubblewrap sandbox every local run starts in, where the host allows.

Inside, a run sees the host's file system read-only, its own /dev, /proc (its own PID namespace: no host
process is visible or reachable; the kernel's settings read-only), IPC and host name, no capabilities, a
private /tmp, /var/tmp and /dev/shm, and none of the server's state: the data directory (tokens, database,
blobs, other runs), the private paths the server names (a database or an artifact folder kept elsewhere)
and the user's ~/.runyard and credentials (~/.ssh, cloud logins: CREDENTIALS) are hidden, and ~/.cache
is a private tmpfs; then its own work directory (read-write), the SDK and its environment
(read-only) are bound back at the same paths. The network is shared: runs reach the API and package
indexes.

The argv is built here, in the server; the shim only executes it. bubblewrap reports a command killed by
signal N as exit status 128+N (its --json-status-fd says the same), so the shim reads a status above 128 as
that signal (see shim.py): a command that exits 129..192 by itself is reported as killed by a signal.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from runyard.runtime.local.sdk import PACKAGE

BUBBLEWRAP = "bubblewrap"
NOT_INSTALLED = "bubblewrap is not installed (apt-get install bubblewrap)"
NO_USERNS = "user namespaces are not available to this user"
OFF = "sandbox is off (RUNYARD_RUNTIME_SANDBOX=off)"
# Not --die-with-parent: bubblewrap's own process exits as soon as the command does, and with that flag its
# death kills the sandbox's init, hence every process left in it, before a stop's grace period is over (a
# shell line's /bin/sh dies of the SIGTERM at once, the command it started still cleans up). The shim
# SIGKILLs the whole process group when the run is over, which takes the sandbox down, as without one.
NAMESPACES = ["--unshare-pid", "--unshare-ipc", "--unshare-uts"]
# bubblewrap started by root keeps every capability for the command (which could then remount / read-write)
# unless told; without them, uid 0 can still write what root owns that is writable: the kernel's settings
# under /proc/sys (bubblewrap does not cover them here) and /proc/sysrq-trigger, hence read-only binds.
ROOT_FLAGS = ["--cap-drop", "ALL"]
PROC_COVERS = [
    "--ro-bind",
    "/proc/sys",
    "/proc/sys",
    "--ro-bind-try",
    "/proc/sysrq-trigger",
    "/proc/sysrq-trigger",
]
# The server user's credentials, hidden like the server's state: a run must not borrow its keys or logins.
CREDENTIALS = [
    "~/.runyard",
    "~/.ssh",
    "~/.gnupg",
    "~/.aws",
    "~/.azure",
    "~/.config/gcloud",
    "~/.kube",
    "~/.docker",
    "~/.netrc",
    "~/.pgpass",
    "~/.git-credentials",
    "~/.pypirc",
]
# Caches tools write without asking (pip, matplotlib, huggingface): a private, writable tmpfs over the
# server user's, where it exists (a mount point cannot be made in the read-only view).
CACHES = ["~/.cache"]
# Devices a CUDA program needs besides its own /dev/nvidia<i>.
NVIDIA_SHARED = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]


@dataclass
class Sandbox:
    """What the host allows: `record` goes into every run's status (mechanism, version or reason)."""

    record: dict[str, str]
    bwrap: str | None = None  # absolute path, when runs are sandboxed
    prefix: list[str] = field(default_factory=list)  # the namespace flags the probe proved to work

    @property
    def available(self) -> bool:
        return self.bwrap is not None


def probe(mode: str, bwrap: str = "bwrap") -> Sandbox:
    """Find out once whether runs can be sandboxed: run `true` in a sandbox made like a run's."""
    if mode == "off":
        return Sandbox({"mechanism": "none", "reason": OFF})
    path = shutil.which(bwrap)
    if path is None:
        return Sandbox({"mechanism": "none", "reason": NOT_INSTALLED})
    flags = list(NAMESPACES)
    if os.geteuid() == 0:
        flags += ROOT_FLAGS
    elif not os.stat(path).st_mode & 0o4000:  # not setuid: it needs a user namespace
        flags.insert(0, "--unshare-user")
    argv = [path, *_base(flags), "--", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return Sandbox({"mechanism": "none", "reason": f"{NO_USERNS} ({e})"})
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        return Sandbox({"mechanism": "none", "reason": f"{NO_USERNS} ({detail[0]})"})
    record = {"mechanism": BUBBLEWRAP, "version": version.split()[-1] if version.split() else "unknown"}
    return Sandbox(record, path, flags)


def _base(flags: list[str]) -> list[str]:
    return ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *PROC_COVERS, *flags]


def _hidden(path: str, hidden: list[str]) -> bool:
    return any(path == h or path.startswith(h.rstrip("/") + "/") for h in hidden)


def _hide(paths: list[str]) -> list[str]:
    """Flags that hide each existing path: an empty tmpfs over a directory, /dev/null over a file (and a
    SQLite file's -wal/-shm/-journal siblings). Paths inside one already hidden are skipped."""
    args: list[str] = []
    done: list[str] = []
    for path in sorted(set(paths), key=len):
        if _hidden(path, done):
            continue
        if os.path.isdir(path):
            args += ["--tmpfs", path]
            done.append(path)
            continue
        for name in (path, *(path + s for s in ("-wal", "-shm", "-journal"))):
            if os.path.exists(name):
                args += ["--ro-bind", "/dev/null", name]
        done.append(path)
    return args


def _installs(environment: str | None) -> list[str]:
    """Where the server's Python and runyard are installed, and the interpreter an environment was made
    from: a run imports the SDK from the package and may start these interpreters. A checkout or a
    virtualenv under /tmp would vanish under the run's private /tmp; these are bound back read-only."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(PACKAGE)}
    try:
        with open(os.path.join(environment or "", "pyvenv.cfg")) as f:
            for line in f:
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    paths.add(os.path.dirname(value.strip()))  # home is the interpreter's bin directory
    except OSError:
        pass
    private = ["/tmp", "/var/tmp"]
    return sorted(os.path.realpath(p) for p in paths if _hidden(os.path.realpath(p), private))


def wrap(
    sandbox: Sandbox,
    command: list[str],
    *,
    home: Path,
    work: str,
    sdk: Path,
    private: list[str],
    environment: str | None = None,
    gpus: list[int] | None = None,
) -> list[str]:
    """The command wrapped in the sandbox (see the module docstring)."""
    assert sandbox.bwrap is not None
    secret = [str(home), *private, *(os.path.expanduser(p) for p in CREDENTIALS)]
    args = [sandbox.bwrap, *_base(sandbox.prefix)]
    args += ["--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--tmpfs", "/dev/shm"]
    args += _hide([p for p in secret if not _hidden(p, ["/tmp", "/var/tmp"])])
    args += [a for p in map(os.path.expanduser, CACHES) if os.path.isdir(p) for a in ("--tmpfs", p)]
    for path in _installs(environment):
        args += ["--ro-bind", path, path]
    args += ["--bind", work, work, "--ro-bind", str(sdk), str(sdk)]
    if environment:
        args += ["--ro-bind", environment, environment]
    for index in gpus or []:
        args += ["--dev-bind-try", f"/dev/nvidia{int(index)}", f"/dev/nvidia{int(index)}"]
    if gpus:
        for dev in [*NVIDIA_SHARED, *sorted(glob.glob("/dev/nvidia-caps/*"))]:
            args += ["--dev-bind-try", dev, dev]
    # --new-session: the command and all it starts are one process group without bubblewrap's process,
    # which a stop signals in one go (see the shim's _term_sandboxed); and no terminal to inject into.
    return [*args, "--new-session", "--chdir", work, "--", *command]
