"""Sessions end to end: a real server, JupyterLab in a real sandboxed run, stop and start keeping files,
idle reclamation, a crash, a kill -9 of the server, deletion."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from tests.sessions_controller.session_support import (
    cli,
    events,
    jupyter,
    kill_session_process,
    session_status,
    wait_session,
)
from tests.support import ServerProcess, fresh_postgres_database, resource, until


def _put_file(srv: ServerProcess, status: dict, name: str, text: str) -> None:
    with jupyter(srv, status) as jp:
        body = {"type": "file", "format": "text", "content": text}
        assert jp.put(f"api/contents/{name}", json=body).status_code in (200, 201)


def _read_file(srv: ServerProcess, status: dict, name: str) -> str:
    with jupyter(srv, status) as jp:
        return jp.get(f"api/contents/{name}").json()["content"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_session_starts_stops_and_starts_again_with_the_files_it_kept(backend, tmp_path):
    store = fresh_postgres_database() if backend == "postgres" else None
    srv = ServerProcess(tmp_path / "home", store).start()
    try:
        api = srv.api()
        project = tmp_path / "project"
        project.mkdir()
        (project / "train.py").write_text("print('hi')\n")
        done = cli(srv, "session", "start", "nb", "--path", str(project), "--idle-timeout", "3600")
        assert done.returncode == 0, done.stderr
        status = session_status(api, "nb")
        assert status["phase"] == "Running"
        assert done.stdout.strip() == status["url"] and status["url"].endswith("/sessions/default/nb/")
        assert _read_file(srv, status, "train.py") == "print('hi')\n"  # the snapshot, copied in
        _put_file(srv, status, "notes.txt", "kept")
        listed = json.loads(cli(srv, "session", "list", "-o", "json").stdout)
        assert [d["metadata"]["name"] for d in listed["items"]] == ["nb"]
        table = cli(srv, "session", "list").stdout
        assert "nb" in table and "Running" in table and "jupyterlab" in table

        stopped = cli(srv, "session", "stop", "nb")
        assert stopped.returncode == 0, stopped.stderr
        st = session_status(api, "nb")
        assert (st["phase"], st["reason"]) == ("Stopped", "Stopped")
        with pytest.raises(httpx.TransportError):  # its Jupyter is gone
            jupyter(srv, status).get("api/status")
        assert api.get(f"/runs/{status['run']}").json()["status"]["phase"] == "Cancelled"

        (project / "train.py").write_text("print('changed')\n")  # the kept files win over the directory
        again = cli(srv, "session", "start", "nb", "--path", str(project))
        assert again.returncode == 0, again.stderr
        fresh = session_status(api, "nb")
        assert fresh["run"] != status["run"]
        assert _read_file(srv, fresh, "notes.txt") == "kept"
        assert _read_file(srv, fresh, "train.py") == "print('hi')\n"
    finally:
        srv.stop()


def test_an_unused_session_is_warned_then_stopped_as_idle_and_starts_again(server):
    api = server.api()
    api.put("/sessions/idle", json=resource("Session", "idle", idleTimeoutSeconds=4))
    wait_session(api, "idle", "Running")
    st = wait_session(api, "idle", "Stopped", timeout=30)
    assert st["reason"] == "Idle" and "without kernel, terminal or HTTP activity" in st["message"]
    reasons = events(api, "idle")
    assert reasons.index("IdleSoon") < reasons.index("Idle")
    doc = api.get("/sessions/idle").json()
    assert doc["spec"]["stopped"] is True  # reclaimed: it stays stopped until started
    assert api.get(f"/runs/{st['run']}").json()["status"]["phase"] == "Cancelled"
    again = cli(server, "session", "start", "idle", "--idle-timeout", "3600")
    assert again.returncode == 0, again.stderr
    assert session_status(api, "idle")["phase"] == "Running"


def test_activity_keeps_a_session_running(server):
    api = server.api()
    api.put("/sessions/busy", json=resource("Session", "busy", idleTimeoutSeconds=4))
    status = wait_session(api, "busy", "Running")
    with jupyter(server, status) as jp:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # Jupyter counts its API's use as activity
            assert jp.get("api/contents").status_code == 200
            assert session_status(api, "busy")["phase"] == "Running"
            time.sleep(0.5)


def test_a_session_whose_jupyter_dies_is_failed_until_started_again(server):
    api = server.api()
    api.put("/sessions/crash", json=resource("Session", "crash"))
    status = wait_session(api, "crash", "Running")
    kill_session_process(server, api, status)
    st = wait_session(api, "crash", "Failed")
    assert status["run"] in st["message"] and "runyard session start crash" in st["message"]
    time.sleep(1)  # it is not restarted in a loop behind the user's back
    assert session_status(api, "crash")["run"] == status["run"]
    again = cli(server, "session", "start", "crash")
    assert again.returncode == 0, again.stderr
    assert session_status(api, "crash")["run"] != status["run"]


def test_a_session_survives_a_kill9_of_the_server_and_is_adopted(server):
    api = server.api()
    api.put("/sessions/keep", json=resource("Session", "keep"))
    status = wait_session(api, "keep", "Running")
    server.kill9()
    with jupyter(server, status) as jp:  # the server is gone; Jupyter is not
        assert jp.get("api/status").status_code == 200
    srv = ServerProcess(server.home, server.store_url).start()
    try:
        api = srv.api()
        st = until(lambda: (s := session_status(api, "keep"))["phase"] == "Running" and s, "still running")
        assert (st["run"], st["port"]) == (status["run"], status["port"])
        run_events = [e["reason"] for e in api.get(f"/runs/{status['run']}/events").json()["items"]]
        assert "Adopted" in run_events
        with jupyter(srv, st) as jp:
            assert jp.get("api/status").status_code == 200
        proxied = httpx.get(
            f"{srv.url}/sessions/default/keep/api/status", headers={"Authorization": f"Bearer {srv.token}"}
        )
        assert proxied.status_code == 200  # through the restarted server's proxy too
    finally:
        srv.stop()


def test_deleting_a_session_removes_its_runs_and_its_directory(server):
    api = server.api()
    doc = api.put("/sessions/gone", json=resource("Session", "gone")).json()
    status = wait_session(api, "gone", "Running")
    directory = server.home / "sessions" / doc["metadata"]["uid"]
    assert directory.is_dir()
    assert api.delete("/sessions/gone").status_code == 200
    until(lambda: api.get("/sessions/gone").status_code == 404, "session deleted")
    until(lambda: api.get(f"/runs/{status['run']}").status_code == 404, "its run deleted")
    assert not directory.exists()


def test_session_attach_is_a_terminal_in_the_session_and_its_use_keeps_it_up(server):
    api = server.api()
    doc = api.put(
        "/sessions/term", json=resource("Session", "term", editor="terminal", idleTimeoutSeconds=4)
    ).json()
    wait_session(api, "term", "Running")
    ticks = "for i in $(seq 16); do echo tick; sleep 0.5; done; pwd; exit 7"
    done = cli(server, "session", "attach", "term", "--command=sh", "--command=-c", f"--command={ticks}")
    assert done.returncode == 7, done.stderr
    assert done.stdout.count("tick") == 16
    assert done.stdout.strip().endswith(doc["metadata"]["uid"])  # in the session's kept directory
    assert session_status(api, "term")["phase"] == "Running"  # 8 s of terminal use, idle timeout 4 s
    assert "Idle" not in events(api, "term")
