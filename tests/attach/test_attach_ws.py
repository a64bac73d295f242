"""The attach websocket against a real server and a running sandboxed run: a shell on a PTY inside it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from tests.attach.conftest import Terminal, attach_url
from tests.support import API, experiment, until, wait_phase
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

PROMPT_SAFE = "echo $((6 * 7))\r"  # the echo of what was typed never holds the answer, 42


def host_processes(argv: bytes) -> list[int]:
    """Host pids of the processes whose command line is exactly `argv` (NUL-separated)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and Path(f"/proc/{pid}/cmdline").read_bytes() == argv:
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_a_shell_round_trip_with_resize_and_exit_status(terminal):
    term = terminal(cols=100, rows=30)
    term.type(PROMPT_SAFE)
    term.expect("42")
    term.type("echo term-$TERM-$((1 + 1))\r")
    term.expect("term-xterm-256color-2")
    term.type("stty size\r")
    term.expect("30 100")
    term.resize(120, 40)
    term.type("stty size\r")
    term.expect("40 120")
    term.type("exit 3\r")
    assert term.wait_exit() == 3
    with pytest.raises(Exception) as closed:
        term.ws.recv(timeout=10)
    assert getattr(closed.value, "rcvd", None) is not None and closed.value.rcvd.code == 1000


def test_ctrl_c_interrupts_the_command_and_the_shell_survives(terminal):
    term = terminal()
    term.type("sleep 4321\r")
    until(lambda: host_processes(b"sleep\x004321\x00"), "the sleep started in the attached shell")
    term.type("\x03")
    until(lambda: not host_processes(b"sleep\x004321\x00"), "Ctrl-C ended the sleep")
    term.type("echo status-$?-alive-$((3 + 4))\r")
    term.expect("status-130-alive-7")  # the sleep died of SIGINT; the shell answers still
    term.type("exit\r")
    assert term.wait_exit() == 0


def test_what_the_terminal_runs_is_in_the_runs_cgroups(srv, busy, terminal):
    uid = srv.api().get(f"/runs/{busy}").json()["metadata"]["uid"]
    term = terminal()
    term.type("sleep 4326\r")
    (pid,) = until(lambda: host_processes(b"sleep\x004326\x00"), "the sleep started in the attached shell")
    groups = Path(f"/proc/{pid}/cgroup").read_text()
    assert uid in groups, groups  # the run's limits (pids at least) hold for it too


def test_the_shell_is_inside_the_sandbox_without_capabilities(srv, terminal):
    assert (srv.home / "admin-token").exists()
    term = terminal()
    term.type("cat /tmp/run-marker; echo end-$((1 + 1))\r")
    assert "started" in term.expect("end-2")  # the run's private /tmp
    token = srv.home / "admin-token"
    term.type(f"test -e {token} && echo VISIBLE || echo HIDDEN; echo end-$((2 + 2))\r")
    assert "HIDDEN" in term.expect("end-4")  # the server's data directory is hidden
    term.type("ps -e -o pid=,args=; echo end-$((3 + 3))\r")
    seen = term.expect("end-6")
    sleeps = [line.split()[0] for line in seen.splitlines() if "sleep 86400" in line]
    assert sleeps and int(sleeps[0]) < 10, seen  # the run's command, a low pid of its PID namespace
    term.type("grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status; echo end-$((4 + 4))\r")
    status = dict(line.split(":\t") for line in term.expect("end-8").splitlines() if ":\t" in line)
    assert status["CapEff"].strip() == "0000000000000000", status
    assert status["CapPrm"].strip() == "0000000000000000", status
    assert status["NoNewPrivs"].strip() == "1", status
    if os.geteuid() == 0:
        term.type("grep CapBnd /proc/self/status; echo end-$((5 + 5))\r")
        assert "0000000000000000" in term.expect("end-10")  # what the sandbox dropped stays dropped
    term.type("pwd; echo end-$((6 + 6))\r")
    assert term.expect("end-12").strip().splitlines()[-1].endswith("/work")  # the run's work directory


def test_a_command_instead_of_a_shell_and_its_exit_by_signal(terminal):
    term = terminal(command=["sh", "-c", "echo via-$((2 * 21)); exit 7"])
    term.expect("via-42")
    assert term.wait_exit() == 7
    term = terminal(command=["sh", "-c", "kill -TERM $$"])
    assert term.wait_exit() == -15


def test_nothing_started_in_the_terminal_outlives_it(terminal):
    term = terminal()
    term.type("sleep 4324 &\r")
    until(lambda: host_processes(b"sleep\x004324\x00"), "the background sleep started")
    term.type("exit 0\r")
    assert term.wait_exit() == 0
    until(lambda: not host_processes(b"sleep\x004324\x00"), "the background sleep ended", timeout=15)


def test_a_client_that_goes_away_ends_what_it_started(terminal):
    term = terminal()
    term.type("sleep 4322\r")
    until(lambda: host_processes(b"sleep\x004322\x00"), "the sleep started in the attached shell")
    term.ws.close()
    until(lambda: not host_processes(b"sleep\x004322\x00"), "the sleep ended with its client", timeout=15)


def test_the_terminal_ends_with_its_run(srv, busy):
    api = srv.api()
    api.put("/experiments/brief", json=experiment("brief", "exec sleep 86400"))
    wait_phase(api, "brief", {"Running"}, timeout=60)
    headers = {"Authorization": f"Bearer {srv.token}"}
    with connect(attach_url(srv, "brief"), additional_headers=headers, proxy=None) as ws:
        term = Terminal(ws)
        term.type(PROMPT_SAFE)
        term.expect("42")
        assert api.post("/runs/brief/stop").status_code == 200
        assert term.wait_exit() < 0  # killed with the sandbox's PID namespace (or hung up)


def refusal(url: str, headers: dict) -> tuple[int, dict]:
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=headers, proxy=None, legacy=True)
    response = refused.value.response
    return response.status_code, json.loads(bytes(response.body or b"{}"))


def test_refused_without_write_access_to_the_project_or_a_running_run(srv, busy):
    url = attach_url(srv, busy)
    status, body = refusal(url, {})
    assert status == 401 and body["error"]["code"] == "Unauthorized"
    admin = httpx.Client(base_url=srv.url + API, headers={"Authorization": f"Bearer {srv.token}"})
    assert admin.post("/projects", json={"name": "other"}).status_code in (200, 201)
    other = admin.post("/tokens", json={"name": "o", "role": "editor", "project": "other"}).json()["token"]
    status, body = refusal(url, {"Authorization": f"Bearer {other}"})
    assert status == 403 and body["error"]["code"] == "Forbidden"
    viewer = admin.post("/tokens", json={"name": "v", "role": "viewer", "project": "default"}).json()["token"]
    status, _ = refusal(url, {"Authorization": f"Bearer {viewer}"})
    assert status == 403

    api = srv.api()
    api.put("/experiments/done", json=experiment("done", "true"))
    wait_phase(api, "done", {"Succeeded"})
    status, body = refusal(attach_url(srv, "done"), {"Authorization": f"Bearer {srv.token}"})
    assert status == 409 and "Succeeded" in body["error"]["message"], body
    status, _ = refusal(attach_url(srv, "nope"), {"Authorization": f"Bearer {srv.token}"})
    assert status == 404
    status, body = refusal(attach_url(srv, busy, cols="wide"), {"Authorization": f"Bearer {srv.token}"})
    assert status == 422 and body["error"]["details"][0]["field"] == "cols"
    status, body = refusal(attach_url(srv, busy, term="x;rm"), {"Authorization": f"Bearer {srv.token}"})
    assert status == 422 and body["error"]["details"][0]["field"] == "term"
