"""What the CLI tests share: the CLI run as users run it (a separate process), against a real server."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support import ServerProcess

import runyard
from runyard.client import Client

SRC = str(Path(runyard.__file__).resolve().parents[1])


def base_env() -> dict[str, str]:
    """This checkout's runyard, and none of the caller's RUNYARD_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    return env


class Server(ServerProcess):
    """The shared real server, seen by the CLI through RUNYARD_API_URL / RUNYARD_TOKEN only."""

    def env(self) -> dict[str, str]:
        return {**base_env(), "RUNYARD_API_URL": self.url, "RUNYARD_TOKEN": self.token}

    def client(self) -> Client:
        return Client(self.url, self.token)


def runyard_cli(*args: str, env: dict[str, str], cwd: Path | None = None, stdin: str | None = None):
    argv = [sys.executable, "-m", "runyard", *args]
    return subprocess.run(
        argv, env=env, cwd=cwd, input=stdin or "", capture_output=True, text=True, timeout=90
    )


def experiment_yaml(name: str, command: str = "echo applied") -> str:
    head = "apiVersion: runyard.dev/v1\nkind: Experiment\n"
    return head + f"metadata: {{name: {name}}}\nspec: {{command: {command!r}}}\n"


class Lines:
    """The lines a process writes, read with a deadline: a test fails instead of hanging."""

    def __init__(self, stream, deadline: float):
        self.deadline, self.queue = deadline, queue.Queue()
        threading.Thread(
            target=lambda: [*map(self.queue.put, stream), self.queue.put(None)], daemon=True
        ).start()

    def next(self) -> str:
        try:
            line = self.queue.get(timeout=max(self.deadline - time.monotonic(), 0))
        except queue.Empty:
            raise AssertionError("no line before the deadline") from None
        assert line is not None, "the stream ended"
        return line


Answer = Callable[[str, str, dict[str, str]], tuple[int, dict]]  # (method, path, headers) -> (status, body)


class ScriptedServers:
    """Real HTTP servers on loopback that answer as a test says, for what the runyard server never does on
    purpose (a 503, a stream that ends early), so that the client's handling of it can be seen.
    `start(answer)` returns a server's URL; all stop with the context."""

    def __init__(self) -> None:
        self.servers: list[ThreadingHTTPServer] = []

    def __enter__(self) -> Callable[..., str]:
        return self.start

    def __exit__(self, *exc: object) -> None:
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()

    def start(self, answer: Answer, drop_kept_alive: bool = False) -> str:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # connections kept alive, as uvicorn keeps them

            def _reply(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, body = answer(self.command, self.path, dict(self.headers))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                # Like a server whose keep-alive timeout passed: closed without saying so beforehand.
                self.close_connection = drop_kept_alive

            do_GET = do_POST = do_PUT = _reply

            def log_message(self, *args: object) -> None:
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"
