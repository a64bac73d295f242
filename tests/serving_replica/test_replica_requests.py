"""The replica's request path against real replica processes: JSON round trip, errors that keep it up,
authentication with its cache, metrics, sampled request logging."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.serving_replica.replica_support import GOOD, OTHER, AccessServer, Replica, client
from tests.support import until

import runyard
from runyard.serving.protocol import BUCKETS


@pytest.fixture
def replica(listener: socket.socket, project: Path, access: AccessServer):
    r = Replica(listener, project, access.url, RUNYARD_MODEL_HANDLER="handlers:predict").wait_ready()
    yield r
    r.stop()


def url(listener: socket.socket) -> str:
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_round_trip_on_both_paths_and_health(replica: Replica, listener: socket.socket):
    with client(url(listener)) as c:
        for path in ("/invocations", "/predict"):
            r = c.post(path, json={"x": 21})
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
            assert r.json() == {"y": 42, "pid": replica.proc.pid}
        assert c.post("/predict", json={"x": "ab"}).json()["y"] == "abab"  # unicode-safe JSON both ways
        assert c.post("/predict", json={"x": "é"}).json()["y"] == "éé"
    with client(url(listener), cred=None) as anonymous:
        assert anonymous.get("/health").json() == {"status": "ok"}
        assert anonymous.get("/nope").status_code == 404
    with client(url(listener)) as c:
        r = c.get("/predict")
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_bad_requests_get_json_errors_and_the_replica_stays_up(replica: Replica, listener: socket.socket):
    with client(url(listener)) as c:
        cases = [
            (c.post("/predict", content=b"{not json"), 400, "invalid_json"),
            (c.post("/predict", content=b"\xff\xfe"), 400, "invalid_json"),
            (c.post("/predict", json={"no_x": 1}), 422, "invalid_input"),  # KeyError
            (c.post("/predict", json={"x": None}), 422, "invalid_input"),  # TypeError
            (c.post("/predict", json={"x": 1, "boom": True}), 500, "model_error"),
        ]
        for r, status, code in cases:
            assert r.status_code == status, r.text
            assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
        assert "RuntimeError: boom" in c.post("/predict", json={"x": 1, "boom": 1}).json()["error"]["message"]
        assert c.post("/predict", json={"x": 1}).status_code == 200  # same connection, still up
    with socket.create_connection(listener.getsockname()) as raw:  # over the size limit: refused unread
        raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n")
        head = raw.recv(4096)
        assert head.startswith(b"HTTP/1.1 413 ") and b'"too_large"' in head
    until(lambda: "RuntimeError: boom" in replica.output(), "the traceback in the run's log")
    m = replica.metrics()
    assert replica.proc.poll() is None
    assert m["requests"] == 8 and m["errors"] == 7, m


def test_authentication_asks_the_server_once_then_remembers(
    listener: socket.socket, project: Path, access: AccessServer
):
    r = Replica(
        listener, project, access.url, RUNYARD_MODEL_HANDLER="handlers:predict",
        RUNYARD_MODEL_AUTH_CACHE_SECONDS="1",
    ).wait_ready()  # fmt: skip
    try:
        base = url(listener)
        with client(base, cred=None) as c:
            missing = c.post("/predict", json={"x": 1})
            assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthenticated"
        with client(base, cred="wrong") as c:
            wrong = c.post("/predict", json={"x": 1})
            assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "unknown"
            assert c.post("/predict", json={"x": 1}).status_code == 401
            assert access.asked["wrong"] == 1  # the refusal is remembered too (briefly)
        with client(base, cred=OTHER) as c:
            forbidden = c.post("/predict", json={"x": 1})
            assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
        with client(base) as c:
            for _ in range(20):
                assert c.post("/predict", json={"x": 1}).status_code == 200
        assert access.asked[GOOD] == 1
        with client(base, cred=None) as c:  # the model key header works as well
            assert c.post("/predict", json={"x": 1}, headers={"X-Runyard-Key": GOOD}).status_code == 200
        with client(base) as c:  # after the cache's time the server is asked again
            until(lambda: c.post("/predict", json={"x": 1}) and access.asked[GOOD] >= 2, "asked again")
        access.close()  # the server is down (restarting): a caller it allowed keeps being served
        down_since = time.monotonic()

        def served_past_the_cache() -> bool:
            r = c.post("/predict", json={"x": 2})
            assert r.status_code == 200, r.text
            return time.monotonic() - down_since > 1.5  # the cached answer has expired by then

        with client(base) as c:
            until(served_past_the_cache, "served through the outage")
        with client(base, cred="never-seen") as c:
            down = c.post("/predict", json={"x": 1})
            assert down.status_code == 503 and down.json()["error"]["code"] == "unavailable"
        assert r.proc.poll() is None
    finally:
        r.stop()


def test_metrics_count_and_time_requests(replica: Replica, listener: socket.socket):
    before = replica.metrics()
    assert before["requests"] == 0 and before["last_request"] is None and before["in_flight"] == 0
    with client(url(listener)) as c:
        for i in range(5):
            assert c.post("/predict", json={"x": i, "sleep": 0.02}).status_code == 200
        assert c.post("/predict", json={"nope": 1}).status_code == 422
        c.get("/health")  # not counted
    m = replica.metrics()
    assert m["requests"] == 6 and m["errors"] == 1 and m["in_flight"] == 0
    assert len(m["buckets"]) == len(BUCKETS) and sum(m["buckets"]) == 6
    slow = sum(n for bound, n in zip(BUCKETS, m["buckets"], strict=True) if bound >= 0.02)
    assert slow == 5, m  # the five 20 ms requests are in buckets above 20 ms
    assert 0.1 <= m["latency_sum"] < 5 and m["last_request"] >= m["started"]


def test_sampled_requests_are_logged_as_json_lines(
    listener: socket.socket, project: Path, access: AccessServer
):
    r = Replica(
        listener, project, access.url, RUNYARD_MODEL_HANDLER="handlers:predict", RUNYARD_MODEL_LOG_SAMPLE="1"
    ).wait_ready()
    try:
        with client(url(listener)) as c:
            c.post("/predict", json={"x": 5})
            c.post("/predict", content=b"oops")

        def logged() -> list[dict]:
            lines = [line for line in r.output().splitlines() if line.startswith("{")]
            return [json.loads(line) for line in lines if '"model_request"' in line]

        records = until(lambda: len(logged()) == 2 and logged(), "two logged requests")
        assert records[0]["request"] == {"x": 5} and records[0]["response"]["y"] == 10
        assert records[0]["status"] == 200 and records[0]["version"] == "3" and records[0]["model"] == "m1"
        assert records[1]["request"] == "oops" and records[1]["status"] == 400
    finally:
        r.stop()


def read_response(sock: socket.socket, buf: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """One response from `sock` (what follows it stays in `buf`): status line, headers, body."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, bytes(buf)
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", 0))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    buf[:] = rest[length:]
    return status.encode(), headers, rest[:length]


def test_pipelining_expect_continue_and_http_1_0(replica: Replica, listener: socket.socket):
    def post(body: bytes, version: str = "1.1", extra: str = "") -> bytes:
        return (
            f"POST /predict HTTP/{version}\r\nHost: m\r\nAuthorization: Bearer {GOOD}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n"
        ).encode() + body

    with socket.create_connection(listener.getsockname(), timeout=10) as s:
        buf = bytearray()
        s.sendall(post(b'{"x": 1}') + post(b'{"x": 2}') + post(b"nope"))  # three at once, answered in order
        answers = [read_response(s, buf) for _ in range(3)]
        assert [a[0][9:12] for a in answers] == [b"200", b"200", b"400"]
        assert [json.loads(a[2]).get("y") for a in answers[:2]] == [2, 4]
        s.sendall(post(b'{"x": 3}', extra="Expect: 100-continue\r\n")[: -len(b'{"x": 3}')])
        status, _, _ = read_response(s, buf)
        assert status == b"HTTP/1.1 100 Continue"
        s.sendall(b'{"x": 3}')
        status, headers, body = read_response(s, buf)
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["y"] == 6 and "connection" not in headers
    with socket.create_connection(listener.getsockname(), timeout=10) as s:
        s.sendall(post(b'{"x": 4}', version="1.0"))
        status, headers, body = read_response(s, bytearray())
        assert json.loads(body)["y"] == 8 and headers["connection"] == "close"
        assert s.recv(10) == b""  # closed after the answer


def test_runs_on_a_bare_python_without_runyards_dependencies(
    listener: socket.socket, project: Path, access: AccessServer
):
    """A project's environment may hold none of runyard's dependencies (nor uvloop): the replica needs
    only the standard library."""
    bare = Path(sys.base_prefix) / "bin" / "python3"
    src = Path(runyard.__file__).resolve().parents[1]
    probe = subprocess.run([str(bare), "-S", "-c", "import pydantic"], capture_output=True)
    assert probe.returncode != 0  # -S: no site-packages at all
    r = Replica(
        listener, project, access.url, python=[str(bare), "-S"], PYTHONPATH=str(src),
        RUNYARD_MODEL_HANDLER="handlers:slow",
    ).wait_ready()  # fmt: skip
    try:
        with client(url(listener)) as c:
            assert c.post("/predict", json={"x": 7}).json() == {"y": 14, "pid": r.proc.pid}
            assert c.post("/predict", content=b"{").status_code == 400
        assert r.metrics()["requests"] == 2
    finally:
        r.stop()
