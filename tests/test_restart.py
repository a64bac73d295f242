"""kill -9 of the server at any moment loses no accepted run and runs nothing twice (real processes)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from tests.support import (
    ServerProcess,
    experiment,
    fresh_postgres_database,
    kill_run_processes,
    read_logs,
    wait_phase,
)


def restart(srv: ServerProcess) -> ServerProcess:
    srv.kill9()
    return ServerProcess(srv.home, srv.store_url).start()


def ledger(home: Path) -> list[str]:
    """What runs appended to `ledger` in their work directories (a sandboxed run writes nowhere else): a
    launch repeated for the same attempt appends twice to the same file, another attempt to another."""
    return [line for f in sorted(home.glob("runs/*/attempt-*/work/ledger")) for line in f.read_text().split()]


def test_a_running_run_is_adopted_after_kill_9_with_its_logs_intact(server_factory):
    srv = server_factory()
    cmd = "echo once >> ledger; for i in $(seq 1 30); do echo line $i; sleep 0.05; done"
    srv.api().put("/experiments/survivor", json=experiment("survivor", cmd))
    wait_phase(srv.api(), "survivor", {"Running"})
    time.sleep(0.3)
    srv = restart(srv)
    lines, end = read_logs(srv.api(), "survivor")
    assert [entry["text"] for entry in lines] == [f"line {i}" for i in range(1, 31)]
    assert (end["phase"], end["exitCode"]) == ("Succeeded", 0)
    assert ledger(srv.home) == ["once"]
    srv.stop()


def test_a_run_that_finished_while_the_server_was_down_keeps_its_exit_code(server_factory):
    srv = server_factory()
    srv.api().put("/experiments/quick", json=experiment("quick", "sleep 0.5; exit 4"))
    wait_phase(srv.api(), "quick", {"Running"})
    srv.kill9()
    time.sleep(1.0)
    srv = ServerProcess(srv.home, srv.store_url).start()
    run = wait_phase(srv.api(), "quick", {"Failed"})
    assert (run["status"]["exitCode"], run["status"]["reason"]) == (4, "Error")
    srv.stop()


def test_a_run_whose_process_vanished_while_down_fails_with_a_clear_reason(server_factory):
    srv = server_factory()
    srv.api().put("/experiments/victim", json=experiment("victim", "echo hi; sleep 60"))
    run = wait_phase(srv.api(), "victim", {"Running"})
    srv.kill9()
    handle = run["status"]["attempts"][-1]["handle"]
    state = json.loads(Path(handle["dir"], "state.json").read_text())
    os.kill(handle["shim_pid"], signal.SIGKILL)  # as if the host had rebooted
    kill_run_processes(state)
    srv = ServerProcess(srv.home, srv.store_url).start()
    run = wait_phase(srv.api(), "victim", {"Failed"})
    assert run["status"]["reason"] == "ProcessLost"
    assert "gone" in run["status"]["message"]
    lines, _ = read_logs(srv.api(), "victim", follow=False)
    assert [entry["text"] for entry in lines] == ["hi"]
    srv.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_9_during_a_burst_of_submits_loses_nothing_accepted_and_runs_nothing_twice(
    backend, server_factory, tmp_path, request
):
    store_url = None
    if backend == "postgres":
        store_url = fresh_postgres_database()
    srv = server_factory(store_url=store_url)
    accepted: list[str] = []
    stop = threading.Event()

    def submit() -> None:
        api = srv.api()
        for i in range(200):
            if stop.is_set():
                return
            name = f"b{i}"
            try:
                r = api.post(
                    "/experiments",
                    json=experiment(name, f"echo {name} >> ledger"),
                    headers={"Idempotency-Key": name},
                )
            except httpx.HTTPError:
                return
            if r.status_code == 201:
                accepted.append(name)

    t = threading.Thread(target=submit)
    t.start()
    while len(accepted) < 15:
        time.sleep(0.01)
    srv.kill9()
    stop.set()
    t.join()
    srv = server_factory(store_url=store_url, home=srv.home)
    api = srv.api()
    for name in accepted:
        assert wait_phase(api, name, {"Succeeded", "Failed"})["status"]["phase"] == "Succeeded", name
    ran = ledger(srv.home)
    assert set(accepted) <= set(ran), "an accepted run never ran"
    assert len(ran) == len(set(ran)), "a run executed twice"
    runs = api.get("/runs").json()["items"]
    assert len(runs) == len({r["metadata"]["name"] for r in runs})
