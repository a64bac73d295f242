#!/usr/bin/env python3
"""Sessions: how long `runyard session start` takes until JupyterLab answers through the server's proxy,
and what the proxy adds to a kernel round trip, in one run on one machine.

  start        `runyard session start NAME --no-wait` (the CLI, as a user types it) until `GET
               /sessions/<project>/<name>/api/status` answers 200 through the proxy: new sessions (their
               directory filled from a snapshot) and stopped ones started again, measured apart
  kernel       `1+1` executed in a kernel (execute_request -> execute_result, JupyterLab's v1 websocket
               protocol) through the proxy, against the same kernel reached on the Jupyter server's own
               loopback port (the peer: no proxy), interleaved in blocks

Targets (issue 10): start p50 <= 3 s and p99 <= 5 s; the proxy adds <= 2 ms p50 to a kernel round trip.
(For scale: Kubeflow notebook servers take minutes to start; CML aims at 15 s.)

Run:  python bench/sessions.py [--starts 20] [--round-trips 1000] [--out results.json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.sessions_proxy.proxy_support import V1, execute  # noqa: E402
from tests.support import ServerProcess, emit_json, resource, until  # noqa: E402

from runyard.services.session_secrets import jupyter_token, load_key  # noqa: E402

BLOCK = 50  # round trips per block; the two paths alternate block by block


def quantiles(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    pick = lambda q: xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]  # noqa: E731
    return {"n": len(xs), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": xs[-1]}


def cli(srv: ServerProcess, *args: str, cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runyard", *args], env=srv.env(), cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def time_start(srv: ServerProcess, name: str, project: Path) -> float:
    """Seconds from invoking `runyard session start` to /api/status answering through the proxy."""
    proxy = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.token}"}, timeout=5)
    t0 = time.perf_counter()
    cli(srv, "session", "start", name, "--no-wait", cwd=project)
    while proxy.get(f"/sessions/default/{name}/api/status").status_code != 200:
        time.sleep(0.005)
    took = time.perf_counter() - t0
    proxy.close()
    return took


def stop(srv: ServerProcess, name: str, project: Path) -> None:
    cli(srv, "session", "stop", name, cwd=project)


def kernel_round_trips(srv: ServerProcess, name: str, n: int) -> dict:
    api = srv.api()
    api.put(f"/sessions/{name}", json=resource("Session", name))
    st = until(
        lambda: (s := api.get(f"/sessions/{name}").json()["status"]).get("phase") == "Running" and s,
        "session running",
        120,
    )
    base = urlsplit(st["url"]).path
    bearer = {"Authorization": f"Bearer {srv.token}"}
    kernel = httpx.post(f"{srv.url}{base}api/kernels", headers=bearer, json={"name": "python3"}, timeout=60)
    kid = kernel.json()["id"]
    token = jupyter_token(load_key(srv.home), st["runUid"])
    host = urlsplit(srv.url).netloc
    paths = {
        "proxy": (f"ws://{host}{base}api/kernels/{kid}/channels", bearer),
        "direct": (
            f"ws://127.0.0.1:{st['port']}{base}api/kernels/{kid}/channels",
            {"Authorization": f"token {token}"},
        ),
    }
    sockets = {
        k: connect(url, additional_headers=h, subprotocols=[V1], max_size=None)
        for k, (url, h) in paths.items()
    }
    try:
        for ws in sockets.values():  # warm: the kernel started, both connections used
            for _ in range(20):
                assert execute(ws, "1+1") == "2"
        times: dict[str, list[float]] = {k: [] for k in sockets}
        for _ in range(max(1, n // BLOCK)):
            for key, ws in sockets.items():
                for _ in range(BLOCK):
                    t0 = time.perf_counter()
                    assert execute(ws, "1+1") == "2"
                    times[key].append((time.perf_counter() - t0) * 1000)
    finally:
        for ws in sockets.values():
            ws.close()
    result = {k: quantiles(v) for k, v in times.items()}
    result["added_p50_ms"] = result["proxy"]["p50"] - result["direct"]["p50"]
    result["added_p99_ms"] = result["proxy"]["p99"] - result["direct"]["p99"]
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--starts", type=int, default=20, help="starts measured of each kind")
    ap.add_argument("--round-trips", type=int, default=1000, help="kernel round trips per path")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="runyard-bench-sessions-"))
    project = work / "project"
    project.mkdir()
    (project / "analysis.py").write_text("import math\nprint(math.pi)\n")
    srv = ServerProcess(work / "home").start()
    try:
        new = []
        for i in range(args.starts):
            new.append(time_start(srv, f"new-{i}", project))
            stop(srv, f"new-{i}", project)  # one at a time, as a user does: these boxes have 2 cores
        again = []
        for _ in range(args.starts):
            again.append(time_start(srv, "new-0", project))
            stop(srv, "new-0", project)
        both = new + again
        kernel = kernel_round_trips(srv, "kernel", args.round_trips)
    finally:
        srv.stop()
    start = {"new": quantiles(new), "restarted": quantiles(again), "all": quantiles(both)}
    emit_json(
        {
            "benchmark": "sessions",
            "start_seconds": start,
            "kernel_round_trip_ms": kernel,
            "targets": {
                "start_p50_le_3s": start["all"]["p50"] <= 3.0,
                "start_p99_le_5s": start["all"]["p99"] <= 5.0,
                "proxy_added_p50_le_2ms": kernel["added_p50_ms"] <= 2.0,
            },
        },
        args.out,
    )


if __name__ == "__main__":
    main()
