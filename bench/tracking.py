#!/usr/bin/env python3
"""Tracking, side by side with MLflow's own tracking server, in the same run on the same machine.

Both servers are driven by the same raw-HTTP client (one kept-alive http.client connection) on MLflow's
REST paths. Rates count the time from a request's first byte sent to its answer read: the bodies are
built and encoded before (the same work for either server, and on a small machine it would take the CPU
from the server under test). The ceiling likewise counts its inserts, not the building of their rows.

  single      POST runs/log-metric, one call after another for --seconds: calls/s
  batch       POST runs/log-batch with 1,000 points a call (10 keys x 100 steps) for --seconds: points/s
  history     GET metrics/get-history of one metric with --history-points (10k) points: the first read
              after writing it and the p50 of the reads after (ms); a fresh history each repeat
  ceiling     the same 1,000-point batches inserted straight into SQLite (executemany, one transaction a
              batch, same table, index and pragmas as runyard's): points/s, the most any server could do
  scale       runyard only, on SQLite and (with RUNYARD_TEST_POSTGRES_URL) PostgreSQL: --scale-points
              (1,000,000) points into one run (10 keys; the write rate of the first and the last tenth),
              a 100k-point history read; --scale-runs (1,000) runs with params, metrics and tags, and a
              filtered, sorted search over them
MLflow runs as `mlflow server --backend-store-uri sqlite:///... --workers 1` (one process, as runyard is)
and stock (its default workers); each ratio is taken against the better of the two. Every timed part runs
--repeat times; the JSON gives medians, the spread, the machine's load before and after, and the targets:
single >= 1,000/s and >= 50x MLflow; batch >= 10x MLflow and >= 50% of the ceiling; history >= 20x
faster; 100k history <= 200 ms; search over 1,000 runs <= 200 ms.

Run:  python bench/tracking.py [--seconds 5] [--repeat 3] [--store sqlite|postgres|both] [--out FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import ServerProcess, emit_json, fresh_postgres_database  # noqa: E402

from runyard.store.tracking_points import CHECKPOINT_PAGES  # noqa: E402

MLFLOW = "/api/2.0/mlflow"
TARGETS = {
    "single_calls_per_s": 1000,
    "single_vs_mlflow": 50,
    "batch_vs_mlflow": 10,
    "batch_vs_ceiling": 0.5,
    "history_vs_mlflow": 20,
    "history_100k_ms": 200,
    "search_1000_runs_ms": 200,
}

RAW_TABLE = (
    "CREATE TABLE tracking_metrics (run_id INTEGER NOT NULL, key VARCHAR(250) NOT NULL, "
    "step BIGINT NOT NULL, "
    '"timestamp" BIGINT NOT NULL, value FLOAT NOT NULL, is_nan BOOLEAN NOT NULL)'
)
RAW_INSERT = (
    'INSERT INTO tracking_metrics (run_id, key, step, "timestamp", value, is_nan) VALUES (?,?,?,?,?,?)'
)


class Conn:
    """One kept-alive HTTP/1.1 connection: the same client for runyard and for MLflow."""

    def __init__(self, base: str, token: str | None = None):
        u = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: dict | bytes | None = None) -> bytes:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        try:
            self.conn.request(method, MLFLOW + path, body=data, headers=self.headers)
            resp = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # the server closed the kept-alive connection between two calls: once more, on a new one
            self.conn.close()
            self.conn.request(method, MLFLOW + path, body=data, headers=self.headers)
            resp = self.conn.getresponse()
        out = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{method} {path}: {resp.status} {out[:300]!r}")
        return out

    def post(self, path: str, body: dict | bytes) -> dict:
        return json.loads(self.call("POST", path, body))

    def close(self) -> None:
        self.conn.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def batch_points(i: int, n: int = 1000, keys: int = 10) -> list[dict]:
    """Call i's points: `keys` keys x n/keys consecutive steps (the shape the MLflow peer bench uses)."""
    steps, ts = n // keys, now_ms()
    return [
        {"key": f"k{k}", "value": float(s) / 7, "timestamp": ts, "step": i * steps + s}
        for s in range(steps)
        for k in range(keys)
    ]


def new_run(c: Conn, experiment_id: str, name: str) -> str:
    body = {"experiment_id": experiment_id, "run_name": name, "start_time": now_ms()}
    return c.post("/runs/create", body)["run"]["info"]["run_id"]


def timed(seconds: float, prepare, send) -> tuple[int, float]:
    """send(prepare(i)) for about `seconds`: (calls, seconds spent in send). What the client builds and
    encodes is left out (the same for every server, and on a small machine it competes with the server
    for the CPU): what is measured is each request from its first byte sent to its answer read."""
    end, i, spent = time.perf_counter() + seconds, 0, 0.0
    while time.perf_counter() < end:
        item = prepare(i)
        t = time.perf_counter()
        send(item)
        spent += time.perf_counter() - t
        i += 1
    return i, spent


def history_ms(c: Conn, run_id: str, key: str, points: int, reps: int) -> tuple[float, float, float]:
    """(the first read after the history was written, the median of `reps` reads after it, and that
    median up to the last byte received, before the client parses it), in ms. Reads include parsing the
    answer, as a client must. runyard keeps a history it has encoded until a point is added, so its
    first read is the one that reads the store."""
    path = "/metrics/get-history?" + urllib.parse.urlencode({"run_id": run_id, "metric_key": key})
    t = time.perf_counter()
    got = json.loads(c.call("GET", path))
    first = time.perf_counter() - t
    assert len(got["metrics"]) == points and not got.get("next_page_token"), len(got["metrics"])
    parsed, received = [], []
    for _ in range(reps):
        t = time.perf_counter()
        body = c.call("GET", path)
        received.append(time.perf_counter() - t)
        json.loads(body)
        parsed.append(time.perf_counter() - t)
    return first * 1000, statistics.median(parsed) * 1000, statistics.median(received) * 1000


def head_to_head(base: str, token: str | None, args: argparse.Namespace, with_ceiling: bool = False) -> dict:
    """The three figures both servers are compared on, each --repeat times. `with_ceiling`: the raw
    insert ceiling measured right after each batch phase, so that both see the same machine (the ratio
    of each pair, then their median)."""
    c = Conn(base, token)
    exp = c.post("/experiments/create", {"name": f"bench-{time.time_ns()}"})["experiment_id"]
    warm = new_run(c, exp, "warm")
    for i in range(20):
        c.post(
            "/runs/log-metric", {"run_id": warm, "key": "w", "value": 1.0, "timestamp": now_ms(), "step": i}
        )
    c.post("/runs/log-batch", {"run_id": warm, "metrics": batch_points(0)})
    single, batch, history, history_first, raw, ratios = [], [], [], [], [], []
    for r in range(args.repeat):
        rid = new_run(c, exp, f"single-{r}")

        def metric(i: int, rid: str = rid) -> bytes:
            return json.dumps(
                {"run_id": rid, "key": "m", "value": i / 3, "timestamp": now_ms(), "step": i}
            ).encode()

        n, spent = timed(args.seconds, metric, lambda body: c.post("/runs/log-metric", body))
        single.append(n / spent)
        rid = new_run(c, exp, f"batch-{r}")

        def batch_body(i: int, rid: str = rid) -> bytes:
            return json.dumps({"run_id": rid, "metrics": batch_points(i)}).encode()

        n, spent = timed(args.seconds, batch_body, lambda body: c.post("/runs/log-batch", body))
        batch.append(n * 1000 / spent)
        if with_ceiling:
            raw.append(ceiling(args.seconds))
            ratios.append(batch[-1] / raw[-1])
    for r in range(args.repeat):
        rid = new_run(c, exp, f"history-{r}")
        for start in range(0, args.history_points, 1000):
            pts = [
                {"key": "loss", "value": 1.0 / (s + 1), "timestamp": now_ms(), "step": s}
                for s in range(start, min(args.history_points, start + 1000))
            ]
            c.post("/runs/log-batch", {"run_id": rid, "metrics": pts})
        first, again, _ = history_ms(c, rid, "loss", args.history_points, args.history_reps)
        history_first.append(first)
        history.append(again)
    c.close()
    out = {
        "single_calls_per_s": summary(single),
        "batch_points_per_s": summary(batch),
        "history_10k_p50_ms": summary(history),
        "history_10k_first_read_ms": summary(history_first),
    }
    if with_ceiling:
        out["ceiling_points_per_s"] = summary(raw)
        out["batch_vs_ceiling"] = {
            "median": round(statistics.median(ratios), 2),
            "min": round(min(ratios), 2),
            "max": round(max(ratios), 2),
        }
    return out


def summary(xs: list[float]) -> dict:
    return {"median": round(statistics.median(xs), 1), "min": round(min(xs), 1), "max": round(max(xs), 1)}


def ceiling(seconds: float) -> float:
    """Raw batched inserts of the same rows into SQLite (runyard's metrics table, its index and pragmas):
    points/s."""
    with tempfile.TemporaryDirectory() as d:
        db = sqlite3.connect(os.path.join(d, "raw.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")  # as runyard's connection for points
        db.execute(RAW_TABLE)
        db.execute('CREATE INDEX ix ON tracking_metrics (run_id, key, step, "timestamp", value, is_nan)')

        def rows(i: int) -> list[tuple]:
            return [(1, p["key"], p["step"], p["timestamp"], p["value"], False) for p in batch_points(i)]

        def insert(batch: list[tuple]) -> None:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(RAW_INSERT, batch)
            db.execute("COMMIT")

        n, spent = timed(seconds, rows, insert)
        db.close()
    return n * 1000 / spent


def scale(base: str, token: str, args: argparse.Namespace) -> dict:
    """runyard alone: a run with --scale-points points, its 100k history; a search over --scale-runs runs."""
    c = Conn(base, token)
    exp = c.post("/experiments/create", {"name": f"scale-{time.time_ns()}"})["experiment_id"]
    rid = new_run(c, exp, "million")
    calls = args.scale_points // 1000
    tenth = max(1, calls // 10)
    rates = []
    t0 = time.perf_counter()
    for i in range(calls):
        # 10 keys x 100 steps a call: each key gets scale_points / 10 points
        c.post("/runs/log-batch", {"run_id": rid, "metrics": batch_points(i)})
        if (i + 1) % tenth == 0:
            t1 = time.perf_counter()
            rates.append(tenth * 1000 / (t1 - t0))
            t0 = t1
    per_key = args.scale_points // 10
    first, again, received = history_ms(c, rid, "k3", per_key, args.history_reps * args.repeat)
    search_exp = c.post("/experiments/create", {"name": f"search-{time.time_ns()}"})["experiment_id"]
    for r in range(args.scale_runs):
        run = new_run(c, search_exp, f"r{r}")
        c.post(
            "/runs/log-batch",
            {
                "run_id": run,
                "metrics": [
                    {"key": f"m{k}", "value": float((r * (k + 1)) % 97), "timestamp": now_ms(), "step": 0}
                    for k in range(5)
                ],
                "params": [{"key": f"p{k}", "value": str(r % (k + 2))} for k in range(5)],
                "tags": [{"key": "team", "value": "blue" if r % 3 else "red"}],
            },
        )
    query = {
        "experiment_ids": [search_exp],
        "filter": "metrics.m1 > 20 AND params.p1 = '1' AND tags.team = 'blue'",
        "order_by": ["metrics.m3 DESC"],
        "max_results": 1000,
    }
    found = len(c.post("/runs/search", query)["runs"])
    search = []
    for _ in range(args.repeat * 3):
        t = time.perf_counter()
        c.post("/runs/search", query)
        search.append((time.perf_counter() - t) * 1000)
    everything = {"experiment_ids": [search_exp], "order_by": ["metrics.m3 DESC"], "max_results": 1000}
    all_runs = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        got = c.post("/runs/search", everything)
        all_runs.append((time.perf_counter() - t) * 1000)
    assert len(got["runs"]) == args.scale_runs
    c.close()
    return {
        "points_in_run": args.scale_points,
        "batch_points_per_s_first_tenth": round(rates[0]),
        "batch_points_per_s_last_tenth": round(rates[-1]),
        f"history_{per_key // 1000}k_p50_ms": round(again, 1),
        f"history_{per_key // 1000}k_first_read_ms": round(first, 1),
        f"history_{per_key // 1000}k_p50_received_ms": round(received, 1),
        "search_filtered_sorted_ms": summary(search),
        "search_matches": found,
        "search_all_1000_sorted_ms": summary(all_runs),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow(workdir: Path, workers: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--artifacts-destination", str(workdir / "artifacts")]
    if workers:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # stock starts a job consumer we do not measure
    log = open(workdir / "mlflow.log", "ab")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True, env=env, cwd=workdir)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(workdir / 'mlflow.log').read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                time.sleep(1.0)  # every worker up
                return proc, base
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("mlflow server did not start in time")


def stop(proc: subprocess.Popen) -> None:
    """The server's whole process group (its workers), by the group we started it in."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def ratio(a: float, b: float) -> float:
    return round(a / b, 1) if b else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each throughput phase")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--history-points", type=int, default=10_000)
    ap.add_argument("--history-reps", type=int, default=5, help="reads per history figure (its p50)")
    ap.add_argument("--scale-points", type=int, default=1_000_000)
    ap.add_argument("--scale-runs", type=int, default=1000)
    ap.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--skip-mlflow", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    result: dict = {
        "bench": "tracking",
        "load_before": os.getloadavg(),
        "cpus": os.cpu_count(),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
    }
    try:
        srv = ServerProcess(work / "runyard").start()
        try:
            result["runyard_sqlite"] = head_to_head(srv.url, srv.token, args, with_ceiling=True)
            if args.store in ("sqlite", "both"):
                result["scale_sqlite"] = scale(srv.url, srv.token, args)
        finally:
            srv.stop()
        if args.store in ("postgres", "both") and os.environ.get("RUNYARD_TEST_POSTGRES_URL"):
            pg = ServerProcess(work / "runyard-pg", fresh_postgres_database()).start()
            try:
                result["runyard_postgres"] = head_to_head(pg.url, pg.token, args)
                result["scale_postgres"] = scale(pg.url, pg.token, args)
            finally:
                pg.stop()
        if not args.skip_mlflow:
            for label, workers in (("mlflow_1_worker", 1), ("mlflow_stock", None)):
                d = work / label
                d.mkdir()
                proc, base = start_mlflow(d, workers)
                try:
                    result[label] = head_to_head(base, None, args)
                finally:
                    stop(proc)
            result["verdict"] = verdict(result)
    finally:
        result["load_after"] = os.getloadavg()
        shutil.rmtree(work, ignore_errors=True)
    emit_json(result, args.out)


def verdict(r: dict) -> dict:
    """Each target with the figure it is judged on (medians; MLflow's better configuration)."""
    ours = r["runyard_sqlite"]
    best = {
        k: (max if k != "history_10k_p50_ms" else min)(
            r[m][k]["median"] for m in ("mlflow_1_worker", "mlflow_stock")
        )
        for k in ("single_calls_per_s", "batch_points_per_s", "history_10k_p50_ms")
    }
    single = ours["single_calls_per_s"]["median"]
    batch = ours["batch_points_per_s"]["median"]
    history = ours["history_10k_p50_ms"]["median"]
    out = {
        "single_calls_per_s": [single, TARGETS["single_calls_per_s"]],
        "single_vs_mlflow": [ratio(single, best["single_calls_per_s"]), TARGETS["single_vs_mlflow"]],
        "batch_vs_mlflow": [ratio(batch, best["batch_points_per_s"]), TARGETS["batch_vs_mlflow"]],
        "batch_vs_ceiling": [ours["batch_vs_ceiling"]["median"], TARGETS["batch_vs_ceiling"]],
        "history_vs_mlflow": [ratio(best["history_10k_p50_ms"], history), TARGETS["history_vs_mlflow"]],
        "history_first_read_vs_mlflow": [
            ratio(best["history_10k_p50_ms"], ours["history_10k_first_read_ms"]["median"]),
            TARGETS["history_vs_mlflow"],
        ],
    }
    for store in ("sqlite", "postgres"):
        s = r.get(f"scale_{store}")
        if s:
            hist = next(v for k, v in s.items() if k.startswith("history_") and k.endswith("k_p50_ms"))
            cold = next(v for k, v in s.items() if k.endswith("k_first_read_ms"))
            out[f"history_100k_ms_{store}"] = [hist, TARGETS["history_100k_ms"]]
            out[f"history_100k_first_read_ms_{store}"] = [cold, TARGETS["history_100k_ms"]]
            out[f"search_1000_runs_ms_{store}"] = [s["search_filtered_sorted_ms"]["median"], 200]
    for k, (got, target) in out.items():
        lower_is_better = k.endswith("_ms") or "_ms_" in k
        out[k] = {"got": got, "target": target, "met": got <= target if lower_is_better else got >= target}
    return out


if __name__ == "__main__":
    main()
