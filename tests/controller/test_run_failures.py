"""How attempts end and what the retry policy makes of it: memory limits enforced, timeouts retried."""

from __future__ import annotations

import signal
import sys

from tests.runtime.test_local_runtime import HOG


def test_a_run_over_its_memory_limit_fails_killed_for_out_of_memory(platform_factory):
    platform = platform_factory()
    platform.submit("hog", [sys.executable, "-c", HOG], resources={"memory": "128Mi"})
    run = platform.wait_phase("hog", "Failed", timeout=30)
    assert run.status.reason == "OOMKilled"
    assert run.status.exitCode == -signal.SIGKILL
    assert "out of memory" in run.status.message
    assert run.status.limits and "memory" in run.status.limits["enforced"]  # pids too: always limited


def test_each_attempt_that_times_out_is_retried_and_the_last_timeout_fails_the_run(platform_factory):
    """timeoutSeconds is per attempt, so a timed-out attempt is retried like any failed one (a hung
    attempt is what retries are for); a stop on request never is."""
    platform = platform_factory()
    platform.submit(
        "slow",
        "sleep 30",
        timeoutSeconds=0.5,
        stopGracePeriodSeconds=1,
        retryPolicy={"maxRetries": 2, "backoffSeconds": 0},
    )
    run = platform.wait_phase("slow", "Failed", timeout=30)
    st = run.status
    assert [(a.attempt, a.reason, a.exitCode) for a in st.attempts] == [
        (n, "DeadlineExceeded", -signal.SIGTERM) for n in (1, 2, 3)
    ]
    assert st.reason == "DeadlineExceeded"
    assert "attempt 3 of 3, no retries left" in st.message
    for att in st.attempts:
        assert 0.5 <= (att.finishedAt - att.startedAt).total_seconds() < 5
    events = [e.reason for e in platform.store.events(run.uid)]
    assert events.count("Retrying") == 2 and events.count("DeadlineExceeded") == 4  # 3 stops, the end
    assert next(c for c in st.conditions if c.type == "Stopping").status == "True"  # the last attempt's
