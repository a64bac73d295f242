"""Attach to a run that is not sandboxed (RUNYARD_RUNTIME_SANDBOX=off): the command runs on the host, in the
run's work directory and environment, and what it started still ends with the terminal."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tests.attach.conftest import Terminal, attach_url
from tests.attach.test_attach_ws import host_processes
from tests.support import ServerProcess, experiment, until, wait_phase
from websockets.sync.client import connect


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Iterator[ServerProcess]:
    env = {**os.environ, "RUNYARD_RUNTIME_SANDBOX": "off"}
    srv = ServerProcess(tmp_path_factory.mktemp("attach-plain") / "home", env=env).start()
    api = srv.api()
    api.put("/experiments/bare", json=experiment("bare", "exec sleep 86400"))
    wait_phase(api, "bare", {"Running"}, timeout=60)
    yield srv
    api.post("/runs/bare/stop")
    srv.stop()


def test_an_unsandboxed_run_is_entered_in_its_directory_and_environment(plain):
    uid = plain.api().get("/runs/bare").json()["metadata"]["uid"]
    headers = {"Authorization": f"Bearer {plain.token}"}
    ws = connect(attach_url(plain, "bare", term="vt100"), additional_headers=headers, proxy=None, legacy=True)
    with ws:
        term = Terminal(ws)
        term.type("echo run-$RUNYARD_RUN_UID-$TERM; pwd; echo end-$((1 + 1))\r")
        seen = term.expect("end-2")
        assert f"run-{uid}-vt100" in seen  # the client's terminal type
        assert f"/runs/{uid}/attempt-1/work" in seen
        term.type("sleep 4325 &\r")
        until(lambda: host_processes(b"sleep\x004325\x00"), "the background sleep started")
        term.type("exit 9\r")
        assert term.wait_exit() == 9
    until(lambda: not host_processes(b"sleep\x004325\x00"), "the background sleep ended", timeout=15)


def test_an_unsandboxed_runs_end_hangs_its_terminal_up(plain):
    api = plain.api()
    api.put("/experiments/brief", json=experiment("brief", "exec sleep 86400"))
    wait_phase(api, "brief", {"Running"}, timeout=60)
    headers = {"Authorization": f"Bearer {plain.token}"}
    with connect(attach_url(plain, "brief"), additional_headers=headers, proxy=None) as ws:
        term = Terminal(ws)
        term.type("echo $((6 * 7))\r")
        term.expect("42")
        assert api.post("/runs/brief/stop").status_code == 200
        assert term.wait_exit() == -1  # SIGHUP: the shell is not in the run's process group
