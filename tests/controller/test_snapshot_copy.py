"""Copying a run's snapshot happens in its own supervisor, off the controller's thread: a stop or a timeout
of another run is acted on while a big snapshot is still being copied."""

from __future__ import annotations

import os

from tests.controller.conftest import PROJECT, Platform


def endless_snapshot(platform: Platform) -> str:
    """A snapshot of one file whose blob is a named pipe nobody writes to: copying it never ends, as a
    2 GiB snapshot on a slow disk takes its time, only more reliably."""
    digest = "f" * 64
    blob = platform.blobs.path(digest)
    blob.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(blob)
    snapshot = "sha256:" + "e" * 64
    platform.store.put_snapshot(
        snapshot, {"big.bin": {"sha256": digest, "size": 2 << 30, "mode": 0o644}}, PROJECT
    )
    return snapshot


def test_a_stop_is_acted_on_while_another_runs_snapshot_is_being_copied(platform_factory):
    platform = platform_factory()
    platform.submit("big", "echo never", snapshot=endless_snapshot(platform))
    platform.wait_phase("big", "Running")  # launched: its supervisor is copying
    platform.submit("x", "sleep 120")
    platform.wait_phase("x", "Running")
    platform.stop("x")
    x = platform.wait_phase("x", "Cancelled", timeout=20)
    log = (platform.home / "runs" / x.uid / "attempt-1" / "output.log").read_text()
    assert x.status.reason == "Stopped" and "grace period over" not in log, log  # SIGTERM was enough
    assert platform.run("big").status.phase == "Running"  # still copying

    platform.stop("big")  # a stop reaches a run whose files are still being copied, at once
    big = platform.wait_phase("big", "Cancelled", timeout=10)
    assert big.status.attempts[-1].reason == "Stopped"
    log = (platform.home / "runs" / big.uid / "attempt-1" / "output.log").read_text()
    assert "stopped while copying the snapshot" in log and " stdout " not in log
