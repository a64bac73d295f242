"""A replica started as runs are, by a real LocalRuntime (sandboxed where the host allows): it gets the
model's socket as fd 5, its admin socket is reachable from outside the sandbox, and a stop drains it."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from tests.serving_replica.replica_support import AccessServer, client
from tests.support import until

from runyard.runtime.base import AttemptState, LaunchSpec
from runyard.runtime.local import LocalRuntime
from runyard.runtime.local.sandbox import probe
from runyard.serving import protocol
from runyard.serving.replica_admin import get

SANDBOXED = probe("auto").available


@pytest.mark.parametrize(
    "sandbox",
    ["off", pytest.param("required", marks=pytest.mark.skipif(not SANDBOXED, reason="no bubblewrap"))],
)
def test_replica_as_a_run(
    tmp_path: Path, listener: socket.socket, project: Path, access: AccessServer, sandbox: str
):
    files = [(str(project / "handlers.py"), "handlers.py", 0o644)]  # the snapshot: the project's handler
    rt = LocalRuntime(tmp_path / "home", snapshot_files=lambda _: files, sandbox=sandbox)
    env = {
        protocol.ENV_LISTEN_FD: str(protocol.LISTEN_FD),
        protocol.ENV_MODEL: "m1",
        protocol.ENV_VERSION: "1",
        protocol.ENV_HANDLER: "handlers:predict",
        "RUNYARD_API_URL": access.url,
        "RUNYARD_PROJECT": "p1",
        "RUNYARD_RUN_UID": "rep1",
        "RUNYARD_ATTEMPT": "1",
    }
    spec = LaunchSpec(
        run_uid="rep1", project="p1", name="m1-v1-abc", attempt=1, snapshot="s1", env=env,
        argv=[sys.executable, "-m", "runyard.serving.replica"], listen_fd=listener.fileno(), stop_grace=20,
    )  # fmt: skip
    admin = protocol.admin_socket("rep1", 1)
    try:
        handle = rt.launch(spec)

        def ready() -> bool:
            assert rt.observe(handle).state != AttemptState.EXITED, rt.read_logs(handle).entries
            try:
                return get(admin, "/ready")[0] == 200
            except OSError:
                return False

        until(ready, "the replica is ready")
        with client(f"http://127.0.0.1:{listener.getsockname()[1]}") as c:
            assert c.post("/predict", json={"x": 5}).json()["y"] == 10
        assert get(admin, "/metrics")[1]["requests"] == 1
        assert rt.observe(handle).sandbox["mechanism"] == ("bubblewrap" if sandbox == "required" else "none")
        rt.stop(handle, grace=20)
        observed = until(
            lambda: (o := rt.observe(handle)).state == AttemptState.EXITED and o, "the replica exited"
        )
        texts = [e.text for e in rt.read_logs(handle).entries]
        assert observed.exit_code == 0, texts
        assert "drained" in texts and "grace period over: sent SIGKILL" not in texts, texts
    finally:
        rt.close()
