"""The local runtime's sandbox modes, environment activation and signals in a sandbox (real processes,
real bubblewrap; the escape suite through a server is tests/sandbox)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import uv
from tests.runtime.test_local_runtime import cgroups_writable, logs, make_spec, sh, wait_state

from runyard.runtime.base import AttemptState, LaunchError
from runyard.runtime.local import LocalRuntime
from runyard.runtime.local.sandbox import NOT_INSTALLED, OFF, Sandbox, wrap

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def launch_once(tmp_path: Path, argv: list[str], **kw) -> tuple[LocalRuntime, dict]:
    rt = LocalRuntime(tmp_path / "home", **kw)
    return rt, rt.launch(make_spec(argv))


def test_a_missing_bubblewrap_runs_unsandboxed_saying_why(tmp_path: Path):
    rt, handle = launch_once(tmp_path, sh("echo works"), bwrap=str(tmp_path / "no-bwrap"))
    try:
        observed = wait_state(rt, handle, AttemptState.EXITED)
        assert observed.exit_code == 0 and logs(rt, handle) == [("stdout", "works")]
        assert observed.sandbox == {"mechanism": "none", "reason": NOT_INSTALLED}
    finally:
        rt.close()


def test_sandbox_off_says_so(tmp_path: Path):
    rt, handle = launch_once(tmp_path, sh("echo off"), sandbox="off")
    try:
        assert wait_state(rt, handle, AttemptState.EXITED).sandbox == {"mechanism": "none", "reason": OFF}
    finally:
        rt.close()


def test_sandbox_required_refuses_to_launch_unsandboxed(tmp_path: Path):
    rt = LocalRuntime(tmp_path / "home", sandbox="required", bwrap=str(tmp_path / "no-bwrap"))
    try:
        with pytest.raises(LaunchError, match="RUNYARD_RUNTIME_SANDBOX=required.*not installed"):
            rt.launch(make_spec(sh("echo never")))
        assert not (tmp_path / "home" / "runs" / "run1").exists()  # nothing was started
    finally:
        rt.close()


@needs_bwrap
def test_a_signal_ending_a_sandboxed_command_is_reported_as_that_signal(tmp_path: Path):
    rt, handle = launch_once(tmp_path, sh("kill -9 $$"))
    try:
        observed = wait_state(rt, handle, AttemptState.EXITED)
        assert observed.exit_code == -signal.SIGKILL and observed.sandbox["mechanism"] == "bubblewrap"
    finally:
        rt.close()


@needs_bwrap
def test_a_stop_right_after_launch_reaches_the_sandboxed_command(tmp_path: Path):
    """A SIGTERM sent before bubblewrap has started the command would be lost (bubblewrap itself must not
    get it); it waits for the command, which then ends by it, long before the grace period."""
    rt, handle = launch_once(tmp_path, ["sleep", "60"])
    try:
        rt.stop(handle, 30)
        observed = wait_state(rt, handle, AttemptState.EXITED, timeout=10)
        assert observed.exit_code == -signal.SIGTERM and observed.message == "stopped"
        assert ("system", "grace period over: sent SIGKILL") not in logs(rt, handle)
    finally:
        rt.close()


def test_an_environment_is_activated_and_the_sdk_still_imports(tmp_path: Path):
    env = tmp_path / "env"
    subprocess.run(
        [uv.find_uv_bin(), "venv", "-q", "--python", sys.executable, str(env)],
        check=True,
        capture_output=True,
    )
    rt = LocalRuntime(tmp_path / "home")
    code = "import os, sys, runyard; print(sys.prefix); print(os.environ['VIRTUAL_ENV'])"
    try:
        handle = rt.launch(make_spec(["python", "-c", code], environment=str(env)))
        observed = wait_state(rt, handle, AttemptState.EXITED, timeout=10)
        assert observed.exit_code == 0, logs(rt, handle)
        assert logs(rt, handle) == [("stdout", str(env)), ("stdout", str(env))]
    finally:
        rt.close()


def test_only_the_gpus_handed_to_the_run_are_bound_into_its_sandbox(tmp_path: Path):
    box = Sandbox({"mechanism": "bubblewrap", "version": "0"}, "/usr/bin/bwrap", [])
    work = str(tmp_path / "work")
    argv = wrap(box, ["nvidia-smi"], home=tmp_path, work=work, sdk=tmp_path / "sdk", private=[], gpus=[1])
    bound = [argv[i + 1] for i, a in enumerate(argv) if a == "--dev-bind-try"]
    assert "/dev/nvidia1" in bound and "/dev/nvidia0" not in bound and "/dev/nvidiactl" in bound
    none = wrap(box, ["true"], home=tmp_path, work=work, sdk=tmp_path / "sdk", private=[])
    assert "--dev-bind-try" not in none
    assert none[-4:] == ["--chdir", work, "--", "true"]


@pytest.mark.skipif(not cgroups_writable(), reason="cgroups are not writable here")
@pytest.mark.parametrize("sandbox", ["auto", "off"])
def test_a_runs_cgroups_are_removed_once_it_ends(tmp_path: Path, sandbox: str):
    """Even with a process left behind (killed with the group): it leaves its cgroups only once reaped."""
    rt = LocalRuntime(tmp_path / "home", sandbox=sandbox)
    try:
        handle = rt.launch(make_spec(sh("sleep 60 & echo started"), pids=64, cpu=1.0, memory=1 << 30))
        observed = wait_state(rt, handle, AttemptState.EXITED)
        assert observed.exit_code == 0 and not observed.oom_killed, logs(rt, handle)
        cgroups = json.loads((Path(handle["dir"]) / "state.json").read_text())["cgroups"]
        assert len(cgroups) == 3
        deadline = time.monotonic() + 5
        while any(Path(c).exists() for c in cgroups):
            assert time.monotonic() < deadline, [c for c in cgroups if Path(c).exists()]
            time.sleep(0.01)
    finally:
        rt.close()


@needs_bwrap
def test_a_server_installed_under_tmp_still_runs_its_python_in_the_sandbox(tmp_path: Path, monkeypatch):
    """A checkout or virtualenv under /tmp (as CI clones are) vanished under the run's private /tmp: the
    server's interpreter and the SDK's package could not be started or imported. Where the server's
    Python lives is bound back read-only."""
    prefix = tmp_path / "venv"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "tool").write_text("#!/bin/sh\necho from the server prefix\n")
    (prefix / "bin" / "tool").chmod(0o755)
    monkeypatch.setattr(sys, "prefix", str(prefix))
    rt, handle = launch_once(tmp_path, [str(prefix / "bin" / "tool")])
    try:
        observed = wait_state(rt, handle, AttemptState.EXITED)
        assert observed.sandbox and observed.sandbox["mechanism"] == "bubblewrap"
        assert logs(rt, handle) == [("stdout", "from the server prefix")], logs(rt, handle)
    finally:
        rt.close()
