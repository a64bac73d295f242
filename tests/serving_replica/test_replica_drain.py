"""SIGTERM drains a replica: under load, with another replica on the same socket, no request fails."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path

from tests.serving_replica.replica_support import AccessServer, Replica, client
from tests.support import until

from runyard.serving import replica_admin


def test_drain_under_load_fails_no_request(listener: socket.socket, project: Path, access: AccessServer):
    env = {"RUNYARD_MODEL_HANDLER": "handlers:slow"}  # async: many requests in flight at once
    old = Replica(listener, project, access.url, **env).wait_ready()
    new = Replica(listener, project, access.url, **env).wait_ready()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    served: Counter[int] = Counter()
    failures: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def hammer() -> None:
        while not stop.is_set():
            with client(base) as c:  # keep-alive connections, a new one now and then (to reach both)
                for _ in range(20):
                    try:
                        r = c.post("/predict", json={"x": 1, "sleep": 0.02})
                        r.raise_for_status()
                        with lock:
                            served[r.json()["pid"]] += 1
                    except Exception as e:
                        with lock:
                            failures.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        until(lambda: served[old.proc.pid] >= 20 and served[new.proc.pid] >= 20, "both replicas serve")
        old.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        until(lambda: old.proc.poll() is not None, "the old replica exited", timeout=15)
        drained_in = time.monotonic() - started
        after = served[new.proc.pid]
        until(lambda: served[new.proc.pid] >= after + 100, "the new replica serves everything")
    finally:
        stop.set()
        for t in threads:
            t.join()
        old.stop()
        new.stop()
    assert old.proc.returncode == 0, old.output()
    assert "draining" in old.output() and "drained" in old.output()
    assert failures == [], failures[:5]
    assert drained_in < 5
    assert set(served) == {old.proc.pid, new.proc.pid}


def test_drain_answers_a_slow_request(listener: socket.socket, project: Path, access: AccessServer):
    r = Replica(listener, project, access.url, RUNYARD_MODEL_HANDLER="handlers:slow").wait_ready()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    result: dict = {}

    def call() -> None:
        with client(base) as c:
            result["response"] = c.post("/predict", json={"x": 4, "sleep": 1.0})

    t = threading.Thread(target=call)
    t.start()
    try:
        until(lambda: r.metrics()["in_flight"] == 1, "the request is in flight")
        r.proc.send_signal(signal.SIGTERM)
        until(lambda: not r.ready(), "no longer ready once draining")
        t.join()
        response = result["response"]
        assert response.status_code == 200 and response.json()["y"] == 8
        assert response.headers["connection"] == "close"
        assert r.proc.wait(timeout=10) == 0
    finally:
        t.join()
        r.stop()
    # the socket still listens for the others: a new replica serves it
    other = Replica(listener, project, access.url, RUNYARD_MODEL_HANDLER="handlers:predict").wait_ready()
    try:
        with client(base) as c:
            assert c.post("/predict", json={"x": 1}).json()["pid"] == other.proc.pid
    finally:
        other.stop()


def test_a_loading_replica_takes_no_connection_and_a_stop_ends_it(
    listener: socket.socket, project: Path, access: AccessServer
):
    (project / "slowload.py").write_text("import time\ntime.sleep(120)\nfrom handlers import predict\n")
    serving = Replica(listener, project, access.url, RUNYARD_MODEL_HANDLER="handlers:predict").wait_ready()
    loading = Replica(listener, project, access.url, RUNYARD_MODEL_HANDLER="slowload:predict")
    try:
        until(lambda: _admin_status(loading) == 503, "the loading replica answers /ready with 503")
        with client(f"http://127.0.0.1:{listener.getsockname()[1]}") as c:
            for _ in range(30):  # a new connection each time: any replica accepting would get some
                r = c.post("/predict", json={"x": 1}, headers={"Connection": "close"})
                assert r.json()["pid"] == serving.proc.pid
        loading.proc.send_signal(signal.SIGTERM)
        assert loading.proc.wait(timeout=10) == 0
    finally:
        loading.stop()
        serving.stop()


def _admin_status(replica: Replica) -> int | None:
    try:
        return replica_admin.get(replica.admin, "/ready")[0]
    except OSError:
        return None


def test_drain_loses_no_connection_the_loop_accepted_just_before_it(
    listener: socket.socket, project: Path, access: AccessServer
):
    """A fresh connection per request (as Connection: close clients do) while a replica drains: none is
    reset. A connection the loop has accepted but not yet made when the drain begins must be served (CI
    saw one reset in a rolling update; this test did not reproduce it on an idle machine)."""
    env = {"RUNYARD_MODEL_HANDLER": "handlers:slow"}
    old = Replica(listener, project, access.url, **env).wait_ready()
    new = Replica(listener, project, access.url, **env).wait_ready()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with client(base) as c:
            while not stop.is_set():
                try:
                    c.post("/predict", json={"x": 1}, headers={"Connection": "close"}).raise_for_status()
                except Exception as e:
                    failures.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=hammer) for _ in range(12)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)  # not a wait for anything: the load runs a moment before the drain
        old.proc.send_signal(signal.SIGTERM)
        until(lambda: old.proc.poll() is not None, "the old replica exited", timeout=15)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
        old.stop()
        new.stop()
    assert old.proc.returncode == 0, old.output()
    assert failures == [], failures[:5]
