#!/usr/bin/env python3
"""Launch latency: submit -> first line of output, and total time, for runyard runs against a bare spawn.

The same command runs both ways: `python -c "print('x')"` (argv, no shell), with `python` this interpreter.
  bare      subprocess.Popen with stdout on a pipe: time to the line and to exit
  runyard   POST an Experiment to a real `runyard server` on loopback (SQLite, local runtime), then follow
            its logs over HTTP: time to the line and to the end-of-run record (phase known to the server)
Sequential: --runs pairs, bare and runyard interleaved so that both see the same noise. Bursts: --bursts
of --burst-size concurrent submissions (threads), against the same number of concurrent bare spawns.
CPU per run: the server's, the launcher's and the shims' (with their commands), less what the bare
command costs by itself (its CPU as the bench's own reaped children).
Prints one JSON document: p50/p90/p99 (nearest rank) per mode, overheads, ratios, CPU per run, and the
targets: all CPU per run (less the command's) <= 6 ms; bursts: p50 total overhead <= 100 ms above bare;
sequential: p99 total <= 2x bare p99.

With --with-ray, the shared peer driver (shared/bench/peers/launch_latency.py, after its setup-ray.sh)
measures `ray job submit` and Ray's job SDK for the same command in the same run, and the JSON gains
their figures and runyard's speed-up over them.

Run:  python bench/launch.py [--runs 200] [--burst-size 50] [--bursts 3] [--with-ray] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import ServerProcess, emit_json  # noqa: E402

CMD = [sys.executable, "-c", "print('x')"]


def nearest_rank(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, int(round(q * len(s) + 0.5)) - 1))]


def summary(xs: list[float]) -> dict:
    return {f"p{int(q * 100)}_ms": round(nearest_rank(xs, q) * 1000, 2) for q in (0.5, 0.9, 0.99)} | {
        "n": len(xs)
    }


def own_cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


class CpuMeter:
    """CPU seconds spent by runyard for runs: the server (API, controller, log streaming), the launcher,
    and the shims, whose times (and their commands') reach the launcher's children times once it has
    reaped them. The commands' own CPU is what the same number of bare runs cost, subtracted by the caller.
    """

    def __init__(self, server: psutil.Process):
        self.server = server
        launchers = [c for c in server.children() if "launcher.py" in " ".join(c.cmdline())]
        assert len(launchers) == 1, launchers
        self.launcher = launchers[0]

    def settle(self, timeout: float = 5) -> None:
        """Wait until the launcher has reaped every shim, so that their times are counted."""
        deadline = time.monotonic() + timeout
        while self.launcher.children() and time.monotonic() < deadline:
            time.sleep(0.02)

    def read(self) -> dict[str, float]:
        self.settle()
        t = self.launcher.cpu_times()
        return {
            "server": own_cpu(self.server),
            "launcher": t.user + t.system,
            "shims_and_commands": t.children_user + t.children_system,
        }


def children_cpu() -> float:
    """CPU seconds of this process's reaped children: the bare runs' commands."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_per_run(before: dict[str, float], after: dict[str, float], command_cpu: float, n: int) -> dict:
    parts = {k: (after[k] - before[k]) / n for k in before}
    total = sum(parts.values()) - command_cpu
    return {
        "server_ms": round(parts["server"] * 1000, 2),
        "launcher_ms": round(parts["launcher"] * 1000, 2),
        "shims_and_commands_ms": round(parts["shims_and_commands"] * 1000, 2),
        "bare_command_ms": round(command_cpu * 1000, 2),
        "total_less_command_ms": round(total * 1000, 2),
    }


def bare_once() -> tuple[float, float]:
    t0 = time.perf_counter()
    p = subprocess.Popen(CMD, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = p.stdout.readline()
    t1 = time.perf_counter()
    p.stdout.read()
    p.wait()
    assert line == b"x\n", line
    return t1 - t0, time.perf_counter() - t0


class Submitter:
    def __init__(self, srv: ServerProcess):
        self.srv = srv
        self.local = threading.local()
        self.n = 0
        self.lock = threading.Lock()

    def api(self) -> httpx.Client:
        if not hasattr(self.local, "api"):
            self.local.api = self.srv.api()
        return self.local.api

    def once(self) -> tuple[float, float]:
        with self.lock:
            self.n += 1
            name = f"b{self.n}"
        api = self.api()
        doc = {
            "apiVersion": "runyard.dev/v1",
            "kind": "Experiment",
            "metadata": {"name": name},
            "spec": {"command": CMD},
        }
        t0 = time.perf_counter()
        r = api.post("/experiments", json=doc)
        assert r.status_code == 201, r.text
        first = None
        with api.stream("GET", f"/runs/{name}/logs", params={"follow": "true"}, timeout=120) as resp:
            for raw in resp.iter_lines():
                rec = json.loads(raw)
                if first is None and rec.get("text") == "x":
                    first = time.perf_counter() - t0
                if rec.get("end"):
                    assert rec["phase"] == "Succeeded", rec
        return first, time.perf_counter() - t0


def concurrently(fn, n: int) -> list[tuple[float, float]]:
    out: list = [None] * n
    barrier = threading.Barrier(n)

    def work(i: int) -> None:
        barrier.wait()
        out[i] = fn()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def report(bare: list[tuple[float, float]], ry: list[tuple[float, float]]) -> dict:
    b_first, b_total = summary([b[0] for b in bare]), summary([b[1] for b in bare])
    r_first, r_total = summary([r[0] for r in ry]), summary([r[1] for r in ry])
    return {
        "bare": {"first_line": b_first, "total": b_total},
        "runyard": {"first_line": r_first, "total": r_total},
        "overhead_ms": {
            "first_line_p50": round(r_first["p50_ms"] - b_first["p50_ms"], 2),
            "total_p50": round(r_total["p50_ms"] - b_total["p50_ms"], 2),
            "total_p99": round(r_total["p99_ms"] - b_total["p99_ms"], 2),
        },
        "ratio_to_bare": {
            "first_line_p50": round(r_first["p50_ms"] / b_first["p50_ms"], 2),
            "total_p50": round(r_total["p50_ms"] / b_total["p50_ms"], 2),
            "total_p99": round(r_total["p99_ms"] / b_total["p99_ms"], 2),
        },
    }


PEERS = Path(__file__).resolve().parents[2] / "shared" / "bench" / "peers"


def ray_peer(seq: dict) -> dict:
    """Ray's job submission for the same command, measured by the shared driver in this same run."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ray.jsonl"
        argv = [
            sys.executable,
            str(PEERS / "launch_latency.py"),
            "--spawn-runs",
            "20",
            "--job-runs",
            "10",
            "--sdk-runs",
            "10",
            "--task-calls",
            "100",
            "--wait-quiet",
            "10",
            "--out",
            str(out),
        ]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        ray = json.loads(out.read_text().strip().splitlines()[-1])
    figures = {
        k: {"first_line": ray[k]["first_line"], "total": ray[k]["total"]}
        for k in ("ray_job_cli", "ray_job_sdk")
    }
    ours = seq["runyard"]["total"]["p50_ms"]
    return {
        "ray_version": ray.get("ray_version"),
        **figures,
        "speedup_total_p50": {k: round(v["total"]["p50_ms"] / ours, 1) for k, v in figures.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--burst-size", type=int, default=50)
    ap.add_argument("--bursts", type=int, default=3)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--with-ray", action="store_true", help="also run the shared Ray peer driver")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="runyard-bench-") as home:
        srv = ServerProcess(Path(home)).start()
        try:
            sub = Submitter(srv)
            for _ in range(5):  # warm-up: launcher started, connections open, code paths hot
                sub.once()
                bare_once()
            meter = CpuMeter(psutil.Process(srv.proc.pid))
            bare, ry = [], []
            bare_cpu = 0.0
            m0 = meter.read()
            for _ in range(args.runs):
                c0 = children_cpu()
                bare.append(bare_once())
                bare_cpu += children_cpu() - c0
                ry.append(sub.once())
            seq_cpu = cpu_per_run(m0, meter.read(), bare_cpu / args.runs, args.runs)
            b_burst, r_burst, burst_parts = [], [], []
            for _ in range(args.bursts):
                c0 = children_cpu()
                b_burst += concurrently(bare_once, args.burst_size)
                burst_bare_cpu = (children_cpu() - c0) / args.burst_size
                time.sleep(0.5)
                m0 = meter.read()
                r_burst += concurrently(sub.once, args.burst_size)
                burst_parts.append(cpu_per_run(m0, meter.read(), burst_bare_cpu, args.burst_size))
                time.sleep(0.5)
            burst_cpu = {k: round(statistics.median(p[k] for p in burst_parts), 2) for k in burst_parts[0]}
        finally:
            srv.stop()

    seq, burst = report(bare, ry), report(b_burst, r_burst)
    seq["cpu_per_run"] = seq_cpu
    burst["cpu_per_run"] = burst_cpu
    result = {
        "benchmark": "launch",
        "command": "python -c \"print('x')\"",
        "sequential": seq,
        f"burst_{args.burst_size}": burst,
        "targets": {
            "cpu_per_run_le_6ms": seq_cpu["total_less_command_ms"] <= 6,
            "burst_p50_overhead_le_100ms": burst["overhead_ms"]["total_p50"] <= 100,
            "sequential_p99_le_2x_bare": seq["ratio_to_bare"]["total_p99"] <= 2,
        },
    }
    if args.with_ray:
        result["peers"] = ray_peer(seq)
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
