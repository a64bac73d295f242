"""Retries back off exponentially: a job's failing run waits backoffSeconds, then that times
backoffMultiplier after each further failure, never more than maxBackoffSeconds, through a real server."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from tests.jobs.server_support import events, job, status_when, triggered

POLICY = {"maxRetries": 3, "backoffSeconds": 0.5, "backoffMultiplier": 2, "maxBackoffSeconds": 1.5}
DELAYS = [0.5, 1.0, 1.5]  # 0.5 * 2^(n-1), the third capped from 2


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_retries_wait_longer_each_time_up_to_the_cap(server):
    api = server.api()
    api.put("/jobs/flaky", json=job("flaky", "exit 3", template={"retryPolicy": POLICY}))
    name = triggered(api, "flaky")
    waits: dict[int, datetime] = {}  # attempts so far -> the nextAttemptAt recorded for the one after
    deadline = time.monotonic() + 60
    while True:
        st = api.get(f"/runs/{name}").json()["status"]
        if st["phase"] == "Queued" and st.get("nextAttemptAt"):
            waits.setdefault(len(st["attempts"]), _t(st["nextAttemptAt"]))
        if st["phase"] == "Failed":
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.02)  # each wait lasts half a second or more: no Queued state goes unseen
    attempts = st["attempts"]
    assert len(attempts) == 4 and [a["exitCode"] for a in attempts] == [3, 3, 3, 3]
    assert sorted(waits) == [1, 2, 3]
    for n, delay in enumerate(DELAYS, start=1):
        gap = waits[n] - _t(attempts[n - 1]["finishedAt"])
        assert timedelta(seconds=delay) <= gap < timedelta(seconds=delay + 2), (n, gap)
        assert _t(attempts[n]["startedAt"]) >= waits[n]  # the next attempt waited for it
    said = [e["message"] for e in events(api, "runs", name) if e["reason"] == "Retrying"]
    assert [m.split("retrying in ")[1] for m in said] == ["0.5s (2/4)", "1s (3/4)", "1.5s (4/4)"]
    assert "attempt 4 of 4, no retries left" in st["message"]
    job_st = status_when(api, "flaky", lambda s: s.get("lastRun"), "the job never showed the failed run")
    assert job_st["lastRun"] == {**job_st["lastRun"], "name": name, "phase": "Failed"}
