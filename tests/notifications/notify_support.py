"""What the notification tests share: a real server with RUNYARD_NOTIFY_* settings, a loopback webhook
receiver that checks signatures, a real SMTP server (aiosmtpd), and a way to make a job run without the
trigger route (a fire claimed in this process against the server's database; its controller finds the run
on its next resync)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from aiosmtpd.controller import Controller
from tests.support import ServerProcess, fresh_postgres_database, resource

from runyard.core.resources import Job
from runyard.store import Store
from runyard.store.jobs import Fire

T = TypeVar("T")
FAST = {  # a resync every 0.2 s finds the runs fired in the test's process quickly; retries come fast
    "RUNYARD_CONTROLLER_TICK_SECONDS": "0.2",
    "RUNYARD_NOTIFY_BACKOFF_SECONDS": "0.2",
    "RUNYARD_NOTIFY_TIMEOUT_SECONDS": "5",
}


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 30) -> T:
    """Poll `check` until it returns something truthy (returned), failing with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def notify_server(home: Path, backend: str, **env: str) -> ServerProcess:
    """A started server (SQLite in `home`, or a fresh PostgreSQL database) with these RUNYARD_NOTIFY_*."""
    store_url = fresh_postgres_database() if backend == "postgres" else None
    return ServerProcess(home, store_url, env={**os.environ, **FAST, **env}).start()


def store_url_of(srv: ServerProcess) -> str:
    return srv.store_url or f"sqlite:///{srv.home / 'runyard.db'}"


def put_job(srv: ServerProcess, name: str, command: str, **notifications: Any) -> Job:
    doc = resource("Job", name, template={"command": command}, notifications=notifications)
    r = srv.api().put(f"/jobs/{name}", json=doc)
    assert r.status_code in (200, 201), r.text
    return Job.model_validate(r.json())


def fire(srv: ServerProcess, name: str, **params: str) -> str:
    """Make job `name` run once (as a manual trigger does, with `params`); the name of its run."""
    store = Store(store_url_of(srv))
    try:
        job = store.get(Job, "default", name)
        got = store.fire_job(Fire(job, "manual", f"manual:{uuid.uuid4()}", params=params))
        assert got.outcome == "Created" and got.run is not None, got
        return got.run.metadata.name
    finally:
        store.close()


def job_events(srv: ServerProcess, name: str, reason: str) -> list[dict]:
    r = srv.api().get(f"/jobs/{name}/events")
    assert r.status_code == 200, r.text
    return [e for e in r.json()["items"] if e["reason"] == reason]


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    signed: bool  # the signature checked out with the secret the API gave

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint on loopback. It answers 500 to the first `fail_first` deliveries, 401 to a bad
    signature, then 200; while `hold` is clear it keeps each request open (to kill the server meanwhile)."""

    url: str = ""
    secret: str = ""
    fail_first: int = 0
    status: int = 200
    deliveries: list[Delivery] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.hold.set()

    def verify(self, headers: dict[str, str], body: bytes) -> bool:
        parts = dict(p.split("=", 1) for p in headers.get("x-runyard-signature", "").split(",") if "=" in p)
        if "t" not in parts or "v1" not in parts or abs(time.time() - int(parts["t"])) > 300:
            return False
        want = hmac.new(self.secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, parts["v1"])

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        signed = self.verify(headers, body)
        self.deliveries.append(Delivery(headers, body, signed))
        self.hold.wait(60)
        if not signed:
            return 401
        if len(self.deliveries) <= self.fail_first:
            return 500
        return self.status


@contextmanager
def receiver(**options: Any) -> Iterator[Receiver]:
    rec = Receiver(**options)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            code = rec.answer({k.lower(): v for k, v in self.headers.items()}, body)
            try:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:  # the sender was killed while we held its request
                pass

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{httpd.server_address[1]}/hooks/runyard"
    try:
        yield rec
    finally:
        rec.hold.set()
        httpd.shutdown()
        httpd.server_close()


@dataclass
class Mailbox:
    """What a real SMTP server received; it refuses the first `defer_first` messages with a 451."""

    defer_first: int = 0
    tries: int = 0
    messages: list[tuple[list[str], Message]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.tries += 1
        if self.tries <= self.defer_first:
            return "451 4.3.0 try again later"
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.original_content)))
        return "250 OK"


@contextmanager
def smtp_server(**options: Any) -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox(**options)
    with socket.socket() as s:  # aiosmtpd checks it is up by connecting to its port: it needs a real one
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield box, port
    finally:
        ctl.stop()
