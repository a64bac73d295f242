#!/usr/bin/env python3
"""Objects at scale: a real `runyard server` (SQLite or PostgreSQL) holding --objects Jobs in one project.

  creates     POST --objects Jobs into one project from --clients concurrent clients (threads, one kept-alive
              connection each): creates/s. Then the same clients each writing into a project of their own,
              which on PostgreSQL shows what the change feed's write lock costs across projects.
  idle        the server's CPU while nobody calls it, holding them (the controller's resyncs)
  list        every Job through the API in pages of 500 (what the CLI and the Client ask for): ms per list
  cli         `runyard get jobs` over them, run as users run it (a subprocess): ms per command
  watch       a watch from a list's revision while Jobs are created one at a time: ms from each Job's
              creationTimestamp (set before its commit, so an upper bound on the delay after the commit)
              to its line arriving at the watcher
  store-writes  (PostgreSQL) --clients processes writing status through the Store directly, all in one
              project or each in its own: writes/s of the store alone, without the API's CPU in front
The server's CPU per create and per list is given too (steadier than wall time on a shared machine; it
includes the controller's work meanwhile). Each timed part runs --repeat times; the JSON gives medians
(and the spread) with the targets, met or not: creates >= 1,000/s, list <= 250 ms, `runyard get jobs`
<= 1 s, watch p50 <= 10 ms.

Run:  python bench/store.py [--store sqlite|postgres|both] [--objects 5000] [--clients 8] [--repeat 5]
      (PostgreSQL: RUNYARD_TEST_POSTGRES_URL names a server where the bench may create a database)
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import API, ServerProcess, emit_json, fresh_postgres_database  # noqa: E402

PAGE = 500
TARGETS = {"creates_per_s": 1000, "list_ms": 250, "cli_get_ms": 1000, "watch_p50_ms": 10}


def job(name: str) -> bytes:
    doc = {
        "apiVersion": "runyard.dev/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"team": "bench", "shard": str(hash(name) % 8)}},
        "spec": {"schedule": "0 3 * * *", "template": {"command": "python train.py --epochs 3"}},
    }
    return json.dumps(doc).encode()


class Conn:
    """One kept-alive HTTP/1.1 connection with the token: lighter than a full client, so the bench's own
    CPU stays small beside the server's on a shared machine."""

    def __init__(self, srv: ServerProcess):
        u = urllib.parse.urlsplit(srv.url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        self.headers = {"Authorization": f"Bearer {srv.token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        self.conn.request(method, API + path, body=body, headers=self.headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()


def server_cpu(srv: ServerProcess) -> float:
    """CPU seconds the server process has used: the API and the controller (which also reads the store);
    on a shared machine a steadier measure than wall time."""
    t = psutil.Process(srv.proc.pid).cpu_times() if srv.proc else None
    return t.user + t.system if t else 0.0


def create_many(srv: ServerProcess, projects: list[str], names: list[str], clients: int) -> float:
    """Create names[i] in projects[i % len(projects)] from `clients` threads; returns creates/s."""
    errors: list[str] = []

    def worker(k: int) -> None:
        c = Conn(srv)
        for i in range(k, len(names), clients):
            status, body = c.call("POST", f"/projects/{projects[i % len(projects)]}/jobs", job(names[i]))
            if status != 201:
                errors.append(f"{status} {body[:200]!r}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} creates failed, e.g. {errors[0]}")
    return len(names) / elapsed


def list_all(srv: ServerProcess, project: str) -> tuple[float, int]:
    c = Conn(srv)
    t0 = time.perf_counter()
    n, token = 0, None
    while True:
        q = {"limit": PAGE, **({"continue": token} if token else {})}
        status, body = c.call("GET", f"/projects/{project}/jobs?{urllib.parse.urlencode(q)}")
        assert status == 200, body[:300]
        page = json.loads(body)
        n += len(page["items"])
        token = page["metadata"]["continue"]
        if not token:
            return time.perf_counter() - t0, n


def cli_get(srv: ServerProcess, project: str) -> float:
    cmd = [sys.executable, "-m", "runyard", "-p", project, "get", "jobs"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=srv.env(), capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"runyard get jobs failed: {out.stderr[-500:]}")
    return elapsed


def watch_latencies(srv: ServerProcess, project: str, count: int) -> list[float]:
    """Create `count` Jobs one at a time, each after the watcher received the previous one."""
    c = Conn(srv)
    _, body = c.call("GET", f"/projects/{project}/jobs?limit=1")
    revision = json.loads(body)["metadata"]["revision"]
    lines: queue.Queue[tuple[float, dict]] = queue.Queue()
    stream = Conn(srv)
    stream.conn.request(
        "GET", f"{API}/projects/{project}/jobs?watch=true&since={revision}", headers=stream.headers
    )
    resp = stream.conn.getresponse()

    def read() -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):  # the stream closed at the end
            for raw in resp:
                if raw.strip():
                    lines.put((time.time(), json.loads(raw)))

    threading.Thread(target=read, daemon=True).start()
    out = []
    for i in range(count):
        name = f"watched-{i}"
        status, _ = c.call("POST", f"/projects/{project}/jobs", job(name))
        assert status == 201
        while True:
            got_at, event = lines.get(timeout=10)
            obj = event["object"]
            if event["type"] == "ADDED" and obj["metadata"]["name"] == name:
                created = datetime.fromisoformat(obj["metadata"]["creationTimestamp"]).timestamp()
                out.append(got_at - created)
                break
    stream.conn.close()
    return out


def _status_writer(url: str, project: str, seconds: float, ready, counts) -> None:
    from runyard.core.resources import parse_workload
    from runyard.store import Store

    store = Store(url, migrate=False)
    doc = json.loads(job(f"w-{os.getpid()}"))
    doc["metadata"]["project"] = project
    res = store.create(parse_workload(doc))
    ready.wait()  # every process imported and connected: start together
    n, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        res = store.update_status(res)
        n += 1
    counts.put(n)
    store.close()


def store_writes(url: str, clients: int, spread: bool, seconds: float = 3.0) -> float:
    """Status writes/s of `clients` processes through the Store: one project, or one project each."""
    counts: multiprocessing.Queue = multiprocessing.Queue()
    ready = multiprocessing.Barrier(clients)
    procs = [
        multiprocessing.Process(
            target=_status_writer, args=(url, f"s{k}" if spread else "s", seconds, ready, counts)
        )
        for k in range(clients)
    ]
    for p in procs:
        p.start()
    total = sum(counts.get(timeout=120) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def settle(srv: ServerProcess, quiet: float = 0.05, timeout: float = 120.0) -> None:
    """Wait (at most `timeout`) until a one-second window of the server's CPU is under `quiet` of a core."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cpu = server_cpu(srv)
        time.sleep(1)
        if server_cpu(srv) - cpu < quiet:
            return


def median_of(xs: list[float], scale: float = 1.0, digits: int = 1) -> dict:
    return {
        "median": round(statistics.median(xs) * scale, digits),
        "min": round(min(xs) * scale, digits),
        "max": round(max(xs) * scale, digits),
        "n": len(xs),
    }


def bench_store(kind: str, args: argparse.Namespace) -> dict:
    url = fresh_postgres_database() if kind == "postgres" else None
    home = Path(tempfile.mkdtemp(prefix="runyard-bench-store-"))
    srv = ServerProcess(home, url).start()
    result: dict = {"store": kind}
    try:
        for p in ["bench", *[f"w{k}" for k in range(args.clients)]]:
            Conn(srv).call("POST", "/projects", json.dumps({"name": p}).encode())
        names = [f"job-{i:05d}" for i in range(args.objects)]
        cpu = server_cpu(srv)
        result["creates_per_s_one_project"] = round(create_many(srv, ["bench"], names, args.clients), 1)
        result["server_cpu_ms_per_create"] = round((server_cpu(srv) - cpu) * 1000 / args.objects, 3)
        spread = [f"w{k}" for k in range(args.clients)]
        per_project = [f"spread-{i:05d}" for i in range(args.spread_objects)]
        result["creates_per_s_a_project_per_client"] = round(
            create_many(srv, spread, per_project, args.clients), 1
        )
        settle(srv)  # the controller first writes the status of every new Job: that backlog is not idling
        cpu, t0 = server_cpu(srv), time.perf_counter()
        time.sleep(3)  # a measurement window, not a wait for anything: the server's CPU while idle
        idle = (server_cpu(srv) - cpu) / (time.perf_counter() - t0)
        result["server_idle_cpu_percent"] = round(idle * 100, 1)
        cpu = server_cpu(srv)
        lists = [list_all(srv, "bench") for _ in range(args.repeat)]
        result["server_cpu_ms_per_list"] = round((server_cpu(srv) - cpu) * 1000 / args.repeat, 1)
        assert all(n == args.objects for _, n in lists), [n for _, n in lists]
        result["list_ms"] = median_of([t for t, _ in lists], 1000)
        result["cli_get_ms"] = median_of([cli_get(srv, "bench") for _ in range(args.repeat)], 1000)
        lat = sorted(watch_latencies(srv, "bench", args.watch_count))
        result["watch_ms"] = {
            "p50": round(statistics.median(lat) * 1000, 2),
            "p90": round(lat[int(0.9 * (len(lat) - 1))] * 1000, 2),
            "max": round(lat[-1] * 1000, 2),
            "n": len(lat),
        }
    finally:
        srv.stop()
    if url:
        result["store_writes_per_s"] = {
            "one_project": round(store_writes(url, args.clients, spread=False)),
            "a_project_per_client": round(store_writes(url, args.clients, spread=True)),
        }
    result["targets"] = {
        "creates_per_s >= 1000": result["creates_per_s_one_project"] >= TARGETS["creates_per_s"],
        "list_ms <= 250": result["list_ms"]["median"] <= TARGETS["list_ms"],
        "cli_get_ms <= 1000": result["cli_get_ms"]["median"] <= TARGETS["cli_get_ms"],
        "watch_p50_ms <= 10": result["watch_ms"]["p50"] <= TARGETS["watch_p50_ms"],
    }
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--objects", type=int, default=5000)
    ap.add_argument("--spread-objects", type=int, default=2000, help="creates spread over a project each")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--watch-count", type=int, default=50)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    kinds = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    result = {
        "objects": args.objects,
        "clients": args.clients,
        "cpus": os.cpu_count(),
        "results": [bench_store(k, args) for k in kinds],
    }
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
