"""The session proxy end to end: a real server, a Session applied and Running (JupyterLab in its sandboxed
run), reached only through /sessions/<project>/<name>/ with a runyard token: a kernel executes code, a
terminal echoes, files go in and out, and nobody without write access to the project gets in."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from tests.sessions_proxy.proxy_support import V1, execute, terminal_until
from tests.support import API, ServerProcess, resource, until
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect

PREFIX = "/sessions/default/nb/"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("proxy") / "home").start()
    api = srv.api()
    assert api.post("/sessions", json=resource("Session", "nb")).status_code == 201
    until(
        lambda: api.get("/sessions/nb").json()["status"].get("phase") == "Running", "session nb Running", 60
    )
    yield srv
    srv.stop()


def token(srv: ServerProcess, role: str, project: str) -> str:
    admin = {"Authorization": f"Bearer {srv.token}"}
    httpx.post(srv.url + API + "/projects", json={"name": project}, headers=admin)  # 409 once it exists
    body = {"name": f"{role} of {project}", "role": role, "project": project}
    made = httpx.post(srv.url + API + "/tokens", json=body, headers=admin)
    assert made.status_code == 201, made.text
    return made.json()["token"]


def client(srv: ServerProcess, secret: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {secret or srv.token}"}
    return httpx.Client(base_url=srv.url + PREFIX, headers=headers, timeout=30)


def ws_url(srv: ServerProcess, path: str) -> str:
    return "ws://" + urlsplit(srv.url).netloc + PREFIX + path


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def new_kernel(srv: ServerProcess) -> str:
    with client(srv) as c:
        made = c.post("api/kernels", json={"name": "python3"})
        assert made.status_code == 201, made.text
        return made.json()["id"]


@pytest.mark.parametrize("subprotocol", [None, V1])
def test_a_kernel_executes_code_through_the_proxy(server, subprotocol):
    kernel = new_kernel(server)
    offered = [subprotocol] if subprotocol else None
    with connect(
        ws_url(server, f"api/kernels/{kernel}/channels"),
        additional_headers=bearer(server.token),
        subprotocols=offered,
    ) as ws:
        assert ws.subprotocol == subprotocol  # Jupyter's choice, passed back through the proxy
        assert execute(ws, "1+1") == "2"
        # the kernel runs the session's Python (the environment's), and never sees Jupyter's token
        assert (
            execute(ws, "import os, sys; sys.executable == os.environ['RUNYARD_SESSION_KERNEL_PYTHON']")
            == "True"
        )
        assert execute(ws, "'JUPYTER_TOKEN' in __import__('os').environ") == "False"


def test_a_terminal_round_trips_through_the_proxy(server):
    with client(server) as c:
        made = c.post("api/terminals")
        assert made.status_code == 200, made.text
        name = made.json()["name"]
    with connect(
        ws_url(server, f"terminals/websocket/{name}"), additional_headers=bearer(server.token)
    ) as ws:
        assert "6x7=42" in terminal_until(ws, "echo 6x7=$((6*7))\r", "6x7=42")
        ws.send(json.dumps(["stdin", "exit\r"]))  # the shell ends: Jupyter closes, and so does the proxy
        with pytest.raises(ConnectionClosedOK):
            until(lambda: ws.recv(timeout=20) and False, "the terminal's websocket closes", 30)
        assert ws.close_code == 1000


def test_the_file_browser_reads_and_writes_through_the_proxy(server):
    with client(server) as c:
        body = {"type": "file", "format": "text", "content": "through the proxy\n" * 20_000}
        saved = c.put("api/contents/proxied.txt", json=body)
        assert saved.status_code in (200, 201), saved.text
        listing = c.get("api/contents").json()
        assert "proxied.txt" in [item["name"] for item in listing["content"]]
        read = c.get("api/contents/proxied.txt", params={"content": 1})
        assert read.json()["content"] == body["content"]
        assert c.get("files/proxied.txt").content == body["content"].encode()
        deleted = c.delete("api/contents/proxied.txt")
        assert deleted.status_code == 204, deleted.text
        assert c.get("api/contents/proxied.txt").status_code == 404  # Jupyter's own answer, passed on


def test_bodies_stream_both_ways_chunked_or_not(server):
    text = "".join(f"line {i}\n" for i in range(400_000))  # ~5 MB
    doc = json.dumps({"type": "file", "format": "text", "content": text}).encode()

    def chunks():  # no Content-Length: sent chunked, as a browser's streamed upload is
        for i in range(0, len(doc), 100_000):
            yield doc[i : i + 100_000]

    with client(server) as c:
        saved = c.put("api/contents/big.txt", content=chunks())
        assert saved.status_code in (200, 201), saved.text
        with c.stream("GET", "files/big.txt") as download:
            assert download.status_code == 200
            parts = list(download.iter_raw())
        assert b"".join(parts).decode() == text and len(parts) > 1
        head = c.head("files/big.txt")
        assert head.status_code == 200 and head.content == b""
        assert c.get("api/status").status_code == 200  # the kept-alive upstream connection still works


def test_http_needs_a_token_with_write_access_to_the_project(server):
    path = server.url + PREFIX + "api/contents"
    missing = httpx.get(path)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "Unauthorized"
    assert "?token=" in missing.json()["error"]["message"]
    assert httpx.get(path, headers=bearer("ryd_not-a-token")).status_code == 401
    other = httpx.get(path, headers=bearer(token(server, "editor", "other")))
    assert other.status_code == 403 and other.json()["error"]["code"] == "Forbidden"
    viewer = httpx.post(path, json={"type": "file"}, headers=bearer(token(server, "viewer", "default")))
    assert viewer.status_code == 403
    assert httpx.get(path, headers=bearer(token(server, "editor", "default"))).status_code == 200


def test_websockets_need_a_token_with_write_access_to_the_project(server):
    kernel = new_kernel(server)
    url = ws_url(server, f"api/kernels/{kernel}/channels")
    for headers, status in [
        ({}, 401),
        (bearer(token(server, "editor", "other")), 403),
        ({**bearer(server.token), "Origin": "http://evil.example"}, 403),  # a page of another site
    ]:
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers=headers).close()
        assert refused.value.response.status_code == status
        assert json.loads(refused.value.response.body)["error"]["code"] in ("Unauthorized", "Forbidden")
    same_origin = {**bearer(server.token), "Origin": server.url}
    with connect(url, additional_headers=same_origin) as ws:
        assert execute(ws, "6*7") == "42"
    with pytest.raises(InvalidStatus) as missing:  # Jupyter's own refusal, passed on
        connect(
            ws_url(server, "api/kernels/no-such-kernel/channels"), additional_headers=bearer(server.token)
        )
    assert missing.value.response.status_code == 404


def test_a_browser_signs_in_once_with_a_cookie_scoped_to_the_session(server):
    editor = token(server, "editor", "default")
    browser = httpx.Client(base_url=server.url, timeout=30)
    first = browser.get(PREFIX + "lab", params={"token": editor, "reset": ""})
    assert first.status_code == 302
    assert first.headers["location"] == PREFIX + "lab?reset="  # the token is out of the URL
    cookie = first.headers["set-cookie"].lower()
    assert f"runyard-session={editor.lower()}" in cookie
    assert f"path={PREFIX}" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # plain http here
    assert browser.get(PREFIX + "api/contents").status_code == 200  # the cookie alone
    assert browser.get("/sessions/default/nb2/api/status").status_code == 401  # not sent outside its path
    page = browser.get(PREFIX + "lab")
    assert page.status_code == 200 and '"token": ""' in page.text  # Jupyter's token is not in the page
    with connect(
        ws_url(server, f"api/kernels/{new_kernel(server)}/channels"),
        additional_headers={"Cookie": f"runyard-session={editor}", "Origin": server.url},
    ) as ws:
        assert execute(ws, "2**10") == "1024"
    forged = httpx.get(server.url + PREFIX + "api/contents", cookies={"runyard-session": "ryd_forged"})
    assert forged.status_code == 401


def test_the_bare_session_url_leads_to_jupyterlab(server):
    with client(server) as c:
        bare = c.get(server.url + "/sessions/default/nb")
        assert bare.status_code == 307 and bare.headers["location"] == PREFIX
        root = c.get("")
        assert root.status_code == 302 and root.headers["location"].startswith(PREFIX + "lab")


def test_a_session_that_is_not_running_is_a_json_conflict(server):
    api = server.api()
    assert api.post("/sessions", json=resource("Session", "idle", stopped=True)).status_code == 201
    with httpx.Client(base_url=server.url, headers=bearer(server.token)) as c:
        stopped = c.get("/sessions/default/idle/api/status")
        assert stopped.status_code == 409
        assert "runyard session start idle" in stopped.json()["error"]["message"]
        missing = c.get("/sessions/default/nobody/api/status")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"
    with pytest.raises(InvalidStatus) as refused:
        connect(
            ws_url(server, "api/events/subscribe").replace("/nb/", "/idle/"),
            additional_headers=bearer(server.token),
        )
    assert refused.value.response.status_code == 409


def runyard(srv: ServerProcess, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runyard", *args], env=srv.env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_a_restarted_session_is_reached_on_its_new_run(server):
    api = server.api()
    assert api.post("/sessions", json=resource("Session", "again")).status_code == 201
    until(lambda: api.get("/sessions/again").json()["status"].get("phase") == "Running", "again Running", 60)
    first = api.get("/sessions/again").json()["status"]
    with httpx.Client(base_url=server.url + "/sessions/default/again/", headers=bearer(server.token)) as c:
        assert c.get("api/status").status_code == 200
        runyard(server, "session", "stop", "again")
        until(lambda: c.get("api/status").status_code == 409, "a stopped session is a 409", 10)
        runyard(server, "session", "start", "again")
        second = api.get("/sessions/again").json()["status"]
        assert (second["run"], second["port"]) != (first["run"], first["port"])
        assert c.get("api/status").status_code == 200  # the new run, with its own token


def test_traffic_through_the_proxy_keeps_a_session_from_idling(server):
    """The gateway's activity, not only Jupyter's own: the JupyterLab page is not an API call, so Jupyter
    does not count it, and the session would be reclaimed after 4 s without the proxy's."""
    api = server.api()
    assert api.post("/sessions", json=resource("Session", "lively", idleTimeoutSeconds=4)).status_code == 201
    until(
        lambda: api.get("/sessions/lively").json()["status"].get("phase") == "Running", "lively Running", 60
    )
    with httpx.Client(base_url=server.url + "/sessions/default/lively/", headers=bearer(server.token)) as c:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert c.get("lab").status_code == 200
            assert api.get("/sessions/lively").json()["status"]["phase"] == "Running"
            time.sleep(0.5)  # pacing the traffic, as a browser tab's would be
    st = until(
        lambda: (s := api.get("/sessions/lively").json()["status"])["phase"] == "Stopped" and s,
        "an unused session is reclaimed",
        30,
    )
    assert st["reason"] == "Idle"
