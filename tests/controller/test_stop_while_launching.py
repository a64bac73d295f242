"""A stop or a delete that lands while a run is being launched reaches what was launched, whatever the
interleaving: over HTTP, against a real server, with real processes."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psutil
import pytest
from tests.support import ServerProcess, experiment

RUNS = 40


def run_processes(home: Path) -> list[psutil.Process]:
    """Live processes started for runs of the server in `home` (their working directory lies in it; the
    shims that supervise them work in /)."""
    found = []
    for proc in psutil.process_iter(["cwd", "status"]):
        cwd = proc.info["cwd"]
        if cwd and cwd.startswith(str(home) + "/") and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


@pytest.fixture(autouse=True)
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


def test_runs_stopped_as_soon_as_they_exist_end_cancelled_with_no_process_left(server: ServerProcess):
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


def test_runs_deleted_as_soon_as_they_exist_leave_no_record_and_no_process(server: ServerProcess):
    api = server.api()
    names = [f"d{i}" for i in range(RUNS)]
    for name in names:
        assert api.post("/experiments", json=experiment(name, "sleep 120")).status_code == 201
        wait_run_exists(api, name)
        assert api.delete(f"/runs/{name}").status_code == 200
    wait_all(api, names, lambda r: r.status_code == 404)
    wait_until_gone(server.home)
