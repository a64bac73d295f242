"""LocalRuntime against real processes (no mocks)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from tests.support import kill_run_processes

from runyard.runtime.base import AttemptState, LaunchSpec
from runyard.runtime.local import LocalRuntime


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def make_spec(argv: list[str], uid: str = "run1", attempt: int = 1, **kw) -> LaunchSpec:
    return LaunchSpec(
        run_uid=uid, project="p", name="n", attempt=attempt, argv=argv, env=kw.pop("env", {}), **kw
    )


def wait_state(rt: LocalRuntime, handle: dict, *states: AttemptState, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        observed = rt.observe(handle)
        if observed.state in states or time.monotonic() > deadline:
            assert observed.state in states, observed
            return observed
        time.sleep(0.01)


def logs(rt: LocalRuntime, handle: dict) -> list[tuple[str, str]]:
    return [(e.stream, e.text) for e in rt.read_logs(handle).entries]


def wait_log(rt: LocalRuntime, handle: dict, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(t == text for _, t in logs(rt, handle)):
        assert time.monotonic() < deadline, logs(rt, handle)
        time.sleep(0.01)


@pytest.fixture
def rt(tmp_path: Path):
    runtime = LocalRuntime(tmp_path)
    yield runtime
    runtime.close()
    cleaner = LocalRuntime(tmp_path)
    for state_file in tmp_path.glob("runs/*/attempt-*/state.json"):  # leave no process behind
        state = json.loads(state_file.read_text())
        cleaner.stop({"dir": str(state_file.parent), **state}, 0)
    time.sleep(0.05)  # let shims act on the stop
    cleaner.close()


def test_exit_code_and_logs(rt: LocalRuntime):
    handle = rt.launch(make_spec(sh("echo hello; echo oops >&2; exit 3")))
    assert handle["runtime"] == "local" and handle["run_uid"] == "run1" and handle["attempt"] == 1
    observed = wait_state(rt, handle, AttemptState.EXITED)
    assert observed.exit_code == 3
    assert observed.started_at and observed.finished_at and observed.started_at <= observed.finished_at
    chunk = rt.read_logs(handle)
    assert chunk.complete
    assert [(e.stream, e.text) for e in chunk.entries] == [("stdout", "hello"), ("stderr", "oops")]
    assert all(e.time.tzinfo is not None and e.time >= observed.started_at for e in chunk.entries)
    again = rt.read_logs(handle, chunk.offset)
    assert again.entries == [] and again.complete and again.offset == chunk.offset


def test_env_and_cwd_with_snapshot_files_copied_by_the_shim(tmp_path: Path):
    blob = tmp_path / "blob"
    blob.write_text("from s1\n")
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho tool ran\n")
    files = {"s1": [(str(blob), "data.txt", 0o600), (str(tool), "bin/deep/tool", 0o755)]}
    rt = LocalRuntime(tmp_path, files.__getitem__)
    try:
        spec = make_spec(
            sh('cat data.txt; pwd; echo "$GREETING"; bin/deep/tool'), env={"GREETING": "hi"}, snapshot="s1"
        )
        handle = rt.launch(spec)
        assert wait_state(rt, handle, AttemptState.EXITED).exit_code == 0
        work = Path(handle["dir"]) / "work"
        assert [t for s, t in logs(rt, handle) if s == "stdout"] == ["from s1", str(work), "hi", "tool ran"]
        assert (work / "data.txt").stat().st_mode & 0o777 == 0o600
        assert (work / "bin/deep/tool").stat().st_mode & 0o777 == 0o755
    finally:
        rt.close()


def test_a_stop_while_the_shim_copies_the_snapshot_ends_the_attempt_at_once(tmp_path: Path):
    fifo = tmp_path / "endless"
    os.mkfifo(fifo)  # nobody writes to it: the copy would never end
    rt = LocalRuntime(tmp_path, lambda sid: [(str(fifo), "big.bin", 0o644)])
    try:
        handle = rt.launch(make_spec(["echo", "never"], snapshot="s"))
        target = Path(handle["dir"]) / "work" / "big.bin"
        deadline = time.monotonic() + 5
        while not target.exists():  # made before the blob is opened: the copy has begun
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert rt.observe(handle).state == AttemptState.STARTING  # no process yet
        rt.stop(handle, 5)
        observed = wait_state(rt, handle, AttemptState.EXITED, timeout=3)
        assert observed.exit_code is None and observed.message == "stopped"
        assert ("stdout", "never") not in logs(rt, handle)
    finally:
        rt.close()


def test_a_snapshot_path_outside_the_work_dir_fails_the_launch(tmp_path: Path):
    blob = tmp_path / "blob"
    blob.write_text("x")
    rt = LocalRuntime(tmp_path, lambda sid: [(str(blob), "../../escape", 0o644)])
    try:
        handle = rt.launch(make_spec(["true"], snapshot="s"))
        observed = wait_state(rt, handle, AttemptState.EXITED)
        assert observed.exit_code is None and "outside the work directory" in observed.message
        assert not (Path(handle["dir"]).parent / "escape").exists()
    finally:
        rt.close()


def test_launch_is_idempotent(rt: LocalRuntime, tmp_path: Path):
    spec = make_spec(sh("echo once >> ran.txt"))  # in its work directory, the one place it may write
    first = rt.launch(spec)
    marker = Path(first["dir"]) / "work" / "ran.txt"
    second = rt.launch(spec)
    assert first == second
    wait_state(rt, first, AttemptState.EXITED)
    other = LocalRuntime(tmp_path)  # e.g. a restarted server retrying the launch
    try:
        assert other.launch(spec) == first
    finally:
        other.close()
    assert marker.read_text() == "once\n"


def test_stop_escalates_to_sigkill_after_grace(rt: LocalRuntime):
    handle = rt.launch(make_spec(sh("trap '' TERM; echo ready; sleep 60"), stop_grace=0.5))
    wait_log(rt, handle, "ready")
    started = time.monotonic()
    rt.stop(handle, 0.5)
    observed = wait_state(rt, handle, AttemptState.EXITED)
    assert 0.4 <= time.monotonic() - started < 4
    assert observed.exit_code == -signal.SIGKILL
    assert observed.message == "stopped"
    assert json.loads((Path(handle["dir"]) / "exit.json").read_text())["stopped"] is True
    assert any(stream == "system" and "SIGKILL" in text for stream, text in logs(rt, handle))
    rt.stop(handle, 0.5)  # stopping what is gone is a no-op


def test_stop_sends_sigterm(rt: LocalRuntime):
    handle = rt.launch(make_spec(["sleep", "60"]))
    wait_state(rt, handle, AttemptState.RUNNING)
    rt.stop(handle, 5)
    rt.stop(handle, 5)  # twice while stopping: still fine
    observed = wait_state(rt, handle, AttemptState.EXITED, timeout=3)
    assert observed.exit_code == -signal.SIGTERM
    assert observed.message == "stopped"
    rt.stop(handle, 5)


def test_run_survives_server_death(rt: LocalRuntime, tmp_path: Path):
    handle = rt.launch(make_spec(sh("echo before; sleep 1; echo after; exit 7")))
    wait_log(rt, handle, "before")
    launcher = rt._launcher
    assert launcher is not None
    os.kill(launcher.pid, signal.SIGKILL)  # the server dies
    rt.close()

    revived = LocalRuntime(tmp_path)
    try:
        assert revived.observe(handle).state == AttemptState.RUNNING
        observed = wait_state(revived, handle, AttemptState.EXITED)
        assert observed.exit_code == 7
        assert [text for _, text in logs(revived, handle)] == ["before", "after"]
    finally:
        revived.close()


def test_launcher_is_restarted_transparently(rt: LocalRuntime):
    first = rt.launch(make_spec(["true"], uid="a"))
    assert rt._launcher is not None
    os.kill(rt._launcher.pid, signal.SIGKILL)
    rt._launcher.wait()
    second = rt.launch(make_spec(sh("exit 5"), uid="b"))
    assert wait_state(rt, second, AttemptState.EXITED).exit_code == 5
    assert wait_state(rt, first, AttemptState.EXITED).exit_code == 0


def test_killed_supervisor_is_lost(rt: LocalRuntime):
    handle = rt.launch(make_spec(["sleep", "60"]))
    wait_state(rt, handle, AttemptState.RUNNING)
    state = json.loads((Path(handle["dir"]) / "state.json").read_text())
    os.kill(handle["shim_pid"], signal.SIGKILL)
    kill_run_processes(state)
    observed = wait_state(rt, handle, AttemptState.LOST)
    assert "supervisor" in observed.message and observed.exit_code is None
    rt.stop(handle, 1)  # nothing left to stop: no error


def test_failed_exec_is_reported(rt: LocalRuntime):
    handle = rt.launch(make_spec(["/nonexistent/command"]))
    observed = wait_state(rt, handle, AttemptState.EXITED)
    assert observed.exit_code == 127
    assert observed.message.startswith("failed to start")
    assert any(stream == "system" for stream, _ in logs(rt, handle))


# Grows by 16 MiB (touched, so resident) every 20 ms up to 2 GiB; says so if it was never stopped.
HOG = (
    "import time\nx = []\nfor _ in range(128):\n    x.append(bytearray(16 << 20))\n    time.sleep(0.02)\n"
    "print('survived')"
)


def cgroups_writable() -> bool:
    return os.geteuid() == 0 and (
        Path("/sys/fs/cgroup/cgroup.controllers").exists() or Path("/sys/fs/cgroup/memory").is_dir()
    )


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroup", "watchdog"])
def test_a_process_over_its_memory_limit_is_killed_with_the_reason(tmp_path: Path, cgroups: bool):
    if cgroups and not cgroups_writable():
        pytest.skip("cgroups are not writable here (the watchdog case covers this host)")
    rt = LocalRuntime(tmp_path, cgroups=cgroups)
    try:
        limit = 128 * 1024 * 1024
        handle = rt.launch(make_spec([sys.executable, "-c", HOG], memory=limit))
        observed = wait_state(rt, handle, AttemptState.EXITED, timeout=20)
        assert observed.limits is not None
        assert observed.limits["mechanism"] in (("cgroup-v2", "cgroup-v1") if cgroups else ("watchdog",))
        assert observed.limits["memory"] == limit and observed.limits["enforced"] == ["memory"]
        assert observed.exit_code == -signal.SIGKILL, logs(rt, handle)
        assert observed.oom_killed and observed.message.startswith("killed: out of memory")
        assert ("stdout", "survived") not in logs(rt, handle)
    finally:
        rt.close()


def test_no_limits_requested(rt: LocalRuntime):
    handle = rt.launch(make_spec(["true"]))
    limits = wait_state(rt, handle, AttemptState.EXITED).limits
    assert limits == {
        "mechanism": "none",
        "cpu": None,
        "memory": None,
        "pids": None,
        "enforced": [],
        "note": "",
    }


def test_on_change_is_called_when_a_run_exits(rt: LocalRuntime):
    seen: list[str] = []
    called = threading.Event()

    def callback(run_uid: str) -> None:
        seen.append(run_uid)
        called.set()

    rt.on_change(callback)
    rt.launch(make_spec(["true"], uid="notified"))
    assert called.wait(5)
    assert seen == ["notified"]


def _alive(argv: list[str]) -> list[psutil.Process]:
    """Live processes running exactly `argv` (a pid printed inside a sandbox is its namespace's own)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["cmdline"] == argv and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def test_whole_process_group_is_killed_when_main_process_exits(rt: LocalRuntime):
    background = ["sleep", f"60.{os.getpid()}"]  # a command line no other test runs
    handle = rt.launch(make_spec(sh(f"{' '.join(background)} & echo started")))
    wait_state(rt, handle, AttemptState.EXITED)
    assert logs(rt, handle) == [("stdout", "started")]
    deadline = time.monotonic() + 3
    while _alive(background):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_read_logs_in_pieces_with_unterminated_last_line(rt: LocalRuntime):
    handle = rt.launch(make_spec(sh("for i in 1 2 3 4 5; do echo line$i; done; printf tail")))
    wait_state(rt, handle, AttemptState.EXITED)
    texts, offset, complete = [], 0, False
    while not complete:
        chunk = rt.read_logs(handle, offset, max_bytes=60)
        assert chunk.entries or chunk.complete
        texts += [e.text for e in chunk.entries]
        offset, complete = chunk.offset, chunk.complete
    assert texts == ["line1", "line2", "line3", "line4", "line5", "tail"]


def test_long_lines_are_split(rt: LocalRuntime):
    handle = rt.launch(make_spec(sh("head -c 100000 /dev/zero | tr '\\0' a")))
    wait_state(rt, handle, AttemptState.EXITED)
    assert [len(text) for _, text in logs(rt, handle)] == [65536, 100000 - 65536]


def test_metrics_and_cleanup(rt: LocalRuntime):
    handle = rt.launch(make_spec(["sleep", "60"]))
    wait_state(rt, handle, AttemptState.RUNNING)
    metrics = rt.metrics(handle)
    assert metrics["memory_bytes"] > 0 and metrics["cpu_percent"] >= 0
    rt.stop(handle, 0)
    wait_state(rt, handle, AttemptState.EXITED)
    assert rt.metrics(handle) == {}
    rt.cleanup(handle)
    rt.cleanup(handle)
    assert not Path(handle["dir"]).exists()


CLEANUP = """
import signal, sys, time

def on_term(*_):
    time.sleep(2)  # cleaning up
    open("cleaned", "w").write("clean")
    sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("form", ["shell line", "argv"])
def test_the_grace_period_covers_the_whole_group(rt: LocalRuntime, form: str):
    """A shell line's /bin/sh dies of the SIGTERM at once; the command it runs still gets its grace (in
    a sandbox too, whose bubblewrap process must not die of it first)."""
    argv = [sys.executable, "-c", CLEANUP]
    line = " ".join(shlex.quote(a) for a in argv)
    handle = rt.launch(make_spec(sh(line) if form == "shell line" else argv, stop_grace=10))
    marker = Path(handle["dir"]) / "work" / "cleaned"
    wait_log(rt, handle, "ready")
    rt.stop(handle, 10)
    observed = wait_state(rt, handle, AttemptState.EXITED, timeout=8)
    assert marker.exists(), "the exit was recorded before the cleanup finished"
    assert marker.read_text() == "clean"
    assert observed.message == "stopped"
    assert ("system", "grace period over: sent SIGKILL") not in logs(rt, handle)


def test_a_stop_reaches_every_process_however_fast_the_command_forks(rt: LocalRuntime):
    """The stop's SIGTERM reaches every process of the run in one go. In a sandbox it once went to each
    process found by a scan of /proc: a shell that forked while the scan ran lost its SIGTERM to a child
    the scan missed, and that child held the stop for the whole grace period (seen in CI as a `sleep`
    that outlived a stopped `echo started; sleep 60`)."""
    loop = "echo ready; i=0; while [ $i -lt 300 ]; do sleep 600 & i=$((i+1)); done; wait"
    handle = rt.launch(make_spec(sh(loop), stop_grace=30))
    wait_log(rt, handle, "ready")
    rt.stop(handle, 30)
    observed = wait_state(rt, handle, AttemptState.EXITED, timeout=10)
    assert observed.exit_code == -signal.SIGTERM, logs(rt, handle)
    assert ("system", "grace period over: sent SIGKILL") not in logs(rt, handle)
    assert json.loads((Path(handle["dir"]) / "state.json").read_text())["sandbox"]["mechanism"] == (
        "bubblewrap"
    )
