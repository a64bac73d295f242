"""The runtime interface. A Run is the only thing a runtime knows how to start.

Handles are plain JSON-able dicts kept in the store, so a restarted server (or another replica) can observe,
stop and read the logs of what an earlier process launched. Nothing here assumes the server and the run
share a filesystem or a process tree; only a runtime's own implementation may.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from runyard.core.errors import Unavailable

Handle = dict[str, Any]


@dataclass
class LaunchSpec:
    """Everything needed to start one attempt of a Run. `argv` is final: shell commands arrive as sh -c."""

    run_uid: str
    project: str
    name: str
    attempt: int
    argv: list[str]
    env: dict[str, str]
    snapshot: str | None = None
    cpu: float | None = None
    memory: int | None = None
    gpu: int = 0
    stop_grace: float = 10.0
    pids: int | None = None  # most processes at once (cgroup pids controller)
    gpus: list[int] = field(default_factory=list)  # indices of the GPUs handed to this attempt, exclusively
    environment: str | None = None  # directory of its built environment (a virtualenv); None: the host's
    listen_fd: int | None = None  # a listening socket handed to the process as fd 5 (a model's replica)
    # A directory kept across attempts and runs (a session's), its work directory instead of a fresh one per
    # attempt; the snapshot is copied into it once, the first time (FILLED marks that it was).
    workdir: str | None = None


FILLED = ".runyard-snapshot"  # in a kept work directory: the snapshot copied into it (see LaunchSpec)


class AttemptState(StrEnum):
    STARTING = "starting"  # launched, the process has not been confirmed yet
    RUNNING = "running"
    EXITED = "exited"  # finished; exit_code is set (negative: killed by that signal)
    LOST = "lost"  # neither running nor a recorded exit: the process vanished


@dataclass
class Observed:
    state: AttemptState
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""
    limits: dict[str, Any] | None = None  # e.g. {"mechanism": "cgroup-v1", "cpu": 2.0, "memory": 4294967296}
    oom_killed: bool = False  # EXITED: killed for going over its memory limit
    progress_at: datetime | None = None  # STARTING: when the launch last got on (e.g. copying files)
    peak_memory: int | None = None  # EXITED: the most memory the attempt's processes held, where known
    sandbox: dict[str, Any] | None = None  # {"mechanism": "bubblewrap"}, or "none" with a "reason"


@dataclass
class LogEntry:
    time: datetime
    stream: str  # "stdout" | "stderr" | "system"
    text: str


@dataclass
class LogChunk:
    entries: list[LogEntry] = field(default_factory=list)
    offset: int = 0  # pass back to continue after these entries
    complete: bool = False  # the attempt has exited and everything it wrote has been read


class LaunchError(Exception):
    """The runtime could not start the attempt; the message says why (shown to the user)."""


@dataclass
class Entry:
    """How to start a command inside a running attempt (Runtime.enter): the process `[*wrapper, *argv]`,
    started on this host with `env` and `cwd`. `wrapper` gets into the attempt (its namespaces) and execs
    the rest there: a starter may put its own exec-through helpers between the two (e.g. `setsid --ctty`),
    to run inside. `fds` are this process's, named by the argv (/proc/PID/fd/N) and not inherited: the
    starter keeps them open until the command has ended, then closes them. `adopt`, when set, moves
    processes into the attempt's resource groups (cgroups): the starter holds the command back until it
    has called it with the pids it started (raising OSError: the command must not run)."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    wrapper: list[str] = field(default_factory=list)
    fds: tuple[int, ...] = ()
    adopt: Callable[[list[int]], None] | None = None


class Runtime(ABC):
    kind: ClassVar[str]

    @abstractmethod
    def launch(self, spec: LaunchSpec) -> Handle:
        """Start one attempt. Idempotent per (run_uid, attempt): calling it again for an attempt that was
        already launched returns that attempt's handle and starts nothing. Returns quickly; raises
        LaunchError."""

    @abstractmethod
    def find_launched(self, run_uid: str, attempt: int) -> Handle | None:
        """The handle of an attempt launched earlier (perhaps by a process that died before recording
        it), or None if it never was: how a stop reaches a launch whose handle was never stored."""

    @abstractmethod
    def observe(self, handle: Handle) -> Observed:
        """Current state of an attempt. Cheap, never blocks on the process."""

    @abstractmethod
    def stop(self, handle: Handle, grace: float) -> None:
        """Ask the attempt to terminate (SIGTERM), killing it after `grace` seconds even if the caller dies
        meanwhile. Idempotent: stopping what is already gone is not an error. Does not wait."""

    @abstractmethod
    def read_logs(self, handle: Handle, offset: int = 0, max_bytes: int = 1 << 20) -> LogChunk:
        """Log entries written since `offset`, kept after the attempt ends."""

    def enter(self, handle: Handle, argv: list[str]) -> Entry:
        """How to run `argv` inside the running attempt, as `kubectl exec` does: in its sandbox, with its
        environment and work directory. Raises Conflict when the attempt is not running, Unavailable
        where the runtime cannot."""
        raise Unavailable(f"the {self.kind} runtime cannot run a command inside a run")

    def metrics(self, handle: Handle) -> dict[str, float]:
        """Resource usage now (cpu_percent, memory_bytes); empty when unknown."""
        return {}

    def cleanup(self, handle: Handle) -> None:  # noqa: B027 - optional for runtimes that keep nothing
        """Remove what the attempt left behind (work directory, logs). Idempotent."""

    def on_change(self, callback: Callable[[str], None]) -> None:  # noqa: B027
        """Register a callback called with a run uid when an attempt of it changes state (best effort:
        callers must still poll, this only makes them react sooner)."""

    def on_output(self, callback: Callable[[str], None]) -> None:  # noqa: B027
        """Register a callback called with a run uid when an attempt wrote new output (best effort, as
        on_change: log followers use it to wake up instead of polling)."""

    def close(self) -> None:  # noqa: B027
        """Release what the runtime holds in this process; launched attempts keep running."""


class SupportsGPUs:
    """Ability mixin: the runtime can hand out GPUs exclusively."""
