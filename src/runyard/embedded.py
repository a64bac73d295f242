"""The server nobody has to start: find, start or stop the embedded server that keeps its state in a home dir.

`H/server.json` ({"url", "pid"}) is written by the server once it listens; `H/admin-token` at its first start.
Starting is serialised by an exclusive lock on `H/server.lock`, so two commands never start two servers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from runyard.core.errors import RunyardError, Unavailable
from runyard.home import default_home

if TYPE_CHECKING:
    import subprocess

START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def ensure_server(home: Path) -> tuple[str, str]:
    """Return (url, admin token) of the embedded server for `home`, starting it if it is not running."""
    home = Path(home).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(home):
        url = running_url(home)
        if url is None:
            url = _start(home)
        return url, _token(home)


def stop_server(home: Path) -> int | None:
    """Stop the embedded server for `home` (SIGTERM, then wait); returns its pid, or None if none ran."""
    home = Path(home).expanduser().resolve()
    if not home.is_dir():
        return None
    with _locked(home):
        info = _read_info(home)
        if info is None or not _is_our_server(info["pid"]):
            (home / "server.json").unlink(missing_ok=True)
            return None
        _terminate(info["pid"])
        (home / "server.json").unlink(missing_ok=True)
        return info["pid"]


def running_url(home: Path) -> str | None:
    """The URL of a live, healthy server for `home`, or None."""
    info = _read_info(home)
    if info is None or not _alive(info["pid"]) or not _healthy(info["url"]):
        return None
    return info["url"]


def resolve_connection(
    home: Path | str | None = None,
    url: str | None = None,
    token: str | None = None,
    project: str | None = None,
) -> tuple[str, str | None, str]:
    """(url, token, project) for the CLI: flags, then RUNYARD_API_URL/TOKEN/PROJECT, then the embedded server.

    The embedded server lives in `home` (the --home flag), else RUNYARD_HOME, else ~/.runyard; it is started
    on demand.
    """
    project = project or os.environ.get("RUNYARD_PROJECT") or "default"
    url = url or os.environ.get("RUNYARD_API_URL")
    token = token or os.environ.get("RUNYARD_TOKEN")
    if url:
        return url, token, project
    embedded_url, admin_token = ensure_server(Path(home) if home else default_home())
    return embedded_url, token or admin_token, project


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    with (home / "server.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _start(home: Path) -> str:
    (home / "server.json").unlink(missing_ok=True)
    process = _spawn(home)
    if sys.stderr.isatty():
        from rich.console import Console

        with Console(stderr=True).status("Starting the runyard server…"):
            return _wait_until_ready(home, process)
    return _wait_until_ready(home, process)


def _spawn(home: Path) -> subprocess.Popen:
    import subprocess  # here: only a command that starts the server needs it

    argv = [sys.executable, "-m", "runyard", "server", "--home", str(home), "--port", "0"]
    with (home / "server.log").open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=home,  # not the caller's directory, which may be deleted while the server lives on
            env=_child_env(),
        )


def _child_env() -> dict[str, str]:
    """The environment, with PYTHONPATH absolute and led by this very package, as the child runs elsewhere."""
    package_root = str(Path(__file__).resolve().parents[1])
    entries = [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys([package_root, *entries]))}


def _wait_until_ready(home: Path, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _start_failed(home, f"the server exited with code {process.returncode}")
        info = _read_info(home)
        if info is not None and (home / "admin-token").exists() and _healthy(info["url"]):
            return info["url"]
        time.sleep(0.1)
    raise _start_failed(home, f"the server did not answer within {START_TIMEOUT:.0f} s")


def _start_failed(home: Path, why: str) -> Unavailable:
    log = home / "server.log"
    lines = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
    tail = "\n".join(f"    {line}" for line in lines) or "    (empty)"
    return Unavailable(f"could not start the runyard server: {why}; the end of {log}:\n{tail}")


def _token(home: Path) -> str:
    path = home / "admin-token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise Unavailable(f"the runyard server has not written {path}; see {home / 'server.log'}") from None


def _read_info(home: Path) -> dict | None:
    try:
        info = json.loads((home / "server.json").read_text())
    except (FileNotFoundError, ValueError):
        return None  # absent, or being written right now
    if (
        not isinstance(info, dict)
        or not isinstance(info.get("url"), str)
        or not isinstance(info.get("pid"), int)
    ):
        return None
    return info


def _healthy(url: str) -> bool:
    from runyard.rest import Rest

    try:
        Rest(url, timeout=1.0).health()
    except RunyardError:
        return False
    return True


def _alive(pid: int) -> bool:
    import psutil  # here: most commands only read server.json and ask the server itself

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _is_our_server(pid: int) -> bool:
    """Guards against a recycled pid: only a live process running `runyard … server` is signalled."""
    import psutil

    try:
        cmdline = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False
    return _alive(pid) and "runyard" in cmdline and "server" in cmdline


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status when this very process started the server (else it lingers as a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
