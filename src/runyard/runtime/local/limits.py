"""CPU and memory limits for one run, applied by the run's process itself between fork and exec.

Standard library only: this module is imported by the launcher script, which runs with `python -I -S`.
Order of preference: a cgroup v2 child of /sys/fs/cgroup/runyard, a cgroup v1 child of the current
process's own cgroup in each needed hierarchy; where neither can be written (no root, no hierarchy), the
memory limit is enforced by the run's supervisor (the shim), which samples the group's resident memory
and SIGKILLs the group over the limit. No rlimit can do that: RLIMIT_AS makes allocations fail (a Python
MemoryError, exit 1, no reason) and breaks programs that reserve address space; RLIMIT_RSS is ignored by
Linux. Any cgroup failure falls back and is recorded in the note; nothing here ever makes a run fail.
"""

from __future__ import annotations

import contextlib
import os

CGROUP_ROOT = "/sys/fs/cgroup"
CFS_PERIOD_US = 100_000
WATCHDOG = "watchdog"
WATCHDOG_SECONDS = 0.1  # how often the supervisor samples a watched run's memory


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _own_cgroup(controller: str) -> str:
    """The current process's cgroup path (relative) in the v1 hierarchy that holds `controller`."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controller in controllers.split(","):
                    return path.lstrip("/")
    except (OSError, ValueError):
        pass
    return ""


def _v1_parent(controller: str) -> str:
    """Where to create run cgroups in a v1 hierarchy: below our own cgroup when it is visible (so a limit
    set on the server's cgroup still applies to its runs), else below the hierarchy's root."""
    mount = os.path.join(CGROUP_ROOT, controller)
    own = os.path.join(mount, _own_cgroup(controller))
    return os.path.join(own if os.path.isdir(own) else mount, "runyard")


def _cgroup_v2(name: str, cpu: float | None, memory: int | None) -> list[str]:
    with open(os.path.join(CGROUP_ROOT, "cgroup.controllers")) as f:
        available = f.read().split()
    wanted = [c for c, v in (("cpu", cpu), ("memory", memory)) if v is not None]
    missing = [c for c in wanted if c not in available]
    if missing:
        raise OSError(f"controllers not available: {', '.join(missing)}")
    enable = " ".join("+" + c for c in wanted)
    parent = os.path.join(CGROUP_ROOT, "runyard")
    _write(os.path.join(CGROUP_ROOT, "cgroup.subtree_control"), enable)
    os.makedirs(parent, exist_ok=True)
    _write(os.path.join(parent, "cgroup.subtree_control"), enable)
    path = os.path.join(parent, name)
    os.makedirs(path, exist_ok=True)
    try:
        if memory is not None:
            _write(os.path.join(path, "memory.max"), str(memory))
        if cpu is not None:
            _write(os.path.join(path, "cpu.max"), f"{max(1000, int(cpu * CFS_PERIOD_US))} {CFS_PERIOD_US}")
        _write(os.path.join(path, "cgroup.procs"), str(os.getpid()))
    except OSError:
        _rmdir([path])
        raise
    return [path]


def _cgroup_v1(name: str, cpu: float | None, memory: int | None) -> list[str]:
    paths = []
    try:
        if memory is not None:
            path = os.path.join(_v1_parent("memory"), name)
            os.makedirs(path, exist_ok=True)
            paths.append(path)
            _write(os.path.join(path, "memory.limit_in_bytes"), str(memory))
        if cpu is not None:
            path = os.path.join(_v1_parent("cpu"), name)
            os.makedirs(path, exist_ok=True)
            paths.append(path)
            _write(os.path.join(path, "cpu.cfs_period_us"), str(CFS_PERIOD_US))
            _write(os.path.join(path, "cpu.cfs_quota_us"), str(max(1000, int(cpu * CFS_PERIOD_US))))
        for path in paths:
            _write(os.path.join(path, "cgroup.procs"), str(os.getpid()))
    except OSError:
        _rmdir(paths)
        raise
    return paths


def _rmdir(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.rmdir(path)


def apply(name: str, cpu: float | None, memory: int | None, cgroups: bool = True) -> tuple[dict, list[str]]:
    """Limit the calling process (and what it will exec). Returns (limits record, cgroup dirs created).
    `cgroups=False` goes straight to the supervisor's watchdog."""
    limits: dict[str, object] = {
        "mechanism": "none",
        "cpu": cpu,
        "memory": memory,
        "enforced": [],
        "note": "",
    }
    if cpu is None and memory is None:
        return limits, []
    enforced = [k for k, v in (("cpu", cpu), ("memory", memory)) if v is not None]
    notes = []
    if not cgroups:
        notes.append("cgroups not used")
    elif os.geteuid() == 0:
        if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
            attempts = [("cgroup-v2", _cgroup_v2)]
        elif os.path.isdir(os.path.join(CGROUP_ROOT, "memory")):
            attempts = [("cgroup-v1", _cgroup_v1)]
        else:
            attempts = []
            notes.append("no cgroup hierarchy found")
        for mechanism, setup in attempts:
            try:
                paths = setup(name, cpu, memory)
            except (OSError, ValueError) as e:
                notes.append(f"{mechanism} unavailable ({e})")
                continue
            limits.update(mechanism=mechanism, enforced=enforced, note="; ".join(notes))
            return limits, paths
    else:
        notes.append("cgroups need root")
    if memory is not None:
        limits.update(mechanism=WATCHDOG, enforced=["memory"])
        notes.append(f"memory: the supervisor samples resident memory every {WATCHDOG_SECONDS:g} s")
    if cpu is not None:
        notes.append("cpu is not enforced without cgroups")
    limits["note"] = "; ".join(notes)
    return limits, []


def oom_killed(paths: list[str]) -> bool:
    """Whether the kernel OOM-killed a process in one of these cgroups (v1 memory.oom_control, v2
    memory.events both count `oom_kill`)."""
    for path in paths:
        for fname in ("memory.events", "memory.oom_control"):
            try:
                with open(os.path.join(path, fname)) as f:
                    for line in f:
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and int(value) > 0:
                            return True
            except (OSError, ValueError):
                continue
    return False


def remove(paths: list[str]) -> None:
    """Remove cgroup dirs (only succeeds once they are empty); ignores errors."""
    _rmdir(paths)
