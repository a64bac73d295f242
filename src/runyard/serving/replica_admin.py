"""A replica's figures and its admin endpoints (GET /ready, GET /metrics; see protocol.py), served on its
abstract Unix socket by a thread of their own: the server's probes are answered even while the event loop
is busy in a slow model."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from bisect import bisect_left
from http.server import BaseHTTPRequestHandler

from runyard.serving.protocol import BUCKETS


class Metrics:
    """Cumulative since the replica started. Updated on the event loop only; read from the admin thread."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.in_flight = 0
        self.buckets = [0] * len(BUCKETS)
        self.latency_sum = 0.0
        self.started = time.time()
        self.last_request: float | None = None

    def record(self, seconds: float, error: bool) -> None:
        self.requests += 1
        if error:
            self.errors += 1
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def snapshot(self) -> dict:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "in_flight": self.in_flight,
            "buckets": list(self.buckets),
            "latency_sum": self.latency_sum,
            "started": self.started,
            "last_request": self.last_request,
        }


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class AdminServer:
    def __init__(self, name: str, metrics: Metrics) -> None:
        self.metrics = metrics
        self.ready = False
        admin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                body: dict[str, object]
                if self.path == "/ready":
                    status, body = (200, {"ready": True}) if admin.ready else (503, {"ready": False})
                elif self.path == "/metrics":
                    status, body = 200, admin.metrics.snapshot()
                else:
                    status, body = 404, {"error": {"code": "not_found", "message": f"no {self.path} here"}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet: probes are frequent
                pass

        self._server = _Server(name, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="runyard-admin", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def get(name: str, path: str, timeout: float = 5.0) -> tuple[int, dict]:
    """GET `path` on a replica's admin socket (what the server's probes do; used by tests)."""
    import http.client

    class _Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(name)

    conn = _Conn("replica", timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()
