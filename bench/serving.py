#!/usr/bin/env python3
"""Model serving, side by side, in one run on one machine: the same scikit-learn model (iris
LogisticRegression(max_iter=500), one-row `dataframe_split` body, one worker process each) served

  runyard      through the model's URL (status.url) with a model access key: a Model whose handler is
               `predict:predict` in a project snapshot, one replica
  mlflow       `mlflow models serve` (stock, 1 worker)           ../shared/bench/peers/mlflow_serving.py
  ray          Ray Serve, 1 replica, max_ongoing_requests 100    ../shared/bench/peers/ray_serving.py
  fastapi      a bare FastAPI app calling the same predict: the ceiling   .../ceiling_serving.py

driven by the same closed-loop load generator (wrk, .../loadgen.py) at concurrency 1, 8 and 32: requests/s,
p50, p99. Then a rolling update under load at concurrency 32: the model's spec changes (a new version is
built and its replica started), traffic moves, the old replica drains; failed requests (target 0) and the
p99 over the switch.

Targets (issue 9): runyard >= 10x MLflow's requests/s at concurrency 32 and <= 1/10 of its p99; >= 80% of
the bare FastAPI app's requests/s; runyard's URL (authentication included) adds <= 1 ms p50 at concurrency 1
over the bare app; 0 failed requests in the rolling update.

The peers need their own virtual environments (the peers' setup-mlflow.sh / setup-ray.sh, run once, a few
minutes) and `wrk` (apt-get install wrk); --peers none measures runyard alone.

Run:  python bench/serving.py [--duration 10] [--peers mlflow,ray,fastapi] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support import API, ServerProcess, emit_json, resource, until  # noqa: E402

from runyard.client import Client  # noqa: E402

PEERS_SRC = ROOT.parent / "shared" / "bench" / "peers"
BODY = {
    "dataframe_split": {
        "columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
        "data": [[5.1, 3.5, 1.4, 0.2]],
    }
}
PREDICT_PY = '''\
"""The iris model of the peer benchmarks, fitted the same way, served as a runyard handler."""
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

X, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=500).fit(X, y)


def predict(body):
    row = np.asarray(body["dataframe_split"]["data"], dtype=float)
    return {"predictions": [int(p) for p in model.predict(row)]}
'''
PEER_DRIVERS = {
    "mlflow": ("mlflow_serving.py", [], "setup-mlflow.sh"),
    "ray": ("ray_serving.py", ["--max-ongoing", "100"], "setup-ray.sh"),
    "fastapi": ("ceiling_serving.py", ["--apps", "fastapi"], "setup-ray.sh"),
}
KEEP = ("concurrency", "requests", "errors", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "other_cpu_cores")


def peers_dir(work: Path) -> Path:
    """A writable copy of the peer drivers (shared/ is read-only in CI; they write results beside them)."""
    dest = work / "peers"
    if not dest.exists():
        shutil.copytree(PEERS_SRC, dest)
    return dest


def run_peer(name: str, peers: Path, levels: str, duration: float) -> list[dict]:
    script, extra, setup = PEER_DRIVERS[name]
    subprocess.run(["bash", str(peers / setup)], check=True, cwd=peers, stdout=subprocess.DEVNULL)
    out = peers / f"{name}.jsonl"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(peers / script), "-c", levels, "-d", str(duration), "--out", str(out), *extra]
    if name != "fastapi":
        cmd += ["--wait-quiet", "30"]
    print(f"[serving] {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=peers, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text().splitlines()[-1])
    return [{k: r.get(k) for k in KEEP} for r in result["runs"]]


class Runyard:
    """A real `runyard server`, one Model serving the iris handler, and a key to call it with."""

    def __init__(self, work: Path):
        # The model's environment is the host's Python (its folder declares no dependencies): the one this
        # bench runs on, which has scikit-learn, as the peers' environments do.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        self.server = ServerProcess(work / "home", env={**os.environ, "PATH": path}).start()
        self.client = Client(self.server.url, self.server.token, "default")
        self.api = httpx.Client(
            base_url=f"{self.server.url}{API}/projects/default",
            headers={"Authorization": f"Bearer {self.server.token}"},
            timeout=60,
        )
        project = work / "project"
        project.mkdir()
        (project / "predict.py").write_text(PREDICT_PY)
        self.snapshot = self.client.upload_snapshot(project)

    def deploy(self, env: dict[str, str] | None = None) -> dict:
        doc = resource("Model", "iris", handler="predict:predict", snapshot=self.snapshot, env=env or {})
        r = self.api.put("/models/iris", json=doc)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def model(self) -> dict:
        return self.api.get("/models/iris").json()

    def wait_ready(self, version: int | None = None, timeout: float = 180) -> dict:
        def ready() -> dict | None:
            st = self.model()["status"]
            current = st.get("currentVersion")
            settled = st.get("phase") == "Ready" and st.get("targetVersion") in (None, current)
            return st if settled and (version is None or st.get("currentVersion") == version) else None

        return until(ready, "the model never got ready", timeout=timeout)

    def key(self) -> str:
        r = self.api.post("/models/iris/keys", json={"description": "bench"})
        assert r.status_code == 201, r.text
        return r.json()["key"]

    def close(self) -> None:
        self.server.stop()


def load(peers: Path, url: str, body: Path, c: int, duration: float, key: str, pids: list[int], warmup=2.0):
    sys.path.insert(0, str(peers))
    import loadgen  # the peers' own load generator, so that every server meets the same client

    headers = [f"Authorization: Bearer {key}"]
    r = loadgen.run_load(
        url, str(body), c, duration, "auto", headers=headers, server_pids=pids, warmup=warmup
    )
    return {k: r.get(k) for k in KEEP}


def rolling_update(ry: Runyard, peers: Path, url: str, body: Path, key: str, pids: list[int]) -> dict:
    """Load at concurrency 32 for the whole switch: apply a changed spec, wait until the new version has the
    traffic and the old replica is gone, and keep the load on a little longer."""
    before = ry.model()["status"]["currentVersion"]
    result: dict = {}
    window = 30.0

    def drive() -> None:
        result.update(load(peers, url, body, 32, window, key, pids, warmup=0.0))

    loader = threading.Thread(target=drive)
    loader.start()
    time.sleep(3)
    t0 = time.monotonic()
    ry.deploy(env={"BENCH_VERSION": str(before + 1)})
    st = ry.wait_ready(version=before + 1, timeout=window - 8)
    switch_s = time.monotonic() - t0
    desired = st.get("desiredReplicas", 1)
    until(lambda: ry.model()["status"].get("replicas") == desired, "the old replica lingers", 20)
    drained_s = time.monotonic() - t0
    loader.join()
    return {**result, "from_version": before, "to_version": before + 1, "switch_s": round(switch_s, 2),
            "old_replica_gone_s": round(drained_s, 2), "window_s": window}  # fmt: skip


def ratios(rows: dict[str, dict[int, dict]]) -> dict:
    ry = rows["runyard"]
    out: dict = {}
    if "mlflow" in rows and 32 in rows["mlflow"]:
        ml = rows["mlflow"][32]
        out["rps_vs_mlflow_c32"] = round(ry[32]["rps"] / ml["rps"], 2)
        out["p99_vs_mlflow_c32"] = round(ry[32]["p99_ms"] / ml["p99_ms"], 3)
    if "fastapi" in rows and 32 in rows["fastapi"]:
        out["rps_vs_fastapi_c32"] = round(ry[32]["rps"] / rows["fastapi"][32]["rps"], 3)
    if "fastapi" in rows and 1 in rows["fastapi"]:
        out["added_p50_ms_c1"] = round(ry[1]["p50_ms"] - rows["fastapi"][1]["p50_ms"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds measured at each concurrency")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--peers", default="mlflow,ray,fastapi", help="comma-separated, or none")
    ap.add_argument("--no-rolling", action="store_true", help="skip the rolling update under load")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    levels = [int(c) for c in a.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="runyard-bench-serving-"))
    peers = peers_dir(work)
    body = work / "iris-body.json"
    body.write_text(json.dumps(BODY))
    rows: dict[str, dict[int, dict]] = {}
    result: dict = {"bench": "serving", "machine": {"cpus": os.cpu_count()}, "duration_s": a.duration}
    ry = Runyard(work)
    try:
        ry.deploy()
        status = ry.wait_ready()
        key = ry.key()
        url = status["url"].rstrip("/") + "/invocations"
        answer = httpx.post(url, json=BODY, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert answer.json() == {"predictions": [0]}, answer.text
        pids = [ry.server.proc.pid]  # the server and everything under it: launcher, supervisor, replica
        rows["runyard"] = {}
        for c in levels:
            rows["runyard"][c] = load(peers, url, body, c, a.duration, key, pids)
            print(f"[serving] runyard c={c}: {rows['runyard'][c]}", file=sys.stderr, flush=True)
        if not a.no_rolling:
            result["rolling_update"] = rolling_update(ry, peers, url, body, key, pids)
            print(f"[serving] rolling update: {result['rolling_update']}", file=sys.stderr, flush=True)
    finally:
        ry.close()
    for name in [p for p in a.peers.split(",") if p and p != "none"]:
        try:
            rows[name] = {r["concurrency"]: r for r in run_peer(name, peers, a.concurrency, a.duration)}
        except (subprocess.CalledProcessError, OSError, ValueError, KeyError) as exc:
            result.setdefault("peer_errors", {})[name] = f"{type(exc).__name__}: {exc}"
    result["rows"] = {name: list(by_c.values()) for name, by_c in rows.items()}
    result["ratios"] = ratios(rows)
    emit_json(result, a.out)


if __name__ == "__main__":
    main()
