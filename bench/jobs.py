#!/usr/bin/env python3
"""Job scheduling at scale: 10,000 hourly jobs spread over the minutes of the hour (about 170 fires a
minute) and a burst of 500 more due in one minute, on a real `runyard server` (SQLite, local runtime),
on the real clock.

Reported, as medians and tails (nearest rank):
  tick        the scheduler's own cost per tick (its figures, GET /scheduler), with 10,500 jobs held
  created     delay from a fire's scheduled instant to its run being created (creationTimestamp)
  output      delay from the scheduled instant to the run's first line of output (its log's time)
for the spread minutes and for the burst minute (its 500 jobs plus the spread's own ~170), and the fires
that were doubled or missing (both must be 0). Targets: tick <= 50 ms at 10k jobs; creation delay p99
<= 1 s for the spread load and <= 5 s for the burst. No peer runs here: the first Kubernetes CronJob
controller polled every 10 s, so its delays were up to 10 s by design.

Run:  python bench/jobs.py [--jobs 10000] [--burst 500] [--minutes 3] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import API, ServerProcess, emit_json, resource  # noqa: E402

SCHEDULED = "runyard.dev/scheduled-at"


def nearest_rank(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, int(round(q * len(s) + 0.5)) - 1))]


def summary(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0}
    return {f"p{int(q * 100)}_s": round(nearest_rank(xs, q), 3) for q in (0.5, 0.9, 0.99)} | {
        "max_s": round(max(xs), 3),
        "n": len(xs),
    }


def job(name: str, minute: int, group: str) -> dict:
    doc = resource("Job", name, schedule=f"{minute} * * * *", template={"command": "echo fired"})
    doc["metadata"]["labels"] = {"bench": group}
    return doc


def create_jobs(api: httpx.Client, docs: list[dict], threads: int = 4) -> None:
    def put(doc: dict) -> None:
        r = api.put(f"/jobs/{doc['metadata']['name']}", json=doc)
        assert r.status_code in (200, 201), r.text

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, docs))


def scheduler(admin: httpx.Client) -> dict:
    return admin.get("/scheduler").json()


def wait_scheduled(admin: httpx.Client, count: int, timeout: float = 600) -> float:
    """Until the scheduler holds `count` jobs (each was reconciled and scheduled); returns how long."""
    start = time.monotonic()
    while scheduler(admin).get("jobs", 0) < count:
        assert time.monotonic() - start < timeout, (
            f"the scheduler never held {count} jobs: {scheduler(admin)}"
        )
        time.sleep(0.5)
    return time.monotonic() - start


def list_runs(api: httpx.Client) -> list[dict]:
    items, token = [], None
    while True:
        params = {"limit": 1000, **({"continue": token} if token else {})}
        page = api.get("/runs", params=params).json()
        items += page["items"]
        token = page.get("metadata", {}).get("continue")
        if not token:
            return items


def first_output(api: httpx.Client, run: str) -> datetime | None:
    for line in api.get(f"/runs/{run}/logs").text.splitlines():
        doc = json.loads(line)
        if "text" in doc:
            return datetime.fromisoformat(doc["time"])
    return None


def minute_floor(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--burst", type=int, default=500)
    ap.add_argument("--minutes", type=int, default=3, help="spread minutes measured before the burst")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="runyard-bench-jobs-"))
    srv = ServerProcess(home).start()
    api = srv.api()
    admin = httpx.Client(base_url=srv.url + API, headers=api.headers, timeout=60)
    try:
        t0 = time.monotonic()
        create_jobs(api, [job(f"spread-{i}", i % 60, "spread") for i in range(args.jobs)])
        created_s = time.monotonic() - t0
        scheduled_s = wait_scheduled(admin, args.jobs)
        # The burst minute: far enough ahead that its jobs are made and scheduled first, and after the
        # spread minutes measured.
        window_start = minute_floor(datetime.now(UTC)) + timedelta(minutes=1)
        burst_at = window_start + timedelta(minutes=args.minutes)
        create_jobs(api, [job(f"burst-{i}", burst_at.minute, "burst") for i in range(args.burst)])
        wait_scheduled(admin, args.jobs + args.burst)
        assert datetime.now(UTC) < burst_at - timedelta(seconds=5), "setup overran the burst minute"
        # Wait for the burst's fires and their first output (at most two minutes after it).
        end = burst_at + timedelta(minutes=1)
        while datetime.now(UTC) < end:
            time.sleep(1)
        stats = scheduler(admin)
        runs = [r for r in list_runs(api) if SCHEDULED in r["metadata"].get("annotations", {})]
        window = [
            r
            for r in runs
            if window_start <= datetime.fromisoformat(r["metadata"]["annotations"][SCHEDULED]) <= burst_at
        ]
        seen = Counter(
            (r["metadata"]["labels"]["runyard.dev/job"], r["metadata"]["annotations"][SCHEDULED])
            for r in runs
        )
        doubled = sum(n - 1 for n in seen.values() if n > 1)
        minutes = [(window_start + timedelta(minutes=k)).minute for k in range(args.minutes + 1)]
        due = sum(1 for i in range(args.jobs) if i % 60 in minutes) + args.burst
        groups: dict[str, dict[str, list[float]]] = {
            g: {"created": [], "output": []} for g in ("spread", "burst")
        }
        with ThreadPoolExecutor(4) as pool:
            outputs = list(pool.map(lambda r: first_output(api, r["metadata"]["name"]), window))
        for r, out in zip(window, outputs, strict=True):
            at = datetime.fromisoformat(r["metadata"]["annotations"][SCHEDULED])
            g = groups["burst" if at == burst_at else "spread"]
            g["created"].append(
                (datetime.fromisoformat(r["metadata"]["creationTimestamp"]) - at).total_seconds()
            )
            if out is not None:
                g["output"].append((out - at).total_seconds())
        tick = stats.get("tickSeconds", {})
        spread_p99 = summary(groups["spread"]["created"]).get("p99_s")
        burst_p99 = summary(groups["burst"]["created"]).get("p99_s")
        result = {
            "date": datetime.now(UTC).date().isoformat(),
            "jobs": args.jobs + args.burst,
            "setup": {"create_s": round(created_s, 1), "scheduled_after_s": round(scheduled_s, 1)},
            "tick_ms": {k: round(v * 1000, 2) for k, v in tick.items()},
            "ticks": stats.get("ticks"),
            "spread": {k: summary(v) for k, v in groups["spread"].items()},
            "burst": {k: summary(v) for k, v in groups["burst"].items()},
            "fires_due_in_window": due,
            "runs_in_window": len(window),
            "doubled": doubled,
            "missing": max(0, due - len(window)),
            "scheduler": stats,
            "targets": {
                "tick_p99_ms<=50": tick.get("p99", 1e9) * 1000 <= 50,
                "spread_created_p99_s<=1": spread_p99 is not None and spread_p99 <= 1,
                "burst_created_p99_s<=5": burst_p99 is not None and burst_p99 <= 5,
                "none_doubled_or_missing": doubled == 0 and len(window) >= due,
            },
        }
        emit_json(result, args.out)
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
