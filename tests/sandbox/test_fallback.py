"""Where a run cannot be sandboxed, through a real server: it still runs and its status says why. (The
modes off and required: tests/runtime/test_isolation.py.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.support import ServerProcess, experiment, read_logs

from runyard.runtime.local.sandbox import NOT_INSTALLED


def server_without_bwrap(home: Path) -> ServerProcess:
    """A server whose PATH holds no bubblewrap (runs name their commands by path here)."""
    empty = home.parent / "empty-path"
    empty.mkdir(parents=True, exist_ok=True)
    return ServerProcess(home, env={**os.environ, "PATH": str(empty)}).start()


def test_without_bubblewrap_a_run_works_unsandboxed_and_says_why(tmp_path):
    srv = server_without_bwrap(tmp_path / "home")
    try:
        api = srv.api()
        assert api.put(
            "/experiments/bare", json=experiment("bare", ["/bin/sh", "-c", "echo works"])
        ).is_success
        lines, end = read_logs(api, "bare")
        assert end["phase"] == "Succeeded" and [line["text"] for line in lines] == ["works"]
        status = api.get("/runs/bare").json()["status"]
        assert status["sandbox"] == {"mechanism": "none", "reason": NOT_INSTALLED}
        cond = next(c for c in status["conditions"] if c["type"] == "Sandboxed")
        assert (cond["status"], cond["reason"]) == ("False", "Unsandboxed")

        # Seen running, it gets a warning event as well.
        assert api.put("/experiments/long", json=experiment("long", ["/bin/sleep", "60"])).is_success
        deadline = time.monotonic() + 20
        while not ((r := api.get("/runs/long")).status_code == 200 and r.json()["status"].get("sandbox")):
            assert time.monotonic() < deadline, r.text  # the experiment makes its run a moment later
            time.sleep(0.05)
        api.post("/runs/long/stop")
        events = api.get("/runs/long/events").json()["items"]
        warning = next(e for e in events if e["reason"] == "Unsandboxed")
        assert warning["type"] == "Warning" and NOT_INSTALLED in warning["message"]
    finally:
        srv.stop()
