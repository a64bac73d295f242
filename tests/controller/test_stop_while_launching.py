"""A stop or a delete that lands while a run is being launched reaches what was launched, whatever the
interleaving: over HTTP, against a real server, with real processes."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psutil
import pytest
from tests.controller.conftest import PROJECT, Platform
from tests.support import ServerProcess, experiment

from runyard.core.phases import Phase
from runyard.core.resources import Attempt, ObjectMeta, Run, RunSpec, RunStatus
from runyard.runtime.base import LaunchSpec

RUNS = 40


def run_processes(home: Path) -> list[psutil.Process]:
    """Live processes started for runs of the server in `home`: their working directory lies in it (the
    shims that supervise them work there too, but are the launcher's forks)."""
    found = []
    for proc in psutil.process_iter(["cwd", "status", "cmdline"]):
        cwd, cmdline = proc.info["cwd"], proc.info["cmdline"] or []
        if (
            cwd
            and cwd.startswith(str(home) + "/")
            and proc.info["status"] != psutil.STATUS_ZOMBIE
            and not any(arg.endswith("launcher.py") for arg in cmdline)
            and proc.name() != "bwrap"  # the sandbox's two processes around each run's own
        ):
            found.append(proc)
    return found


@pytest.fixture
def no_leftovers(server: ServerProcess):
    """Whatever the outcome, kill the runs' processes this test leaves behind (they would sleep on)."""
    yield
    for proc in run_processes(server.home):
        proc.kill()


def wait_until_gone(home: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (alive := run_processes(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, [p.info for p in alive]


def wait_run_exists(api: httpx.Client, name: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while api.get(f"/runs/{name}").status_code == 404:
        assert time.monotonic() < deadline, f"run {name} was never created"


def wait_all(api: httpx.Client, names: list[str], done, timeout: float = 30) -> dict[str, httpx.Response]:
    """GET each run until done(response) holds for every one of them."""
    deadline = time.monotonic() + timeout
    pending = set(names)
    last: dict[str, httpx.Response] = {}
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            last[name] = api.get(f"/runs/{name}")
            if done(last[name]):
                pending.discard(name)
        time.sleep(0.05)
    assert not pending, {n: last[n].text for n in pending}
    return last


def test_runs_stopped_as_soon_as_they_exist_end_cancelled_with_no_process_left(
    server: ServerProcess, no_leftovers
):
    api = server.api()
    names = [f"s{i}" for i in range(RUNS)]
    for name in names:
        assert api.post("/experiments", json=experiment(name, "sleep 120")).status_code == 201
        wait_run_exists(api, name)
        assert api.post(f"/runs/{name}/stop").status_code == 200
    final = wait_all(
        api, names, lambda r: r.json()["status"].get("phase") in ("Succeeded", "Failed", "Cancelled")
    )
    assert {n: r.json()["status"]["phase"] for n, r in final.items()} == dict.fromkeys(names, "Cancelled")
    wait_until_gone(server.home)


def test_runs_deleted_as_soon_as_they_exist_leave_no_record_and_no_process(
    server: ServerProcess, no_leftovers
):
    api = server.api()
    names = [f"d{i}" for i in range(RUNS)]
    for name in names:
        assert api.post("/experiments", json=experiment(name, "sleep 120")).status_code == 201
        wait_run_exists(api, name)
        assert api.delete(f"/runs/{name}").status_code == 200
    wait_all(api, names, lambda r: r.status_code == 404)
    wait_until_gone(server.home)


@pytest.mark.parametrize("stop", [True, False], ids=["stopped", "not stopped"])
def test_a_launch_whose_handle_was_never_stored_is_found_after_a_restart(tmp_path: Path, stop: bool):
    """The controller died after launching, before storing the handle: the run reads Starting. A
    restarted controller adopts the process (launches are idempotent per attempt), and a stop that
    landed meanwhile reaches it."""
    platform = Platform(tmp_path / "home")  # its controller not started yet: as if it had just died
    try:
        run = Run(
            metadata=ObjectMeta(name="orphan", project=PROJECT),
            spec=RunSpec(command="sleep 120", stopRequested=stop),
            status=RunStatus(phase=Phase.STARTING, attempts=[Attempt(attempt=1)]),
        )
        run = platform.store.create(run)
        spec = LaunchSpec(
            run_uid=run.uid, project=PROJECT, name="orphan", attempt=1, argv=["sleep", "120"], env={}
        )
        handle = platform.runtime.launch(spec)
        platform.controller.start()
        if stop:
            done = platform.wait_phase("orphan", "Cancelled")
            assert done.status.attempts[-1].handle == handle
            wait_until_gone(platform.home)
        else:
            running = platform.wait_phase("orphan", "Running")
            assert running.status.attempts[-1].handle == handle
            assert len(run_processes(platform.home)) == 1  # adopted, not launched twice
    finally:
        platform.close()


def test_deleting_a_run_whose_launch_handle_was_never_stored_stops_it_and_removes_its_files(tmp_path: Path):
    """As above, but a delete lands before the restarted controller looks: the process is stopped, and
    the attempt's files go with the record even though no handle was ever stored."""
    platform = Platform(tmp_path / "home")
    try:
        run = Run(
            metadata=ObjectMeta(name="orphan", project=PROJECT),
            spec=RunSpec(command="sleep 120"),
            status=RunStatus(phase=Phase.STARTING, attempts=[Attempt(attempt=1)]),
        )
        run = platform.store.create(run)
        spec = LaunchSpec(
            run_uid=run.uid, project=PROJECT, name="orphan", attempt=1, argv=["sleep", "120"], env={}
        )
        attempt_dir = Path(platform.runtime.launch(spec)["dir"])
        platform.store.mark_deleted(run)
        platform.controller.start()
        wait_until_gone(platform.home)
        deadline = time.monotonic() + 20
        while platform.store.get_uid(run.uid) is not None or attempt_dir.exists():
            assert time.monotonic() < deadline, f"record or {attempt_dir} still there"
            time.sleep(0.05)
    finally:
        platform.close()
