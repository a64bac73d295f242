#!/usr/bin/env python3
"""Environments: a cold build by runyard beside uv's and pip's own, and a warm start against a bare launch.

  cold     the same requirements (--packages, default numpy and scikit-learn), three ways, each with its own
           fresh, empty cache directory, so that every build downloads and installs everything:
             runyard  POST /projects/default/environments to a real `runyard server` (SQLite; its uv gets
                      the fresh UV_CACHE_DIR), follow the build log to its end: time from the POST to the
                      record saying Ready. The server is started, and has probed the host's interpreters
                      (once per server, on first need; reported apart), before the clock starts
             uv       `uv venv D && uv pip install --python D/bin/python -r requirements.txt`
             pip      `python -m venv D && D/bin/pip install --no-cache-dir -r requirements.txt`
           with the interpreter runyard picked (the server's own). --rounds rounds, the order rotated each
           round so that none always goes first; medians and the ratio to uv's (target <= 1.2x).
  warm     on the server of the last round, its environment built: --runs pairs of runs of
           `python -S -c "print('x')"`, interleaved, time from the POST of the Experiment to its first line of
           output, one in the environment (spec.environment `default`, the snapshot holds the
           requirements.txt; `python` is the environment's) and one as today (`system`, same snapshot,
           the same base interpreter the environment was made from, outside any virtualenv); p50/p90
           and the p50 overhead (target <= 20 ms).
Prints one JSON document (also to --out).

Run:  python bench/environments.py [--rounds 3] [--runs 30] [--packages "numpy scikit-learn"] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import ServerProcess, emit_json  # noqa: E402

from runyard.rest import Rest  # noqa: E402
from runyard.upload import upload_snapshot  # noqa: E402

PYTHON = getattr(sys, "_base_executable", sys.executable)  # the interpreter the server builds with
# -S: no site-packages, so the host's (whose .pth files may cost 100s of ms a start) weigh on neither side
PRINT_X = ["-S", "-c", "print('x')"]
TARGETS = {"cold_vs_uv": 1.2, "warm_overhead_p50_ms": 20}


def uv_bin() -> str:
    import uv

    return uv.find_uv_bin()


def fresh_env(cache: Path) -> dict[str, str]:
    """This process's environment with every cache pointed at `cache` (empty) and no Python downloads."""
    return {
        **os.environ,
        "UV_CACHE_DIR": str(cache / "uv"),
        "PIP_CACHE_DIR": str(cache / "pip"),
        "UV_PYTHON_DOWNLOADS": "never",
    }


def timed_shell(steps: list[list[str]], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    for argv in steps:
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t0


def build_uv(work: Path, requirements: Path) -> float:
    venv = work / "uv-venv"
    uv = uv_bin()
    steps = [
        [uv, "venv", "-q", "--python", PYTHON, str(venv)],
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "-r", str(requirements)],
    ]
    return timed_shell(steps, fresh_env(work / "cache"))


def build_pip(work: Path, requirements: Path) -> float:
    venv = work / "pip-venv"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir"]
    steps = [[PYTHON, "-m", "venv", str(venv)], [*pip, "-r", str(requirements)]]
    return timed_shell(steps, fresh_env(work / "cache"))


class Runyard:
    """A real server on a fresh home whose uv uses a fresh cache; what a user would call, over HTTP."""

    def __init__(self, work: Path):
        self.srv = ServerProcess(work / "home", env=fresh_env(work / "cache")).start()
        self.rest = Rest(self.srv.url, self.srv.token, "default", timeout=600)
        self.record: dict = {}
        t0 = time.perf_counter()
        self.rest.pythons()  # the server probes the host's interpreters once, on first need: not a build
        self.discovery = time.perf_counter() - t0

    def build(self, requirements: str) -> float:
        """Seconds from the POST to the record saying Ready (the build log followed meanwhile)."""
        t0 = time.perf_counter()
        record = self.rest.build_environment({"requirements.txt": requirements})
        for _ in self.rest.environment_log(record["id"], follow=True):
            pass
        self.record = self.rest.environment(record["id"])
        elapsed = time.perf_counter() - t0
        if self.record["state"] != "Ready":
            raise RuntimeError(f"runyard's build ended {self.record['state']}: {self.record.get('message')}")
        return elapsed

    def stop(self) -> None:
        self.rest.close()
        self.srv.stop()


def cold(args: argparse.Namespace, base: Path) -> tuple[dict, Runyard]:
    """Rounds of the three builders, rotated; returns the figures and the last round's server, kept."""
    text = "".join(f"{p}\n" for p in args.packages.split())
    times: dict[str, list[float]] = {"runyard": [], "uv": [], "pip": []}
    kept: Runyard | None = None
    discovery: list[float] = []
    in_server: list[float] = []  # the build as the server timed it, from its claim to Ready
    for round_ in range(args.rounds):
        order = list(times)[round_ % 3 :] + list(times)[: round_ % 3]
        for who in order:
            work = base / f"round{round_}-{who}"
            work.mkdir()
            requirements = work / "requirements.txt"
            requirements.write_text(text)
            if who == "runyard":
                ry = Runyard(work)
                discovery.append(ry.discovery)
                times[who].append(ry.build(text))
                in_server.append(ry.record["buildSeconds"])
                if kept is not None:
                    kept.stop()
                kept = ry
            else:
                builder: Callable[[Path, Path], float] = build_uv if who == "uv" else build_pip
                times[who].append(builder(work, requirements))
                shutil.rmtree(work, ignore_errors=True)  # the venvs and caches: hundreds of MB each
    assert kept is not None
    medians = {k: round(statistics.median(v), 2) for k, v in times.items()}
    record = kept.record
    result = {
        "packages": args.packages.split(),
        "python": record.get("python"),
        "installed_packages": len(record.get("packages") or []),
        "builder": record.get("builder"),
        "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "median_s": medians,
        "ratio_to_uv": {k: round(medians[k] / medians["uv"], 2) for k in ("runyard", "pip")},
        "runyard_build_seconds_in_server": in_server,
        "server_interpreter_discovery_s": round(statistics.median(discovery), 2),
    }
    return result, kept


def nearest_rank(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, int(round(q * len(s) + 0.5)) - 1))]


def summary(xs: list[float]) -> dict:
    return {f"p{int(q * 100)}_ms": round(nearest_rank(xs, q) * 1000, 2) for q in (0.5, 0.9)} | {"n": len(xs)}


def first_line(rest: Rest, spec: dict, name: str) -> float:
    """Seconds from the POST of an Experiment to its first line of output (the run must succeed)."""
    doc = {"apiVersion": "runyard.dev/v1", "kind": "Experiment", "metadata": {"name": name}, "spec": spec}
    t0 = time.perf_counter()
    rest.create(doc)
    first = None
    for line in rest.stream_lines(f"{rest.base}/projects/default/runs/{name}/logs", {"follow": "true"}, True):
        item = json.loads(line)
        if first is None and item.get("text") == "x":
            first = time.perf_counter() - t0
        if item.get("end") and (item["phase"] != "Succeeded" or first is None):
            raise RuntimeError(f"run {name} ended {item}")
    assert first is not None
    return first


def warm(ry: Runyard, requirements: str, runs: int, base: Path) -> dict:
    project = base / "warm-project"
    project.mkdir()
    (project / "requirements.txt").write_text(requirements)
    snapshot = upload_snapshot(ry.rest, project)
    in_env = {"command": ["python", *PRINT_X], "snapshot": snapshot, "environment": "default"}
    bare = {"command": [PYTHON, *PRINT_X], "snapshot": snapshot, "environment": "system"}
    first_line(ry.rest, in_env, "w-first")  # the run that maps the snapshot to the (built) environment
    env_id = ry.rest.get("runs", "w-first")["status"]["environment"]["id"]
    for i in range(3):  # warm-up: launcher started, code paths hot
        first_line(ry.rest, bare, f"w-warm-bare-{i}")
        first_line(ry.rest, in_env, f"w-warm-env-{i}")
    envs, bares = [], []
    for i in range(runs):
        bares.append(first_line(ry.rest, bare, f"w-bare-{i}"))
        envs.append(first_line(ry.rest, in_env, f"w-env-{i}"))
    assert ry.rest.get("runs", f"w-env-{runs - 1}")["status"]["environment"]["id"] == env_id
    e, b = summary(envs), summary(bares)
    return {
        "environment": env_id,
        "in_environment": e,
        "system": b,
        "overhead_p50_ms": round(e["p50_ms"] - b["p50_ms"], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--packages", default="numpy scikit-learn")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="runyard-bench-env-") as tmp:
        cold_result, ry = cold(args, Path(tmp))
        try:
            requirements = "".join(f"{p}\n" for p in args.packages.split())
            warm_result = warm(ry, requirements, args.runs, Path(tmp))
        finally:
            ry.stop()
    result = {
        "benchmark": "environments",
        "load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
        "cold": cold_result,
        "warm": warm_result,
        "targets": {
            "cold_le_1.2x_uv": cold_result["ratio_to_uv"]["runyard"] <= TARGETS["cold_vs_uv"],
            "warm_overhead_p50_le_20ms": warm_result["overhead_p50_ms"] <= TARGETS["warm_overhead_p50_ms"],
        },
    }
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
