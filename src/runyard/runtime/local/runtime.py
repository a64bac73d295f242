"""LocalRuntime: runs as processes on this host, supervised by shims that outlive the server.

Layout: `home/runs/<run_uid>/attempt-<n>/` holds `work/` (the run's cwd), `claim`, `state.json`,
`output.log`, `exit.json` (and `stop.json` once stopped); `home/runtime/notify.sock` receives a datagram
with the run uid whenever an attempt exits. See launcher.py and shim.py for the processes involved.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import psutil

from runyard.runtime.base import (
    FILLED,
    AttemptState,
    Entry,
    Handle,
    LaunchError,
    LaunchSpec,
    LogChunk,
    LogEntry,
    Observed,
    Runtime,
)
from runyard.runtime.local import enter, limits
from runyard.runtime.local.sandbox import Sandbox, probe, wrap
from runyard.runtime.local.sdk import python_path, sdk_dir
from runyard.runtime.local.shim import write_json
from runyard.serving.protocol import LISTEN_FD

log = logging.getLogger(__name__)

LAUNCHER = Path(__file__).with_name("launcher.py")
# A snapshot id -> its files as (source path, path relative to the work directory, mode).
SnapshotFiles = Callable[[str], list[tuple[str, str, int]]]
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# create times are compared with some slack: they derive from the boot time, which the kernel reports in
# whole seconds. A pid reused within the same second is not a realistic concern.
_CREATE_TIME_SLACK = 1.0
LOST_MESSAGE = (
    "the run's supervisor process is gone (killed, or the host restarted); its exit status was not recorded"
)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _process(pid: int | None, create_time: float | None) -> psutil.Process | None:
    """The live (non-zombie) process `pid` if it is still the one created at `create_time`."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > _CREATE_TIME_SLACK:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def parse_log_line(line: bytes) -> LogEntry | None:
    """One output.log line (`<time> <stream> <text>`, without its newline) as a LogEntry."""
    stamp, _, rest = line.decode("utf-8", "replace").partition(" ")
    stream, _, text = rest.partition(" ")
    try:
        return LogEntry(time=datetime.fromisoformat(stamp), stream=stream, text=text)
    except ValueError:
        return None


def read_log_chunk(path: Path, offset: int, max_bytes: int, final: bool) -> LogChunk:
    """The complete lines of a kept log (output.log's format) from `offset`, at most `max_bytes` unless one
    line is longer. `final`: the log will grow no more, so the chunk is complete once it reaches the end.
    The local runtime's and the cluster's (its copy of a pod's log) read their logs the same way."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(offset)
            data = f.read(max_bytes)
            if b"\n" not in data and len(data) == max_bytes:  # one line longer than max_bytes
                data += f.readline()
    except FileNotFoundError:
        return LogChunk(entries=[], offset=offset, complete=final)
    data = data[: data.rfind(b"\n") + 1]  # complete lines only
    entries = [e for line in data.splitlines() if (e := parse_log_line(line)) is not None]
    new_offset = offset + len(data)
    return LogChunk(entries=entries, offset=new_offset, complete=final and new_offset >= size)


def run_base_env() -> dict[str, str]:
    """The environment runs start from: the server's, less its own settings. RUNYARD_* may hold the admin
    token or a database URL with its password; a run gets only the RUNYARD_* variables of its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}


class LocalRuntime(Runtime):
    kind = "local"

    def __init__(
        self,
        home: Path,
        snapshot_files: SnapshotFiles | None = None,
        cgroups: bool = True,
        sandbox: str = "auto",
        private_paths: list[str] | None = None,
        bwrap: str = "bwrap",
    ) -> None:
        """`cgroups=False`: enforce memory limits with the shim's watchdog even where cgroups work.
        `sandbox`: auto | off | required (see RuntimeSettings.sandbox). `private_paths`: what a sandboxed
        run must not see besides `home` (e.g. a SQLite database or artifact folder kept elsewhere).
        `bwrap`: the bubblewrap binary (a name looked up on PATH, or a path)."""
        self.home = Path(home).absolute()
        self.runs_dir = self.home / "runs"
        self.runtime_dir = self.home / "runtime"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        self.notify_path = self.runtime_dir / "notify.sock"
        self.sdk = sdk_dir(self.home)
        self._snapshot_files = snapshot_files
        self._cgroups = cgroups
        self._sandbox_mode = sandbox
        self._bwrap = bwrap
        self._sandbox: Sandbox | None = None  # probed at the first launch
        self._private_paths = [str(Path(p).absolute()) for p in private_paths or []]
        self._lock = threading.Lock()
        self._launcher: subprocess.Popen[bytes] | None = None
        self._fds: socket.socket | None = None  # the launcher's fd channel (see launcher.py)
        self._callbacks: list[Callable[[str], None]] = []
        self._output_callbacks: list[Callable[[str], None]] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._sock_ino = 0
        self._closing = False

    # -- launching -------------------------------------------------------------------------------------
    def attempt_dir(self, run_uid: str, attempt: int) -> Path:
        if not _SAFE_NAME.fullmatch(run_uid):
            raise LaunchError(f"invalid run uid {run_uid!r}")
        return self.runs_dir / run_uid / f"attempt-{int(attempt)}"

    def sandbox(self) -> Sandbox:
        """How runs are sandboxed on this host (probed once: a few milliseconds)."""
        if self._sandbox is None:
            self._sandbox = probe(self._sandbox_mode, self._bwrap)
            if not self._sandbox.available:
                log.warning("local runtime: runs are not sandboxed: %s", self._sandbox.record["reason"])
        return self._sandbox

    def launch(self, spec: LaunchSpec) -> Handle:
        if not spec.argv:
            raise LaunchError("nothing to run: the command is empty")
        adir = self.attempt_dir(spec.run_uid, spec.attempt)
        if (adir / "state.json").exists():
            return self._adopt(adir)
        box = self.sandbox()
        if self._sandbox_mode == "required" and not box.available:
            raise LaunchError(
                f"cannot sandbox the run (RUNYARD_RUNTIME_SANDBOX=required): {box.record['reason']}"
            )
        work_dir = Path(spec.workdir) if spec.workdir else adir / "work"
        work_dir.mkdir(parents=True, exist_ok=True)
        adir.mkdir(parents=True, exist_ok=True)
        files: list[tuple[str, str, int]] = []
        filled = spec.workdir is not None and (work_dir / FILLED).exists()  # a kept one keeps its files
        if spec.snapshot is not None and not filled:  # resolved here (one store read); the shim copies
            if self._snapshot_files is None:
                raise LaunchError("this runtime was not given a way to find snapshots")
            try:
                files = self._snapshot_files(spec.snapshot)
            except Exception as e:
                raise LaunchError(f"could not read snapshot {spec.snapshot}: {e}") from e
        work = str(work_dir)
        wrapped = None
        if box.available:
            wrapped = wrap(
                box,
                list(spec.argv),
                home=self.home,
                work=work,
                sdk=self.sdk,
                private=self._private_paths,
                environment=spec.environment,
                gpus=spec.gpus,
            )
        reply = self._request(
            {
                "dir": str(adir),
                "run_uid": spec.run_uid,
                "attempt": spec.attempt,
                "argv": list(spec.argv),
                "wrapped": wrapped,
                "sandbox": box.record,
                "env": self._env(spec),
                "cpu": spec.cpu,
                "memory": spec.memory,
                "pids": spec.pids,
                "stop_grace": spec.stop_grace,
                "cgroups": self._cgroups,
                "files": files,
                "work": work,
                "filled": str(work_dir / FILLED) if spec.workdir and spec.snapshot else None,
                "notify": str(self.notify_path),
                "listen_fd": LISTEN_FD if spec.listen_fd is not None else None,
            },
            spec.listen_fd,
        )
        if "error" in reply:
            raise LaunchError(f"could not start the run: {reply['error']}")
        if reply.get("claimed"):  # an earlier launch of this attempt got there first
            return self._adopt(adir)
        pid = int(reply["shim_pid"])
        create_time = reply.get("shim_create_time")
        if create_time is None:  # not Linux: /proc was not there for the shim to read
            proc = _process(pid, None)
            create_time = proc.create_time() if proc else None
        return self._handle(adir, spec.run_uid, spec.attempt, pid, create_time)

    def _env(self, spec: LaunchSpec) -> dict[str, str]:
        """The run's own variables: the SDK leads PYTHONPATH; an environment is activated as a virtualenv
        is (its bin first on PATH, VIRTUAL_ENV), so `python` and its scripts are the environment's."""
        env = {**spec.env, "PYTHONPATH": python_path(self.sdk, spec.env)}
        if spec.environment:
            path = spec.env["PATH"] if "PATH" in spec.env else os.environ.get("PATH", os.defpath)
            env["PATH"] = os.pathsep.join([os.path.join(spec.environment, "bin"), *filter(None, [path])])
            env["VIRTUAL_ENV"] = spec.environment
        return env

    def find_launched(self, run_uid: str, attempt: int) -> Handle | None:
        adir = self.attempt_dir(run_uid, attempt)
        return self._adopt(adir) if (adir / "claim").exists() else None

    @staticmethod
    def _handle(adir: Path, run_uid: str, attempt: int, pid: int | None, ctime: float | None) -> Handle:
        return {
            "runtime": "local",
            "dir": str(adir),
            "shim_pid": pid,
            "shim_create_time": ctime,
            "run_uid": run_uid,
            "attempt": attempt,
        }

    def _adopt(self, adir: Path) -> Handle:
        """The handle of an attempt that was already launched (or claimed by a shim that then died)."""
        state = _read_json(adir / "state.json") or {}
        run_uid, attempt = adir.parent.name, int(adir.name.removeprefix("attempt-"))
        return self._handle(adir, run_uid, attempt, state.get("shim_pid"), state.get("shim_create_time"))

    def _request(self, req: dict[str, Any], fd: int | None = None) -> dict[str, Any]:
        """Send one request to the launcher, (re)starting it as needed; `fd` goes with it (SCM_RIGHTS)."""
        data = json.dumps(req).encode() + b"\n"
        with self._lock:
            for _ in range(2):
                proc = self._ensure_launcher()
                assert proc.stdin is not None and proc.stdout is not None and self._fds is not None
                try:
                    if fd is not None:
                        socket.send_fds(self._fds, [b"f"], [fd])
                    proc.stdin.write(data)
                    proc.stdin.flush()
                    line = proc.stdout.readline()
                except OSError:
                    line = b""
                if line:
                    return json.loads(line)
                # The launcher died. Retrying is safe: a shim it forked already has claimed the attempt,
                # and the new shim would then answer "claimed".
                self._stop_launcher(kill=True)
        raise LaunchError("the local launcher process keeps dying")

    def _ensure_launcher(self) -> subprocess.Popen[bytes]:
        if self._launcher is None or self._launcher.poll() is not None:
            self._stop_launcher()
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            with theirs:
                self._launcher = subprocess.Popen(
                    [sys.executable, "-I", "-S", str(LAUNCHER), str(theirs.fileno())],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=run_base_env(),
                    pass_fds=[theirs.fileno()],
                )
            self._fds = ours
        return self._launcher

    def _stop_launcher(self, kill: bool = False) -> None:
        proc, self._launcher = self._launcher, None
        fds, self._fds = self._fds, None
        if fds is not None:
            fds.close()
        if proc is None:
            return
        streams: list[IO[bytes] | None] = [proc.stdin, proc.stdout]
        for stream in streams:
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        if kill:
            proc.kill()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # -- observing -----------------------------------------------------------------------------------------
    def observe(self, handle: Handle) -> Observed:
        adir = Path(handle["dir"])
        state = _read_json(adir / "state.json") or {}
        done = _read_json(adir / "exit.json")
        if done is None:
            if _process(handle.get("shim_pid"), handle.get("shim_create_time")):
                running = state.get("child_pid") is not None
                return Observed(
                    state=AttemptState.RUNNING if running else AttemptState.STARTING,
                    started_at=_parse_time(state.get("started_at")),
                    progress_at=_parse_time(state.get("progress_at")),
                    limits=state.get("limits"),
                    sandbox=state.get("sandbox"),
                )
            done = _read_json(adir / "exit.json")  # it may have finished between the two looks
        if done is None:
            return Observed(
                state=AttemptState.LOST,
                started_at=_parse_time(state.get("started_at")),
                message=LOST_MESSAGE,
                limits=state.get("limits"),
                sandbox=state.get("sandbox"),
            )
        return Observed(
            state=AttemptState.EXITED,
            exit_code=done.get("exit_code"),
            started_at=_parse_time(state.get("started_at")),
            finished_at=_parse_time(done.get("finished_at")),
            message=self._exit_message(done, state),
            limits=state.get("limits"),
            oom_killed=bool(done.get("oom_killed")),
            peak_memory=done.get("peak_memory"),
            sandbox=state.get("sandbox"),
        )

    @staticmethod
    def _exit_message(done: dict[str, Any], state: dict[str, Any]) -> str:
        if done.get("error"):
            return f"failed to start: {done['error']}"
        if done.get("oom_killed"):
            return limits.oom_message((state.get("limits") or {}).get("memory"), done.get("peak_memory"))
        if done.get("stopped"):
            return "stopped"
        return ""

    def read_logs(self, handle: Handle, offset: int = 0, max_bytes: int = 1 << 20) -> LogChunk:
        adir = Path(handle["dir"])
        exited = (adir / "exit.json").exists()  # looked at first: output.log is final once it exists
        return read_log_chunk(adir / "output.log", offset, max_bytes, exited)

    def enter(self, handle: Handle, argv: list[str]) -> Entry:
        return enter.entry(Path(handle["dir"]), argv)

    def metrics(self, handle: Handle) -> dict[str, float]:
        adir = Path(handle["dir"])
        state = _read_json(adir / "state.json") or {}
        pgids = {state.get("child_pid"), state.get("sandbox_pid")} - {None}  # see shim._groups
        if not pgids or (adir / "exit.json").exists():
            return {}
        cpu = memory = 0.0
        found = False
        for proc in psutil.process_iter():  # psutil caches these, so cpu_percent spans calls
            try:
                if os.getpgid(proc.pid) not in pgids:
                    continue
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    memory += proc.memory_info().rss
                found = True
            except (OSError, psutil.Error):
                continue
        return {"cpu_percent": cpu, "memory_bytes": memory} if found else {}

    # -- stopping and cleaning up ------------------------------------------------------------------------
    def stop(self, handle: Handle, grace: float) -> None:
        adir = Path(handle["dir"])
        if (adir / "exit.json").exists():
            return
        shim = _process(handle.get("shim_pid"), handle.get("shim_create_time"))
        if shim is not None:
            try:
                write_json(str(adir / "stop.json"), {"grace": grace})
                shim.send_signal(signal.SIGTERM)
            except (OSError, psutil.Error):
                pass
            return
        # The shim is gone (it cannot enforce anything any more): kill what is left of the group now.
        state = _read_json(adir / "state.json") or {}
        for key in ("child", "sandbox"):  # the spawned process's group, and the sandboxed command's
            pgid = state.get(f"{key}_pid")
            if not pgid:
                continue
            try:
                leader = psutil.Process(pgid)
                ctime = state.get(f"{key}_create_time")
                if ctime is not None and abs(leader.create_time() - ctime) > _CREATE_TIME_SLACK:
                    continue  # the pid was reused: not ours
            except psutil.Error:
                pass  # leader gone; a group id is not reused while any member is alive
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)

    def cleanup(self, handle: Handle) -> None:
        """Remove the attempt's files and cgroups. For finished attempts: a running one keeps running."""
        adir = Path(handle["dir"])
        state = _read_json(adir / "state.json") or {}
        limits.remove(state.get("cgroups") or [])
        shutil.rmtree(adir, ignore_errors=True)
        with contextlib.suppress(OSError):  # the run's dir, once its last attempt is gone
            adir.parent.rmdir()

    # -- notifications -----------------------------------------------------------------------------------
    def on_change(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)
        self._listen_once()

    def on_output(self, callback: Callable[[str], None]) -> None:
        self._output_callbacks.append(callback)
        self._listen_once()

    def _listen_once(self) -> None:
        if self._thread is not None:
            return
        try:
            self.notify_path.unlink(missing_ok=True)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(self.notify_path))
        except OSError as e:  # e.g. a path too long for a unix socket: callers poll anyway
            log.warning("local runtime: change notifications disabled (%s)", e)
            return
        self._sock = sock
        self._sock_ino = os.stat(self.notify_path).st_ino
        self._thread = threading.Thread(target=self._listen, name="runyard-local-notify", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        assert self._sock is not None
        while not self._closing:
            try:
                data = self._sock.recv(4096)
            except OSError:
                return
            if self._closing:
                return
            run_uid = data.decode("utf-8", "replace")
            callbacks = self._callbacks
            if run_uid.startswith("o:"):
                run_uid, callbacks = run_uid[2:], self._output_callbacks
            for callback in list(callbacks):
                try:
                    callback(run_uid)
                except Exception:
                    log.exception("local runtime: change callback failed")

    def close(self) -> None:
        self._closing = True
        if self._sock is not None:
            try:  # wake the listener up
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                    s.sendto(b"", str(self.notify_path))
            except OSError:
                pass
            if self._thread is not None:
                self._thread.join(timeout=2)
            self._sock.close()
            try:  # unless another runtime on this home has taken the path over since
                if os.stat(self.notify_path).st_ino == self._sock_ino:
                    self.notify_path.unlink()
            except OSError:
                pass
            self._sock = self._thread = None
        with self._lock:
            self._stop_launcher()
