"""Temporary errors are retried with exponential backoff; a permanent one fails the object with a Warning
event instead of looping. Failures are injected through real code paths: a run whose stored status no
reconciler can act on, and a PostgreSQL database that refuses connections for a while."""

from __future__ import annotations

import logging
import re
import time

import psycopg
import pytest
from tests.controller.conftest import PROJECT, Platform
from tests.support import fresh_postgres_database

from runyard.core.phases import Phase
from runyard.core.resources import ObjectMeta, Run, RunSpec, RunStatus
from runyard.store import Store


def test_a_run_no_reconciler_can_act_on_fails_with_a_warning_and_the_loop_goes_on(platform_factory):
    platform = platform_factory()
    # Running, yet no attempt: a record no code path can make sense of (a bug, or a hand-edited row).
    broken = Run(
        metadata=ObjectMeta(name="broken", project=PROJECT),
        spec=RunSpec(command="true"),
        status=RunStatus(phase=Phase.RUNNING),
    )
    platform.notifier.touch(platform.store.create(broken).uid)
    platform.submit("fine", "true")
    assert platform.wait_phase("fine", "Succeeded").status.reason == "Completed"
    run = platform.wait_phase("broken", "Failed", timeout=15)
    assert run.status.reason == "ReconcileError"
    assert run.status.message.startswith("the controller gave up on this Run: IndexError")
    warnings = [e for e in platform.store.events(run.uid) if e.reason == "ReconcileError"]
    assert [e.type for e in warnings] == ["Warning"]


@pytest.mark.parametrize("tick", [1.0, 4.0])
def test_a_store_outage_is_retried_with_growing_delays_and_nothing_is_lost(tmp_path, caplog, tick):
    """With a long tick, the loop wakes between failed passes with nothing queued and no resync due: such a
    pass touches no store, so it must not count as the store being back (the delays started over)."""
    url = fresh_postgres_database()
    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    platform = Platform(tmp_path / "home", Store(url), tick_seconds=tick)
    caplog.set_level(logging.WARNING, logger="runyard.controller")
    try:
        platform.controller.start()
        platform.submit("through", "sleep 1")
        platform.wait_phase("through", "Running")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            deadline = time.monotonic() + 20
            while len(_delays(caplog)) < 3:  # the run exits meanwhile: its end cannot be recorded yet
                assert time.monotonic() < deadline, caplog.text
                time.sleep(0.05)
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        assert platform.wait_phase("through", "Succeeded", timeout=30).status.exitCode == 0
        delays = _delays(caplog)
        assert delays[:3] == [0.5, 1.0, 2.0], caplog.text
    finally:
        platform.close()


def _delays(caplog) -> list[float]:
    """The delays the loop chose after each failed pass."""
    return [float(m) for m in re.findall(r"controller pass failed .*; retrying in ([0-9.]+)s", caplog.text)]
