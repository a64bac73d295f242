"""launch_timeout_seconds: a launch that has started no process after this long (and made no progress
copying its files) is given up with a clear reason, and retried as the run's retry policy says."""

from __future__ import annotations

import json
import time
from datetime import timedelta

from tests.controller.test_snapshot_copy import endless_snapshot


def test_a_launch_that_never_starts_a_process_fails_after_the_launch_timeout_and_is_retried(platform_factory):
    platform = platform_factory(launch_timeout_seconds=1.0)
    platform.submit(
        "stuck",
        "echo never",
        snapshot=endless_snapshot(platform),
        retryPolicy={"maxRetries": 1, "backoffSeconds": 0},
    )
    run = platform.wait_phase("stuck", "Failed", timeout=15)
    st = run.status
    assert st.reason == "LaunchFailed"
    assert "launch_timeout_seconds=1" in st.message and "attempt 2 of 2" in st.message
    assert [(a.attempt, a.reason) for a in st.attempts] == [(1, "LaunchFailed"), (2, "LaunchFailed")]
    for att in st.attempts:  # each given-up launch was stopped: its supervisor recorded the end
        assert att.finishedAt - att.startedAt >= timedelta(seconds=1)
        exit_file = platform.home / "runs" / run.uid / f"attempt-{att.attempt}" / "exit.json"
        deadline = time.monotonic() + 5
        while not exit_file.exists():
            assert time.monotonic() < deadline, f"attempt {att.attempt} still running"
            time.sleep(0.02)
        assert json.loads(exit_file.read_text())["stopped"] is True
    reasons = [e.reason for e in platform.store.events(run.uid)]
    assert reasons.count("Retrying") == 1
