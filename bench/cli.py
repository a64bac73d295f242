#!/usr/bin/env python3
"""CLI latency: how long people wait for `runyard ps` and `runyard run`, and where the time goes.

Against a real `runyard server` on loopback (SQLite), each command a fresh process as a user types it:
  ps         `runyard ps` in a project of --runs runs: wall time, p50 of --repeat
  run        `runyard run --cmd "echo x"` from a small project directory, to the end of its output, against
             the bare `sh -c "echo x"`; pairs interleaved so both see the same noise: overhead p50
  imports    `python -X importtime -m runyard ps`: self time grouped by top-level package (median of 5), and
             `import runyard.client` (the typed SDK) on its own
  python     `python -c pass`: the interpreter's own start, the floor under every command
Each command's own CPU time (user + system) is given beside its wall time: on a shared machine it is the
steadier figure. Bytecode is cached as after `pip install` (a first, warm-up call writes it). Prints one
JSON document with each target (ps p50 <= 200 ms, run overhead p50 <= 200 ms) met or missed. `runyard get
jobs` over 5,000 Jobs (target <= 1 s) is measured by bench/store.py, which holds them.

Run:  python bench/cli.py [--repeat 20] [--runs 20] [--out results.json]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support import ServerProcess, emit_json  # noqa: E402

TARGETS_MS = {"ps_p50": 200.0, "run_overhead_p50": 200.0}


def cli_env(srv: ServerProcess) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return {**env, "RUNYARD_API_URL": srv.url, "RUNYARD_TOKEN": srv.token}


def timed(
    argv: list[str], env: dict[str, str], cwd: Path | None = None, cpu: list[float] | None = None
) -> float:
    """Wall seconds of the command; its CPU seconds (user + system, its own process only) go to `cpu`:
    a figure the other users of a shared machine disturb far less than the wall time."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}: {err[-2000:].decode(errors='replace')}")
    if cpu is not None:
        cpu.append(usage.ru_utime + usage.ru_stime)
    return elapsed


def ms(values: list[float]) -> dict:
    return {
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "min_ms": round(min(values) * 1000, 1),
        "n": len(values),
    }


def runyard(*args: str) -> list[str]:
    """The `runyard` command as installed beside this interpreter (what users type), else `python -m`."""
    script = Path(sys.executable).parent / "runyard"
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "runyard", *args]


def bench_run_and_ps(env: dict[str, str], project: Path, repeat: int, runs: int) -> dict:
    timed(runyard("ps"), env)  # warm-up: writes the bytecode, as an install would
    bare, ry, ry_cpu = [], [], []
    for _ in range(max(repeat, runs)):
        bare.append(timed(["/bin/sh", "-c", "echo x"], env, project))
        ry.append(timed(runyard("run", "--cmd", "echo x"), env, project, ry_cpu))
    ps, ps_cpu, python, python_cpu = [], [], [], []
    for _ in range(repeat):
        python.append(timed([sys.executable, "-c", "pass"], env, cpu=python_cpu))
        ps.append(timed(runyard("ps"), env, cpu=ps_cpu))
    overhead = [r - b for r, b in zip(ry, bare, strict=True)]
    return {
        "ps": {**ms(ps), "cpu": ms(ps_cpu), "runs_listed": max(repeat, runs)},
        "python_startup": {**ms(python), "cpu": ms(python_cpu)},
        "run": {"bare": ms(bare), "runyard": {**ms(ry), "cpu": ms(ry_cpu)}, "overhead": ms(overhead)},
    }


def import_breakdown(env: dict[str, str], argv: list[str], runs: int = 5) -> dict:
    """Self time of every module imported by `argv`, summed by top-level package; medians over `runs`."""
    totals: list[collections.Counter] = []
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", *argv], env=env, capture_output=True, text=True
        ).stderr
        counter: collections.Counter = collections.Counter()
        for line in err.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, _cumulative, name = line.removeprefix("import time:").split("|")
            counter[name.strip().split(".")[0]] += int(self_us)
        totals.append(counter)
    packages = set().union(*totals)
    median = {p: statistics.median(c.get(p, 0) for c in totals) / 1000 for p in packages}
    top = sorted(median.items(), key=lambda kv: -kv[1])[:12]
    return {"total_ms": round(sum(median.values()), 1), "top_ms": {p: round(v, 1) for p, v in top}}


def import_time(env: dict[str, str], module: str, runs: int = 9) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    values = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(runs)
    ]
    return round(statistics.median(values) * 1000, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20, help="samples of ps and of run (default 20)")
    ap.add_argument("--runs", type=int, default=20, help="runs in the project that ps lists (default 20)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        srv = ServerProcess(Path(tmp) / "home").start()
        try:
            env = cli_env(srv)
            project = Path(tmp) / "project"
            project.mkdir()
            (project / "train.py").write_text("print('x')\n")
            result: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)}}
            result |= bench_run_and_ps(env, project, args.repeat, args.runs)
            result["imports"] = {
                "runyard ps": import_breakdown(env, ["-m", "runyard", "ps"]),  # -X needs the interpreter
                "import runyard.client (typed SDK) ms": import_time(env, "runyard.client"),
                "import runyard.rest ms": import_time(env, "runyard.rest"),
            }
            result["machine"]["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
        finally:
            srv.stop()

    checks = {"ps_p50": result["ps"]["p50_ms"], "run_overhead_p50": result["run"]["overhead"]["p50_ms"]}
    result["targets"] = {
        name: {"value_ms": value, "target_ms": TARGETS_MS[name], "met": value <= TARGETS_MS[name]}
        for name, value in checks.items()
    }
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
