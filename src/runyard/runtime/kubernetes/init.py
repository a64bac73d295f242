"""What a run's pod does before (and around) its command, on the runyard image: `python -m
runyard.runtime.kubernetes.init snapshot|environment|listen ...` (see pods.py).

snapshot     fetch the run's snapshot from the runyard server with the run's token (RUNYARD_TOKEN): the
             manifest, then each blob, checked against its hash, written with its mode.
environment  install an environment from its lock (RUNYARD_ENV_LOCK, hashes pinned) with uv into a cache
             directory named by the lock's hash, once per cache: a file lock serializes the pods of a node
             that need the same one, and a marker says it is complete (a directory without it is an install
             cut short, removed first). It also links the installed runyard into the SDK directory.
listen       bind a TCP port and exec the command with the listening socket as an inherited fd, as the
             local runtime hands a model's replica and a session's Jupyter their socket.
A failure prints one line to stderr and exits 1: the pod's termination message (FallbackToLogsOnError).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from runyard.core.errors import RunyardError
from runyard.rest import Rest
from runyard.runtime.base import FILLED
from runyard.runtime.local.sdk import sdk_dir
from runyard.serving.listeners import BACKLOG

INSTALLED = ".runyard-installed"  # in an environment directory: the install completed
CHUNK = 1 << 20


class InitFailed(Exception):
    """One line for the pod's termination message."""


def fetch_snapshot(rest: Rest, project: str, snapshot: str, dest: Path, keep: bool = False) -> int:
    """Write the snapshot's files under `dest`; returns how many. `keep`: `dest` is kept across attempts,
    filled once (FILLED marks that it was)."""
    if keep and (dest / FILLED).exists():
        return 0
    files = rest.send("GET", f"{rest.base}/projects/{project}/snapshots/{snapshot}", retry=True).json()[
        "files"
    ]
    fetched: dict[str, Path] = {}  # digest -> the first file written with it
    for rel, entry in sorted(files.items()):
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise InitFailed(f"snapshot {snapshot}: refusing the path {rel!r}, outside the work directory")
        target, digest = dest / rel, entry["sha256"]
        if digest in fetched:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fetched[digest], target)
        else:
            rest.download(f"{rest.base}/projects/{project}/blobs/{digest}", target)
            if (got := file_digest(target)) != digest:
                target.unlink()
                raise InitFailed(f"snapshot {snapshot}: {rel} arrived with SHA-256 {got}, expected {digest}")
            fetched[digest] = target
        os.chmod(target, int(entry.get("mode", 0o644)) & 0o777)
    if keep:
        (dest / FILLED).write_text(snapshot)
    return len(files)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def install_environment(directory: Path, lock: str, uv: str | None = None) -> bool:
    """Install `lock` into the virtualenv `directory` unless a complete install is there; True if this call
    installed it. The Python is this one (the image's), so every pod of the image gets the same."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # released when the file closes, or the pod dies
        if (directory / INSTALLED).exists():
            return False
        shutil.rmtree(directory, ignore_errors=True)
        requirements = directory.parent / f".{directory.name}.requirements.txt"
        requirements.write_text(lock)
        uv = uv or _uv_binary()
        _uv([uv, "venv", "--no-project", "--python", sys.executable, str(directory)])
        python = str(directory / "bin" / "python")
        _uv([uv, "pip", "sync", "--require-hashes", "--python", python, str(requirements)])
        (directory / INSTALLED).write_text(hashlib.sha256(lock.encode()).hexdigest())
        requirements.unlink()
    return True


def _uv_binary() -> str:
    import uv

    return uv.find_uv_bin()


def _uv(argv: list[str]) -> None:
    """Run uv, its output to ours (the init container's log); never downloading a Python."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "RUNYARD_ENV_LOCK")}
    env.update(UV_PYTHON_DOWNLOADS="never", NO_COLOR="1", UV_NO_PROGRESS="1")
    code = subprocess.run(argv, stdin=subprocess.DEVNULL, env=env, check=False).returncode
    if code != 0:
        raise InitFailed(f"uv {argv[1]} exited with code {code} (its output is in this container's log)")


def listen(port: int, fd: int, argv: list[str]) -> None:
    """Exec `argv` with a socket listening on `port` (every address, IPv6 and IPv4 where possible) as fd
    `fd`. Does not return."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address: tuple[str, int] = ("::", port)
    except OSError:  # no IPv6 in this pod
        sock, address = socket.socket(socket.AF_INET, socket.SOCK_STREAM), ("0.0.0.0", port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(BACKLOG)
    if sock.fileno() != fd:
        os.dup2(sock.fileno(), fd, inheritable=True)
    else:
        os.set_inheritable(fd, True)
    os.execvp(argv[0], argv)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runyard.runtime.kubernetes.init")
    steps = parser.add_subparsers(dest="step", required=True)
    snap = steps.add_parser("snapshot", help="fetch a snapshot into a directory")
    snap.add_argument("--server", required=True)
    snap.add_argument("--project", required=True)
    snap.add_argument("--snapshot", required=True)
    snap.add_argument("--dest", required=True, type=Path)
    snap.add_argument("--keep", action="store_true", help="a kept directory: fill it once")
    env = steps.add_parser("environment", help="install RUNYARD_ENV_LOCK into a cached virtualenv")
    env.add_argument("--dir", required=True, type=Path)
    env.add_argument("--sdk-home", type=Path, help="link the installed runyard into SDK_HOME/sdk")
    lis = steps.add_parser("listen", help="exec a command with a listening socket")
    lis.add_argument("--port", required=True, type=int)
    lis.add_argument("--fd", type=int, default=5)
    lis.add_argument("argv", nargs=argparse.REMAINDER)
    return parser


def main(args: Sequence[str] | None = None) -> int:
    opts = _parser().parse_args(args)
    try:
        if opts.step == "snapshot":
            with contextlib.closing(Rest(opts.server, project=opts.project)) as rest:
                count = fetch_snapshot(rest, opts.project, opts.snapshot, opts.dest, opts.keep)
            print(f"snapshot {opts.snapshot}: {count} files in {opts.dest}")
        elif opts.step == "environment":
            lock = os.environ.get("RUNYARD_ENV_LOCK")
            if lock is None:
                raise InitFailed("RUNYARD_ENV_LOCK is not set")
            done = install_environment(opts.dir, lock)
            print(f"environment {opts.dir}: {'installed' if done else 'cached'}")
            if opts.sdk_home:
                sdk_dir(opts.sdk_home)
        else:
            argv = opts.argv[1:] if opts.argv[:1] == ["--"] else opts.argv
            if not argv:
                raise InitFailed("listen: no command")
            listen(opts.port, opts.fd, argv)
    except (InitFailed, RunyardError, OSError) as exc:
        print(f"runyard init {opts.step}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
