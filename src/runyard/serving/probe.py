"""Reading a replica's admin endpoints (GET /ready, GET /metrics on its abstract Unix socket), and the
worker that does it for every watched replica each probe_seconds, off the controller's thread. Between
rounds it watches the listeners of models scaled to zero: a connection waiting there wakes the model."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable

from runyard.serving.listeners import has_waiting
from runyard.serving.protocol import admin_socket
from runyard.serving.state import Serving

log = logging.getLogger("runyard.serving")
TIMEOUT = 0.5  # seconds one admin request may take: a replica slower than that is not ready


def ask(run_uid: str, attempt: int, path: str, timeout: float = TIMEOUT) -> tuple[int, dict | None]:
    """(HTTP status, JSON body) of GET `path` on the replica's admin socket; (0, None) if unreachable."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(admin_socket(run_uid, attempt))
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: replica\r\nConnection: close\r\n\r\n".encode())
            return _response(sock)
    except (OSError, ValueError):
        return 0, None


def _response(sock: socket.socket) -> tuple[int, dict | None]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("closed before the headers ended")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while length is None or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    try:
        doc = json.loads(body[:length] if length is not None else body)
    except ValueError:
        doc = None
    return status, doc if isinstance(doc, dict) else None


class Prober:
    """The controller's worker that probes replicas and activates models scaled to zero. `wake(model_uid)`
    is called when a model should be reconciled now: a replica got ready or stopped answering, or a
    connection waits for a model without replicas."""

    def __init__(self, serving: Serving, wake: Callable[[str], None]):
        self.serving, self.wake = serving, wake
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="runyard-serving-probe", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        period = self.serving.settings.probe_seconds
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.probe_all()
            except Exception:  # never let the thread die: the next round tries again
                log.exception("probing replicas failed")
            while not self._stop.is_set() and (left := started + period - time.monotonic()) > 0:
                self._activate(min(left, 0.1))

    def probe_all(self) -> None:
        for model_uid, replicas in self.serving.watched().items():
            changed = False
            for rep in replicas:
                status, _ = ask(rep.run_uid, rep.attempt, "/ready")
                metrics = ask(rep.run_uid, rep.attempt, "/metrics")[1] if status else None
                changed |= self.serving.observe(model_uid, rep, status == 200, metrics)
            self.serving.probed(model_uid)
            if changed:
                self.wake(model_uid)

    def _activate(self, timeout: float) -> None:
        idle = self.serving.idle_listeners()
        if not idle:
            self._stop.wait(timeout)
            return
        for sock in has_waiting(list(idle), timeout):
            uid = idle[sock]
            if self.serving.activate(uid):
                self.wake(uid)
