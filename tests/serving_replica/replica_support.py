"""Helpers for the replica tests: replica processes on a shared listening socket, and a stand-in for the
server's access check (a real HTTP server on loopback answering 204/401/403, counting what it is asked)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from tests.support import until

from runyard.serving import protocol
from runyard.serving.replica_admin import get

ACCESS_PATH = "/apis/runyard.dev/v1/projects/p1/models/m1/access"
GOOD, OTHER = "good-token", "rym_another-models-key"

HANDLERS = """
import asyncio, os, time

def predict(payload):
    if payload.get("boom"):
        raise RuntimeError("boom")
    if payload.get("sleep"):
        time.sleep(payload["sleep"])
    return {"y": payload["x"] * 2, "pid": os.getpid()}

async def slow(payload):
    await asyncio.sleep(payload.get("sleep", 0))
    return {"y": payload["x"] * 2, "pid": os.getpid()}
"""


class AccessServer:
    """Answers the access check: GOOD 204, OTHER 403, anything else 401 (JSON bodies like the server's)."""

    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()
        self.down = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                if outer.down:  # as a killed server: the connection drops, unanswered
                    self.close_connection = True
                    return
                cred = self.headers.get("Authorization", "").removeprefix("Bearer ")
                outer.asked[cred] += 1
                if self.path != ACCESS_PATH:
                    status, body = 404, b'{"error": {"code": "not_found", "message": "wrong path"}}'
                elif cred == GOOD:
                    status, body = 204, b""
                elif cred == OTHER:
                    status, body = 403, b'{"error": {"code": "forbidden", "message": "key of another model"}}'
                else:
                    status, body = 401, b'{"error": {"code": "unauthenticated", "message": "unknown"}}'
                self.send_response(status)
                if body:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Down: new connections are refused and kept-alive ones drop."""
        self.down = True
        self.httpd.shutdown()
        self.httpd.server_close()


class Replica:
    """A replica process accepting on `listener` as fd 5, in `workdir` (the project's files)."""

    count = 0

    def __init__(
        self,
        listener: socket.socket,
        workdir: Path,
        api_url: str,
        python: list[str] | None = None,
        **env: str,
    ) -> None:
        """`python`: the interpreter's command line (default: this one's)."""
        Replica.count += 1
        self.uid = f"t{os.getpid()}x{Replica.count}"
        self.admin = protocol.admin_socket(self.uid, 1)
        self.out = workdir / f"replica-{self.uid}.out"
        full = {
            **clean_environ(),
            protocol.ENV_LISTEN_FD: str(protocol.LISTEN_FD),
            protocol.ENV_MODEL: "m1",
            protocol.ENV_VERSION: "3",
            "RUNYARD_API_URL": api_url,
            "RUNYARD_PROJECT": "p1",
            "RUNYARD_RUN_UID": self.uid,
            "RUNYARD_ATTEMPT": "1",
            **env,
        }
        fd = listener.fileno()
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                [*(python or [sys.executable]), "-m", "runyard.serving.replica"],
                cwd=workdir,
                env=full,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=[fd, protocol.LISTEN_FD],  # kept open once preexec_fn has made it
                preexec_fn=lambda: os.dup2(fd, protocol.LISTEN_FD),  # noqa: PLW1509 - the fd it takes
            )

    def ready(self) -> bool:
        try:
            return get(self.admin, "/ready")[0] == 200
        except OSError:
            assert self.proc.poll() is None, self.output()
            return False

    def wait_ready(self, timeout: float = 30) -> Replica:
        until(self.ready, f"replica {self.uid} ready", timeout)
        return self

    def metrics(self) -> dict:
        status, body = get(self.admin, "/metrics")
        assert status == 200
        return body

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def client(url: str, cred: str | None = GOOD) -> httpx.Client:
    headers = {"Authorization": f"Bearer {cred}"} if cred else {}
    return httpx.Client(base_url=url, headers=headers, timeout=30)


def clean_environ() -> dict[str, str]:
    """This process's environment without MLFLOW_* variables, which other tests in the same worker may
    have set (an MLFLOW_EXPERIMENT_ID of another server made a child's log_model fail)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
