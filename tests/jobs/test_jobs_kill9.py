"""kill -9 the real server at random moments while its jobs fire (a minutely schedule on a warped clock:
a minute every two real seconds), restarting it on the same home and the same warped time, many times.
Then, from the API: no (job, instant) fired twice, every instant due while the server was up fired, and
each downtime fired at most once, for its latest instant (the missed window collapses)."""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from tests.jobs.warp import warp_env, warped_now
from tests.support import API, ServerProcess, fresh_postgres_database, resource

from runyard.core.cron import fires

ROOT = str(Path(__file__).resolve().parents[2])
SPEED = 30.0  # warped seconds per real second: a minutely job fires every 2 s
MARGIN = timedelta(seconds=1.0 * SPEED)  # a real second: a fire due just before a kill may not be committed
JOBS = ["tick-a", "tick-b", "tick-c"]


def poll(what, done, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if done(got):
            return got
        assert time.monotonic() < deadline, f"timed out; last: {got}"
        time.sleep(0.05)


def loaded(srv: ServerProcess) -> int:
    """How many jobs the server's scheduler holds (it loads them on its thread after the start)."""
    r = httpx.get(srv.url + API + "/scheduler", headers={"Authorization": f"Bearer {srv.token}"}, timeout=10)
    return int(r.json().get("jobs", 0)) if r.status_code == 200 else -1


def fired_instants(api: httpx.Client, name: str) -> tuple[list[datetime], list[datetime]]:
    """(instants of the Created fires in the job's history, instants its runs were made for)."""
    items = api.get(f"/jobs/{name}/history", params={"limit": 1000}).json()["items"]
    created = [datetime.fromisoformat(i["scheduledAt"]) for i in items if i["outcome"] == "Created"]
    assert {i["outcome"] for i in items} <= {"Created"}, items
    runs = api.get("/runs", params={"labelSelector": f"runyard.dev/job={name}", "limit": 1000}).json()[
        "items"
    ]
    annotated = [
        datetime.fromisoformat(r["metadata"]["annotations"]["runyard.dev/scheduled-at"]) for r in runs
    ]
    return created, annotated


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill9_while_jobs_fire_never_doubles_or_loses_a_fire(tmp_path, backend):
    kills = 7 if backend == "sqlite" else 3  # a restart takes seconds on a busy machine
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, 0, 0, 40, tzinfo=UTC)
    warp = warp_env(start, SPEED)
    setting = warp["RUNYARD_TEST_WARP"]
    env = {
        **os.environ,
        **warp,
        "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
    }
    store_url = fresh_postgres_database() if backend == "postgres" else None
    srv = ServerProcess(tmp_path / "home", store_url, env=env, module="tests.jobs.warp").start()
    try:
        api = srv.api()
        for name in JOBS:
            doc = resource(
                "Job",
                name,
                schedule="* * * * *",
                concurrencyPolicy="Allow",
                successfulRunsHistoryLimit=1000,
                failedRunsHistoryLimit=1000,
                template={"command": "true"},
            )
            assert api.put(f"/jobs/{name}", json=doc).status_code == 201
        statuses = [
            poll(lambda n=name: api.get(f"/jobs/{n}").json()["status"], lambda s: s.get("scheduleFrom"))
            for name in JOBS
        ]
        baseline = max(datetime.fromisoformat(s["scheduleFrom"]) for s in statuses)
        up: list[tuple[datetime, datetime]] = []  # warped spans every instant of which must fire
        down: list[tuple[datetime, datetime, datetime]] = []  # (killed, restarted, loaded again)
        ready = warped_now(setting)
        for _ in range(kills):
            time.sleep(rng.uniform(1.5, 3.5))  # a random moment to kill it, not a wait for anything
            killed = warped_now(setting)
            srv.kill9()
            up.append((ready, killed - MARGIN))
            time.sleep(rng.uniform(0.0, 0.3))  # and a random downtime besides the restart's own
            restarted = warped_now(setting)
            srv.start()
            poll(lambda: loaded(srv), lambda n: n == len(JOBS))
            ready = warped_now(setting)
            down.append((killed, restarted, ready))
        time.sleep(4.0)
        up.append((ready, warped_now(setting) - MARGIN))
        api = srv.api()
        for name in JOBS:
            created, annotated = fired_instants(api, name)
            assert len(created) == len(set(created)), f"{name} fired an instant twice (seed {seed})"
            fired_by_then = [t for t in annotated if t <= max(created)]  # runs were read a moment later
            assert sorted(fired_by_then) == sorted(created), f"{name}: runs and fires differ (seed {seed})"
            assert len(annotated) == len(set(annotated)), f"{name} has two runs of one instant (seed {seed})"
            got = set(created)
            checked = 0
            own = datetime.fromisoformat(statuses[JOBS.index(name)]["scheduleFrom"])
            assert all(t > own for t in got), f"{name} fired before it was made (seed {seed})"
            for a, b in up:
                due = [t for t in fires("* * * * *", "UTC", max(a, baseline) - timedelta(microseconds=1), b)]
                lost = [t.isoformat() for t in due if t not in got]
                checked += len(due)
                assert not lost, f"{name}: instants due while up never fired: {lost} (seed {seed})"
            for killed, restarted, ready in down:
                during = list(fires("* * * * *", "UTC", killed, restarted))
                made = [t for t in got if killed < t <= restarted]
                assert len(made) <= 1, f"{name}: downtime from {killed} fired {made} (seed {seed})"
                if made:
                    assert made[0] == during[-1], f"{name}: not the latest of {during} (seed {seed})"
                if any(killed < t <= ready for t in fires("* * * * *", "UTC", killed, ready)):
                    assert any(killed < t <= ready for t in got), f"{name}: downtime lost (seed {seed})"
            assert checked >= 1  # the last span (four real seconds up) holds one at least
        assert len(down) == kills
    finally:
        srv.stop()
