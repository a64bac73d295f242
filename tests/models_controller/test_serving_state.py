"""The server's side of serving, without a server: listeners (rebinding a port that replicas of a killed
server still hold), the figures a real prober reads from a replica's admin socket (summed, cumulative over
restarts), readiness and liveness changes, and the activation of a model scaled to zero."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import uuid
from http.server import BaseHTTPRequestHandler

import pytest
from tests.support import until

from runyard.serving.probe import Prober, ask
from runyard.serving.protocol import BUCKETS, admin_socket
from runyard.serving.state import LIVENESS_FAILURES, Replica, Serving, VersionFigures
from runyard.settings import ServingSettings


class AdminServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A replica's admin endpoints on its abstract socket, answering what the test sets."""

    daemon_threads = True

    def __init__(self, run_uid: str, attempt: int = 1):
        self.ready, self.metrics = False, _metrics(0)
        super().__init__(admin_socket(run_uid, attempt), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        srv = self.server
        if self.path == "/ready":
            code, doc = (200, {"ready": True}) if srv.ready else (503, {"ready": False})
        else:
            code, doc = 200, srv.metrics
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "admin"

    def log_message(self, *args) -> None:
        pass


def _metrics(requests: int, started: float = 1.0, in_flight: int = 0, errors: int = 0) -> dict:
    buckets = [0] * len(BUCKETS)
    buckets[2] = requests  # all between 1 ms and 1.5 ms
    return {
        "requests": requests, "errors": errors, "in_flight": in_flight, "buckets": buckets,
        "latency_sum": requests * 0.0012, "started": started, "last_request": None,
    }  # fmt: skip


@pytest.fixture
def serving():
    srv = Serving(ServingSettings(probe_seconds=0.05))
    yield srv
    srv.close_all()


def test_a_listener_is_kept_and_a_new_server_rebinds_the_port_replicas_still_hold(serving):
    sock = serving.listener("m1", None)
    port = sock.getsockname()[1]
    assert serving.listener("m1", None) is sock and serving.url(port) == f"http://127.0.0.1:{port}"
    restarted = Serving(ServingSettings())  # the old socket stays open: replicas of a killed server hold it
    try:
        again = restarted.listener("m1", port)
        assert again.getsockname()[1] == port
        assert restarted.listener_token("m1") != serving.listener_token("m1")
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # connections are accepted into one of the two backlogs: none is refused
    finally:
        restarted.close_all()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))  # without SO_REUSEPORT: nobody else can have this port
    taken.listen()
    try:
        moved = serving.listener("m2", taken.getsockname()[1])
        assert moved.getsockname()[1] not in (0, taken.getsockname()[1])
    finally:
        taken.close()
    serving.close("m1")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_quantiles_interpolate_inside_a_bucket_and_say_none_before_any_request():
    fig = VersionFigures(1)
    assert fig.quantile(0.5) is None
    fig.buckets[0], fig.buckets[1] = 50, 50  # half under 0.5 ms, half between 0.5 and 1 ms
    assert fig.quantile(0.5) == pytest.approx(0.0005)
    assert fig.quantile(0.75) == pytest.approx(0.00075)
    assert fig.quantile(0.99) == pytest.approx(0.00099)
    fig.buckets[-1] = 100  # beyond the last bound: only the bound is known
    assert fig.quantile(0.99) == pytest.approx(BUCKETS[-2])


def test_the_prober_reads_ready_and_metrics_and_keeps_counts_over_a_restart(serving):
    uid = str(uuid.uuid4())
    serving.listener("model", None)
    woken: list[str] = []
    a, b = AdminServer(uid, 1), AdminServer(uid, 2)
    prober = Prober(serving, woken.append)
    try:
        assert ask(uid, 1, "/ready")[0] == 503 and ask(str(uuid.uuid4()), 1, "/ready") == (0, None)
        serving.watch("model", [Replica(uid, 1, 1), Replica(uid, 2, 2)])
        a.metrics, b.metrics = _metrics(10, in_flight=3), _metrics(4, errors=1)
        prober.probe_all()
        figs = serving.figures("model")
        assert (figs[1].requests, figs[1].in_flight, figs[2].errors) == (10, 3, 1)
        assert figs[1].replicas == 1 and figs[1].ready_replicas == 0 and not woken
        a.ready = True
        prober.probe_all()
        assert woken == ["model"] and serving.health("model", uid, 1).ready
        a.metrics = _metrics(2, started=2.0)  # the process started over: its counts begin again
        prober.probe_all()
        assert serving.figures("model")[1].requests == 12
        serving.watch("model", [Replica(uid, 2, 2)])  # version 1's replica is gone: its counts stay
        assert serving.figures("model")[1].requests == 12 and serving.figures("model")[1].replicas == 0
        serving.watch("model", [Replica(uid, 1, 1), Replica(uid, 2, 2)])
        prober.probe_all()
        a.close()  # it stops answering: after LIVENESS_FAILURES probes the controller is woken
        woken.clear()
        for _ in range(LIVENESS_FAILURES):
            prober.probe_all()
        assert woken == ["model", "model"]  # not ready any more, then the liveness limit
        assert serving.health("model", uid, 1).failures == LIVENESS_FAILURES
    finally:
        b.close()


def test_a_connection_waiting_for_a_model_without_replicas_wakes_it(serving):
    port = serving.listener("idle-model", None).getsockname()[1]
    woken: list[str] = []
    prober = Prober(serving, woken.append)
    prober.start()
    try:
        serving.set_idle("idle-model", True)
        before = serving.last_activity("idle-model")
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            until(lambda: woken == ["idle-model"], "the waiting connection did not wake the model")
        assert serving.last_activity("idle-model") > before
        assert not serving.idle_listeners()  # once: it is no longer idle
    finally:
        prober.stop()
