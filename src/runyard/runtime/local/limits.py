"""CPU, memory and pids limits for one run: its supervisor makes the cgroups, the run's process joins them
between fork and exec.

Standard library only: this module is imported by the launcher script, which runs with `python -I -S`.
Order of preference: a cgroup v2 child of /sys/fs/cgroup/runyard, a cgroup v1 child of the current
process's own cgroup in each needed hierarchy; where neither can be written (no root, no hierarchy), the
memory limit is enforced by the run's supervisor (the shim), which samples the group's resident memory
and SIGKILLs the group over the limit (cpu and pids are then not enforced, and the note says so). No
rlimit can do that: RLIMIT_AS makes allocations fail (a Python MemoryError, exit 1, no reason) and breaks
programs that reserve address space; RLIMIT_RSS is ignored by Linux. A memory cgroup is made for every
limited run, with or without a memory limit: it measures the peak. Any cgroup failure falls back and is
recorded in the note; nothing here ever makes a run fail.
"""

from __future__ import annotations

import contextlib
import os
import time

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


def _cgroup_v2(name: str, cpu: float | None, memory: int | None, pids: int | None) -> list[str]:
    with open(os.path.join(CGROUP_ROOT, "cgroup.controllers")) as f:
        available = f.read().split()
    wanted = [c for c, v in (("cpu", cpu), ("memory", memory), ("pids", pids)) if v is not None]
    missing = [c for c in wanted if c not in available]
    if missing:
        raise OSError(f"controllers not available: {', '.join(missing)}")
    if memory is None and "memory" in available:  # for the peak, without a limit
        wanted.append("memory")
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
            _write(os.path.join(path, "cpu.max"), f"{_quota(cpu)} {CFS_PERIOD_US}")
        if pids is not None:
            _write(os.path.join(path, "pids.max"), str(pids))
    except OSError:
        _rmdir([path])
        raise
    return [path]


def _quota(cpu: float) -> int:
    return max(1000, int(cpu * CFS_PERIOD_US))


def _cgroup_v1(name: str, cpu: float | None, memory: int | None, pids: int | None) -> list[str]:
    """One cgroup per hierarchy needed; a memory one always (it measures the peak), where there is one."""
    paths = []
    try:
        if memory is not None or os.path.isdir(os.path.join(CGROUP_ROOT, "memory")):
            path = os.path.join(_v1_parent("memory"), name)
            os.makedirs(path, exist_ok=True)
            paths.append(path)
            if memory is not None:
                _write(os.path.join(path, "memory.limit_in_bytes"), str(memory))
        if cpu is not None:
            path = os.path.join(_v1_parent("cpu"), name)
            os.makedirs(path, exist_ok=True)
            paths.append(path)
            _write(os.path.join(path, "cpu.cfs_period_us"), str(CFS_PERIOD_US))
            _write(os.path.join(path, "cpu.cfs_quota_us"), str(_quota(cpu)))
        if pids is not None:
            path = os.path.join(_v1_parent("pids"), name)
            os.makedirs(path, exist_ok=True)
            paths.append(path)
            _write(os.path.join(path, "pids.max"), str(pids))
    except OSError:
        _rmdir(paths)
        raise
    return paths


def _rmdir(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.rmdir(path)


def create(
    name: str,
    cpu: float | None,
    memory: int | None,
    pids: int | None = None,
    cgroups: bool = True,
) -> tuple[dict, list[str]]:
    """Make the run's cgroups, called by its supervisor before the fork; the child joins them (join()).
    Returns (limits record, cgroup dirs created). `cgroups=False` goes straight to the watchdog."""
    limits: dict[str, object] = {
        "mechanism": "none",
        "cpu": cpu,
        "memory": memory,
        "pids": pids,
        "enforced": [],
        "note": "",
    }
    if cpu is None and memory is None and pids is None:
        return limits, []
    enforced = [k for k, v in (("cpu", cpu), ("memory", memory), ("pids", pids)) if v is not None]
    notes = []
    if not cgroups:
        notes.append("cgroups not used")
    elif os.geteuid() == 0:
        if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers")):
            attempts = [("cgroup-v2", _cgroup_v2)]
        elif os.path.isdir(os.path.join(CGROUP_ROOT, "memory")) or os.path.isdir(
            os.path.join(CGROUP_ROOT, "pids")
        ):
            attempts = [("cgroup-v1", _cgroup_v1)]
        else:
            attempts = []
            notes.append("no cgroup hierarchy found")
        for mechanism, setup in attempts:
            try:
                paths = setup(name, cpu, memory, pids)
            except (OSError, ValueError) as e:
                notes.append(f"{mechanism} unavailable ({e})")
                continue
            limits.update(mechanism=mechanism, enforced=enforced, note="; ".join(notes))
            return limits, paths
    else:
        notes.append("cgroups need root")
    limits["enforced"] = []
    if memory is not None:
        limits.update(mechanism=WATCHDOG, enforced=["memory"])
        notes.append(f"memory: the supervisor samples resident memory every {WATCHDOG_SECONDS:g} s")
    unenforced = [k for k in ("cpu", "pids") if limits[k] is not None]
    if unenforced:
        notes.append(f"{' and '.join(unenforced)} not enforced without cgroups")
    limits["note"] = "; ".join(notes)
    return limits, []


def join(paths: list[str], pids: list[int] | None = None) -> None:
    """Move processes (default: the calling one, a child just before its exec) into the cgroups create()
    made."""
    for path in paths:
        for pid in pids or [os.getpid()]:
            _write(os.path.join(path, "cgroup.procs"), str(pid))


def peak_memory(paths: list[str]) -> int | None:
    """The most memory the cgroup's processes held at once (v1 memory.max_usage_in_bytes, v2 memory.peak
    where the kernel has it); None where no memory cgroup says."""
    for path in paths:
        for fname in ("memory.peak", "memory.max_usage_in_bytes"):
            try:
                with open(os.path.join(path, fname)) as f:
                    return int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return None


def peak(paths: list[str], limit: int | None, oom_killed: bool, sampled: int = 0) -> int | None:
    """The peak to report: the cgroup's (else the watchdog's largest sample), at most the limit. A run
    killed for its memory reached its limit by definition: the limit, then, whatever the counter says (the
    kernel charges a dying process past the limit, and a limit below a page reads back as 0)."""
    measured = peak_memory(paths)
    if measured is None and sampled:
        measured = sampled
    if limit is None:
        return measured
    if oom_killed:
        return limit
    return None if measured is None else min(measured, limit)


def human_bytes(n: int | float) -> str:
    """1024 -> '1.0 KiB' (binary units, as the memory quantities of a spec)."""
    value, unit = float(n), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            break
        value /= 1024
    return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"


def oom_message(limit: int | None, peak: int | None) -> str:
    """How a run killed for its memory ends: 'killed: out of memory (limit 1.0 KiB, peak 1.0 KiB)'."""
    parts = [f"{k} {human_bytes(v)}" for k, v in (("limit", limit), ("peak", peak)) if v is not None]
    return "killed: out of memory" + (f" ({', '.join(parts)})" if parts else "")


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


def remove(paths: list[str], wait: float = 0.0) -> None:
    """Remove cgroup dirs, which succeeds only once they are empty: processes SIGKILLed a moment ago are
    still in theirs until they have exited and been reaped, hence `wait` (seconds, polling); ignores
    errors."""
    deadline = time.monotonic() + wait
    left = list(paths)
    while True:
        _rmdir(left)
        left = [p for p in left if os.path.isdir(p)]
        if not left or time.monotonic() >= deadline:
            return
        time.sleep(0.01)
