"""One GPU, one run: under concurrent submits (SQLite and PostgreSQL) and across a kill -9 of the server.
The GPUs are a simulated inventory configured explicitly (no NVIDIA GPU here; see conftest.py)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from tests.capacity.conftest import capacity_server, nodes, span, timed
from tests.support import fresh_postgres_database, wait_phase

from runyard.store import Store
from runyard.store.allocations import Capacity, Demand, Holder


def test_eight_runs_submitted_at_once_share_two_gpus_without_ever_overlapping(tmp_path, store_url):
    srv = capacity_server(tmp_path / "home", None if store_url.startswith("sqlite") else store_url)
    try:
        names = [f"gpu-{i}" for i in range(8)]

        def submit(name: str) -> int:
            with srv.api() as api:  # each its own connection, all at once
                return api.put(
                    f"/experiments/{name}", json=timed(name, 0.3, resources={"gpu": 1})
                ).status_code

        with ThreadPoolExecutor(len(names)) as pool:
            assert set(pool.map(submit, names)) == {201}
        api = srv.api()
        spans = {name: span(api, name) for name in names}  # every one succeeded
        by_gpu: dict[str, list[tuple[float, float]]] = {}
        for gpus, start, end in spans.values():
            assert gpus in ("0", "1")
            by_gpu.setdefault(gpus, []).append((start, end))
        for held in by_gpu.values():
            held.sort()
            assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(held, held[1:], strict=False))
        assert sum(len(v) for v in by_gpu.values()) == 8
        assert nodes(srv)[0]["allocated"] == {"cpu": 0, "memory": 0, "gpu": 0}
    finally:
        srv.stop()


def test_gpus_go_back_to_the_pool_after_a_kill_9_while_their_runs_ended(tmp_path):
    """Runs holding both GPUs end while no server runs; the restarted server frees them (and the startup
    sweep frees a reservation of a run that is gone), so the next run gets a GPU. It restarts offering one
    GPU only: a queued run that asked for two fails then, rather than wait for ever."""
    home = tmp_path / "home"
    store_url = fresh_postgres_database()
    srv = capacity_server(home, store_url)
    api = srv.api()
    for name in ("held-a", "held-b"):
        api.put(f"/experiments/{name}", json=timed(name, 1.0, resources={"gpu": 1}))
    for name in ("held-a", "held-b"):
        wait_phase(api, name, {"Running"})
    api.put("/experiments/too-wide", json=timed("too-wide", 0.1, resources={"gpu": 2}))
    assert wait_phase(api, "too-wide", {"Queued"})["status"]["reason"] == "WaitingForResources"
    srv.kill9()
    deadline = time.monotonic() + 30  # the runs outlive the server, and end meanwhile
    while len(list(home.glob("runs/*/attempt-1/exit.json"))) < 2:  # what each run's shim writes at its end
        assert time.monotonic() < deadline
        time.sleep(0.05)
    store = Store(store_url)  # a crash between a reservation and its run's record leaves one like this
    gone = store.reserve(
        "local", Capacity(2, 1 << 30, (0, 1)), "gone-run", "default", "gone", Demand(cpu=0.5)
    )
    assert isinstance(gone, Holder)
    store.close()

    srv = capacity_server(home, store_url, RUNYARD_RUNTIME_SIMULATED_GPUS="1")  # the node now offers less
    try:
        api = srv.api()
        api.put("/experiments/after", json=timed("after", 0.1, resources={"gpu": 1}))
        assert span(api, "after")[0] == "0"
        wide = wait_phase(api, "too-wide", {"Failed"})["status"]  # it waited for what is no longer there
        assert (wide["reason"], wide["message"]) == (
            "Unschedulable",
            "requests 2 GPUs, but the node offers 1",
        )
        for name in ("held-a", "held-b"):
            assert api.get(f"/runs/{name}").json()["status"]["phase"] == "Succeeded"
        assert nodes(srv)[0]["allocated"] == {"cpu": 0, "memory": 0, "gpu": 0}
    finally:
        srv.stop()
