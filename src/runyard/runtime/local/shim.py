"""The shim: the per-run supervisor forked by the launcher. Standard library only (see launcher.py).

It claims the attempt directory (so an attempt never runs twice), forks the run's process into its own
process group, writes every output line to `output.log`, forwards a stop (SIGTERM, then SIGKILL after the
grace period), and records the exit in `exit.json`. It lives in its own session, so it outlives the
launcher and the server; the files it writes are all the server needs to observe the run later.

output.log holds one line per output line: `<UTC time, ISO-8601 with microseconds and Z> <stream> <text>`,
stream being stdout, stderr or system.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import shutil
import signal
import socket
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if __package__ or TYPE_CHECKING:
    from . import limits
else:  # imported by the launcher script, which runs outside the package
    import limits

MAX_LINE = 64 * 1024
DRAIN_SECONDS = 2.0
COPY_CHUNK = 1 << 20
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CGROUP_REMOVE_SECONDS = 5.0  # after the run, how long its killed processes may take to leave its cgroups
GROUP_POLL_SECONDS = 0.05  # after a stop, how often to look whether the group has emptied
BEAT_SECONDS = 1.0  # while copying files, how often state.json says the launch is still getting on
_boot_time: float | None = None
# What the run's process gets back to default: Python ignores SIGPIPE and SIGXFSZ, the launcher SIGINT,
# and an ignored signal stays ignored across exec.
# Holds a run until the shim has moved it into its cgroups (a byte on fd 3), then execs the command in its
# place: the same process, its argv and PATH lookup unchanged, fds 3 and 4 closed.
HOLD = ["/bin/sh", "-c", 'read _ <&3; exec 3<&- 4>&- "$@"', "sh"]
SIGNAL_MAX = 64  # the highest signal number (SIGRTMAX) on Linux
RESET_SIGNALS = (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE, signal.SIGINT, signal.SIGXFSZ)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def create_time(pid: int) -> float | None:
    """A process's start time in seconds since the epoch, computed exactly as psutil does on Linux."""
    global _boot_time
    try:
        if _boot_time is None:
            with open("/proc/stat", "rb") as f:
                _boot_time = next(float(line.split()[1]) for line in f if line.startswith(b"btime"))
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        ticks = int(data[data.rfind(b")") + 2 :].split()[19])
        return ticks / os.sysconf("SC_CLK_TCK") + _boot_time
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def write_json(path: str, data: dict) -> None:
    """Atomically replace `path` (readers see the old or the new content, never a partial one)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _copy_chunk(fd_in: int, fd_out: int) -> int:
    """Copy up to COPY_CHUNK bytes, in the kernel where it can; returns how many (0 at the end)."""
    try:
        return os.copy_file_range(fd_in, fd_out, COPY_CHUNK)
    except OSError:  # another filesystem, a pipe, an old kernel: through a buffer
        data = os.read(fd_in, COPY_CHUNK)
        view = memoryview(data)
        while view:
            view = view[os.write(fd_out, view) :]
        return len(data)


class StoppedWhilePreparing(Exception):
    """Raised by the SIGTERM handler while the files are copied: a stop must not wait for the copy."""


def _group(*pgids: int) -> list[tuple[int, bytes, int, int]]:
    """(pid, state, parent pid, resident pages) of each process in these process groups, zombies
    included, from /proc."""
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    members = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[2]) in pgids:
                members.append((int(pid), fields[0], int(fields[1]), int(fields[21])))
        except (OSError, IndexError, ValueError):
            continue
    return members


def _group_alive(*pgids: int) -> bool:
    """Whether a live (not zombie) process is left in these process groups."""
    exists = False
    for pgid in pgids:
        with contextlib.suppress(OSError):
            os.killpg(pgid, 0)
            exists = True
    if not exists:
        return False
    if not os.path.isdir("/proc"):  # cannot tell zombies apart: trust the signal
        return True
    return any(member[1] != b"Z" for member in _group(*pgids))


def _group_resident_bytes(*pgids: int) -> int:
    return sum(member[3] for member in _group(*pgids)) * PAGE_SIZE


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(OSError):  # gone already
        os.killpg(pgid, sig)


def _resolve(argv0: str, env: dict) -> None:
    """Fail as exec would (FileNotFoundError / PermissionError) when the command cannot be found: checked
    before the sandbox starts, so a typo fails as today (exit 127, "failed to start: ...")."""
    if "/" in argv0:
        if not os.path.exists(argv0):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv0)
        if not os.access(argv0, os.X_OK) or os.path.isdir(argv0):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), argv0)
    elif shutil.which(argv0, path=env.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv0)


def _sandbox_child(info_r: int) -> int:
    """The pid of bubblewrap's child (the sandbox's init-to-be), from what bubblewrap writes on its
    --info-fd once it has made it (a JSON object)."""
    data = b""
    while not data.rstrip().endswith(b"}"):
        chunk = os.read(info_r, 4096)
        if not chunk:
            break
        data += chunk
    return int(json.loads(data)["child-pid"])


def exit_code(status: int, sandboxed: bool) -> int:
    """The run's exit code from its process's wait status; negative: killed by that signal. bubblewrap
    exits 128+N when the command died of signal N: read back as -N (see sandbox.py)."""
    code = os.waitstatus_to_exitcode(status)
    if sandboxed and 128 < code <= 128 + SIGNAL_MAX:
        return 128 - code
    return code


class Shim:
    def __init__(self, req: dict, listen: int | None = None) -> None:
        self.req = req
        self.listen = listen  # a listening socket handed to the run's process as fd req["listen_fd"]
        self.dir = req["dir"]
        self.state: dict = {}
        self.log_fd = -1
        self.child = 0
        self.term_requested = False
        self.preparing = False
        self.stopped = False
        self.kill_at: float | None = None
        self.memory_limit: int | None = None  # enforced here, by sampling, when cgroups could not
        self.memory_killed = False
        self.peak_sample = 0  # the watchdog's largest sample
        self.sandboxed = bool(req.get("wrapped"))
        self.term_pending = False  # a stop's SIGTERM waits for the sandboxed command to exist
        # bubblewrap's child, the sandbox's init: with --new-session it leads the process group of the
        # command and all it starts (see _term_sandboxed); a pidfd when the kernel has them
        self.sandbox_init = 0
        self.sandbox_fd: int | None = None
        self.next_sample = 0.0
        self.sel = selectors.DefaultSelector()
        self.buffers: dict[int, bytearray] = {}
        self.streams: dict[int, str] = {}
        self.wake_r = -1
        self.error: str | None = None
        self.new_output = False
        self.notify_sock: socket.socket | None = None

    # -- setup ---------------------------------------------------------------------------------------
    def _setup_process(self) -> None:
        os.setsid()
        os.chdir("/")  # do not pin the server's cwd; the run's process gets its own
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # drop the launcher's pipes: the server must see EOF when the launcher dies
            os.dup2(null, fd)
        os.close(null)
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # replaces the launcher's reaper; wakes select
        signal.signal(signal.SIGTERM, self._on_term)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])

    def _on_term(self, *_: object) -> None:
        self.term_requested = True
        if self.preparing:
            self.preparing = False  # raise once
            raise StoppedWhilePreparing

    def _claim(self) -> bool:
        try:
            fd = os.open(os.path.join(self.dir, "claim"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True

    def _save_state(self, **changes: object) -> None:
        self.state.update(changes)
        write_json(os.path.join(self.dir, "state.json"), self.state)

    # -- the work directory ------------------------------------------------------------------------------
    def _work(self) -> str:
        """The attempt's own work directory, or the kept one it was given (a session's)."""
        return self.req.get("work") or os.path.join(self.dir, "work")

    def _prepare(self, files: list) -> None:
        """Copy the snapshot's files into the work directory, here rather than in the server, so that a
        big snapshot delays only its own run. Paths were checked at upload; checked again, cheaply."""
        work = self._work()
        beat = time.monotonic()
        for src, rel, mode in files:
            if os.path.isabs(rel) or os.path.normpath(rel).split(os.sep)[0] == "..":
                raise ValueError(f"refusing a path outside the work directory: {rel!r}")
            target = os.path.join(work, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fd_out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                fd_in = os.open(src, os.O_RDONLY)
                try:
                    while _copy_chunk(fd_in, fd_out):
                        if time.monotonic() - beat >= BEAT_SECONDS:
                            beat = time.monotonic()
                            self._save_state(progress_at=now_iso())
                finally:
                    os.close(fd_in)
                os.fchmod(fd_out, int(mode) & 0o777)
            finally:
                os.close(fd_out)

    # -- output ----------------------------------------------------------------------------------------
    def _log(self, stream: str, lines: list[bytes]) -> None:
        if not lines:
            return
        stamp = now_iso()
        out = b"".join(
            f"{stamp} {stream} {line.decode('utf-8', 'replace')}\n".encode("utf-8", "replace")
            for line in lines
        )
        while out:
            out = out[os.write(self.log_fd, out) :]
        self.new_output = True

    def system(self, text: str) -> None:
        self._log("system", [text.encode()])

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        buf = self.buffers[fd]
        if not data:
            self._log(self.streams[fd], [bytes(buf)] if buf else [])
            self.sel.unregister(fd)
            os.close(fd)
            del self.buffers[fd]
            return
        buf += data
        lines = []
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            lines.append(bytes(buf[start:end]))
            start = end + 1
        del buf[:start]
        while len(buf) >= MAX_LINE:
            lines.append(bytes(buf[:MAX_LINE]))
            del buf[:MAX_LINE]
        self._log(self.streams[fd], lines)

    # -- the run's process -------------------------------------------------------------------------------
    def _spawn(self) -> None:
        req = self.req
        env = dict(os.environ)
        env.update(req["env"])
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        started_at = now_iso()
        # The cgroups are made here, before the run's process exists: a process killed at once by its
        # limit (e.g. `memory: 1Ki`) must still leave the paths to read the OOM kill and the peak from.
        name = f"{req['run_uid']}-{req['attempt']}-{os.getpid()}"  # never one left by an earlier shim
        record, cgroups = limits.create(
            name, req.get("cpu"), req.get("memory"), req.get("pids"), req.get("cgroups", True)
        )
        pid, report = self._posix_spawn(env, out_w, err_w, {"limits": record, "cgroups": cgroups})
        for fd in (out_w, err_w):
            os.close(fd)
        if self.listen is not None:  # the run's process holds it now; the shim must not keep it open
            os.close(self.listen)
            self.listen = None
        self.child = pid
        self._save_state(
            child_pid=pid or None,
            child_create_time=create_time(pid) if pid else None,
            sandbox_pid=self.sandbox_init or None,  # the command's process group (see _term_sandboxed)
            sandbox_create_time=create_time(self.sandbox_init) if self.sandbox_init else None,
            started_at=started_at,
            limits=report.get("limits"),
            cgroups=report.get("cgroups", []),
        )
        self.error = report.get("error")
        if (report.get("limits") or {}).get("mechanism") == limits.WATCHDOG:
            self.memory_limit = self.req.get("memory")
        if self.error:
            self.system(f"failed to start: {self.error}")
        for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            self.buffers[fd] = bytearray()
            self.streams[fd] = stream
            self.sel.register(fd, selectors.EVENT_READ)

    def _argv(self, env: dict) -> list[str]:
        """What to execute: the command, or the command wrapped in its sandbox (checked first)."""
        if self.sandboxed:
            _resolve(self.req["argv"][0], env)
            return self.req["wrapped"]
        return self.req["argv"]

    def _posix_spawn(self, env: dict, out_w: int, err_w: int, report: dict) -> tuple[int, dict]:
        """Start the command without forking this Python process: far cheaper than fork, whose
        copy-on-write faults cost milliseconds (over ten on some hosts). A run with cgroups is held until
        its processes, the only ones then, are moved into them (what they start inherits them): by
        bubblewrap (--block-fd) in a sandbox, else by a shell that then execs the command in its place.
        Returns (pid or 0, report)."""
        cgroups = report.get("cgroups") or []
        null = os.open(os.devnull, os.O_RDONLY)
        pipes: list[int] = []
        try:
            argv = self._argv(env)
            path = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH", os.defpath))
            if path is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
            os.chdir(self._work())  # posix_spawn cannot chdir (before Python 3.13)
            actions = [(os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate((null, out_w, err_w))]
            theirs: list[int] = []  # the spawned process's ends of the pipes, closed here once it has them
            if cgroups:
                block_r, block_w = os.pipe()
                pipes += [block_r, block_w]
                theirs.append(block_r)
                actions.append((os.POSIX_SPAWN_DUP2, block_r, 3))
            if self.sandboxed:  # bubblewrap says its child's pid on fd 4 (and waits for fd 3)
                info_r, info_w = os.pipe()
                pipes += [info_r, info_w]
                theirs.append(info_w)
                actions.append((os.POSIX_SPAWN_DUP2, info_w, 4))
                flags = ["--block-fd", "3", "--info-fd", "4"] if cgroups else ["--info-fd", "4"]
                argv = [argv[0], *flags, *argv[1:]]
            elif cgroups:
                path, argv = HOLD[0], [*HOLD, *argv]
            if self.listen is not None:  # bubblewrap and the holding shell pass it on as it is
                actions.append((os.POSIX_SPAWN_DUP2, self.listen, int(self.req["listen_fd"])))
            pid = os.posix_spawn(
                path, argv, env, file_actions=actions, setpgroup=0, setsigmask=(), setsigdef=RESET_SIGNALS
            )
            for fd in theirs:
                os.close(fd)
                pipes.remove(fd)
            if self.sandboxed:
                self._found_sandbox(info_r)
            if cgroups:
                try:
                    if self.sandboxed and not self.sandbox_init:
                        raise ValueError("bubblewrap did not make its sandbox")
                    limits.join(cgroups, [pid, self.sandbox_init] if self.sandboxed else [pid])
                except (OSError, ValueError) as e:
                    _kill_group(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    raise OSError(f"could not move the run into its cgroups: {e}") from e
                os.write(block_w, b"x")
            return pid, report
        except OSError as e:
            limits.remove(cgroups)
            return 0, {**report, "cgroups": [], "error": f"{e}"}
        finally:
            for fd in [null, *pipes]:
                os.close(fd)

    def _found_sandbox(self, info_r: int) -> None:
        """Note the sandbox's init (bubblewrap's child) and hold a pidfd on it: it is not our child, so
        its pid could be reused once it is gone, and it must be killed at the end (see _kill)."""
        try:
            self.sandbox_init = _sandbox_child(info_r)
        except (OSError, ValueError, KeyError):
            return  # bubblewrap failed before making it: it says why on stderr and exits
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: no pidfd on this host
            self.sandbox_fd = os.pidfd_open(self.sandbox_init)

    def _groups(self) -> tuple[int, ...]:
        """The run's process groups: the spawned process's and, in a sandbox, the command's."""
        return (self.child, self.sandbox_init) if self.sandbox_init else (self.child,)

    def _term_sandboxed(self) -> bool:
        """SIGTERM the sandboxed command and every process it started, at once: they are the process
        group of the sandbox's init (bubblewrap's --new-session), which ignores the signal (a PID
        namespace's init is sent only what it handles), and bubblewrap's own process, which would die
        of it and report that, is not in it. One kill of the group reaches a child being forked at that
        instant too; signalling the processes one by one from a scan of /proc missed such a child, which
        then held the stop for the whole grace period. False while the group has no command yet (before
        the init has called setsid and forked it): the caller tries again."""
        init = self.sandbox_init
        if not init or not any(pid != init and state != b"Z" for pid, state, _, _ in _group(init)):
            return False
        _kill_group(init, signal.SIGTERM)
        return True

    def _kill(self) -> None:
        """SIGKILL everything the run started. In a sandbox, killing its init ends its PID namespace,
        hence every process in it, whatever group it made for itself."""
        _kill_group(self.child, signal.SIGKILL)
        if not self.sandbox_init:
            return
        with contextlib.suppress(OSError):  # gone already
            if self.sandbox_fd is not None:
                signal.pidfd_send_signal(self.sandbox_fd, signal.SIGKILL)
            else:
                os.kill(self.sandbox_init, signal.SIGKILL)

    def _stop_requested(self) -> None:
        self.stopped = True
        grace = float(self.req.get("stop_grace", 10.0))
        try:
            with open(os.path.join(self.dir, "stop.json")) as f:
                grace = float(json.load(f)["grace"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        self.system(f"stop requested: sent SIGTERM, SIGKILL follows in {grace:g} s")
        if self.sandboxed:
            self.term_pending = not self._term_sandboxed()
        else:
            _kill_group(self.child, signal.SIGTERM)
        self.kill_at = time.monotonic() + grace

    def _supervise(self) -> int:
        """Pump output until the child exits; handle stops. Returns the child's wait status.

        After a stop, the grace period is the whole group's: a shell line's /bin/sh dies of the SIGTERM
        at once while its command still cleans up, so the exit is recorded (and the rest SIGKILLed) only
        once the group is empty or the grace is over."""
        self.sel.register(self.wake_r, selectors.EVENT_READ)
        main_status: int | None = None
        while True:
            timeout = None if self.kill_at is None else max(0.0, self.kill_at - time.monotonic())
            if (main_status is not None or self.term_pending) and timeout is not None:
                # nothing signals that the group emptied, nor that the sandboxed command now exists
                timeout = min(timeout, GROUP_POLL_SECONDS)
            if self.memory_limit is not None:
                timeout = (
                    limits.WATCHDOG_SECONDS if timeout is None else min(timeout, limits.WATCHDOG_SECONDS)
                )
            for key, _ in self.sel.select(timeout):
                if key.fd == self.wake_r:
                    while True:
                        try:
                            if not os.read(self.wake_r, 512):
                                break
                        except BlockingIOError:
                            break
                else:
                    self._read(key.fd)
            if self.new_output:  # one notice per wake-up, however many lines it brought
                self.new_output = False
                self._notify(b"o:")
            if self.term_requested and not self.stopped:
                self._stop_requested()
            elif self.term_pending and main_status is None:
                self.term_pending = not self._term_sandboxed()
            if self.memory_limit is not None and main_status is None:
                self._watch_memory(self.memory_limit)
            if self.kill_at is not None and time.monotonic() >= self.kill_at:
                self.system("grace period over: sent SIGKILL")
                self._kill()
                self.kill_at = None
            if main_status is None:
                pid, status = os.waitpid(self.child, os.WNOHANG)
                if pid:
                    main_status = status
            if main_status is not None and (self.kill_at is None or not _group_alive(*self._groups())):
                return main_status

    def _watch_memory(self, limit: int) -> None:
        """The watchdog (see limits.py): SIGKILL the group once its resident memory is over the limit."""
        if time.monotonic() < self.next_sample:
            return
        self.next_sample = time.monotonic() + limits.WATCHDOG_SECONDS
        resident = _group_resident_bytes(*self._groups())
        self.peak_sample = max(self.peak_sample, resident)
        if resident > limit:
            self._kill()
            self.memory_limit, self.memory_killed = None, True
            over = f"{limits.human_bytes(resident)} is over the limit of {limits.human_bytes(limit)}"
            self.system(f"resident memory {over}: sent SIGKILL")

    def _drain(self) -> None:
        """After the child exited (and its group was killed): read what is left, at most DRAIN_SECONDS."""
        self.sel.unregister(self.wake_r)
        deadline = time.monotonic() + DRAIN_SECONDS
        while self.buffers and (left := deadline - time.monotonic()) > 0:
            for key, _ in self.sel.select(left):
                self._read(key.fd)
        for fd, buf in list(self.buffers.items()):  # writers escaped the group: keep what we have
            self._log(self.streams[fd], [bytes(buf)] if buf else [])
            os.close(fd)

    def _notify(self, what: bytes = b"") -> None:
        """Best effort, never blocks: a datagram with the run uid ("o:" before it for new output)."""
        path = self.req.get("notify")
        if not path:
            return
        try:
            if self.notify_sock is None:
                self.notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self.notify_sock.setblocking(False)
            self.notify_sock.sendto(what + self.req["run_uid"].encode(), path)
        except OSError:
            pass

    # -- main ------------------------------------------------------------------------------------------
    def run(self, ready_fd: int) -> None:
        self._setup_process()
        if not self._claim():
            os.write(ready_fd, b'{"claimed": true}')
            os.close(ready_fd)
            return
        pid = os.getpid()
        self._save_state(
            runtime="local",
            run_uid=self.req["run_uid"],
            attempt=self.req["attempt"],
            shim_pid=pid,
            shim_create_time=create_time(pid),
            child_pid=None,
            started_at=None,
            limits=None,
            sandbox=self.req.get("sandbox"),
        )
        os.write(
            ready_fd,
            json.dumps({"shim_pid": pid, "shim_create_time": self.state["shim_create_time"]}).encode(),
        )
        os.close(ready_fd)
        self.log_fd = os.open(
            os.path.join(self.dir, "output.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
        )
        if not self._prepared():
            return
        self._spawn()
        if not self.child:  # it could not be started: as a shell would, exit 127
            for fd in list(self.buffers):
                self.sel.unregister(fd)
                os.close(fd)
            self._record_exit(127)
            return
        status = self._supervise()
        self._kill()  # container semantics: nothing outlives the main process
        self._drain()
        cgroups = self.state.get("cgroups") or []
        oom = self.memory_killed or limits.oom_killed(cgroups)
        peak = limits.peak(cgroups, self.req.get("memory"), oom, self.peak_sample)
        if oom:
            self.system(limits.oom_message(self.req.get("memory"), peak))
        self._record_exit(exit_code(status, self.sandboxed), oom_killed=oom, peak_memory=peak)
        limits.remove(cgroups, wait=CGROUP_REMOVE_SECONDS)

    def _prepared(self) -> bool:
        """Copy the files the run needs; False (the attempt recorded as ended) if stopped or failed."""
        files = self.req.get("files") or []
        if not files:
            return True
        try:
            self.preparing = True
            if not self.term_requested:
                self._prepare(files)
                if self.req.get("filled"):  # a kept work directory: never filled again
                    write_json(self.req["filled"], {"files": len(files)})
                return True
        except StoppedWhilePreparing:
            pass
        except (OSError, ValueError) as e:
            self.error = f"could not copy the snapshot into the work directory: {e}"
            self.system(self.error)
        finally:
            self.preparing = False
        if self.error is None:
            self.stopped = True
            self.system("stopped while copying the snapshot; the command never started")
        self._record_exit(None)
        return False

    def _record_exit(
        self, code: int | None, oom_killed: bool = False, peak_memory: int | None = None
    ) -> None:
        result = {
            "exit_code": code,
            "finished_at": now_iso(),
            "stopped": self.stopped,
            "oom_killed": oom_killed,
            "peak_memory": peak_memory,
        }
        if self.error:
            result["error"] = self.error
        write_json(os.path.join(self.dir, "exit.json"), result)
        self._notify()


def main(req: dict, ready_fd: int, listen: int | None = None) -> None:
    """Entry point in the process the launcher forked. Never returns."""
    code = 1
    shim = Shim(req, listen)
    try:
        shim.run(ready_fd)
        code = 0
    except BaseException as e:
        if shim.log_fd >= 0:
            with contextlib.suppress(BaseException):
                shim.system(f"supervisor failed: {type(e).__name__}: {e}")
    finally:
        os._exit(code)
