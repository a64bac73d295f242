"""What a run's pod does before its command (runyard.runtime.kubernetes.init), run here as the init
containers would run it.

The runyard server is a small stand-in (a stdlib HTTP server in a thread) answering the two reads the
snapshot step makes: GET .../snapshots/ID (the manifest) and GET .../blobs/DIGEST (the bytes), with the
bearer token checked. The environment step runs uv for real, offline (an empty lock, and a lock naming a
package uv cannot get, which must fail).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runyard.rest import Rest
from runyard.runtime.base import FILLED
from runyard.runtime.kubernetes import init

TOKEN = "run-token"
FILES = {"train.py": b"print('hi')\n", "bin/run.sh": b"#!/bin/sh\necho run\n", "copy.py": b"print('hi')\n"}
MODES = {"train.py": 0o644, "bin/run.sh": 0o755, "copy.py": 0o600}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FakeServer:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.manifest = {
            "files": {
                p: {"sha256": digest(b), "size": len(b), "mode": MODES.get(p, 0o644)}
                for p, b in files.items()
            }
        }
        self.blobs = {digest(b): b for b in files.values()}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                server.requests.append(self.path)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, b'{"error": {"code": "Unauthorized", "message": "no token"}}')
                prefix = "/apis/runyard.dev/v1/projects/vision/"
                if self.path == f"{prefix}snapshots/sha256:snap":
                    return self._send(200, json.dumps(server.manifest).encode())
                if self.path.startswith(f"{prefix}blobs/") and (
                    blob := server.blobs.get(self.path.rsplit("/")[-1])
                ):
                    return self._send(200, blob, "application/octet-stream")
                return self._send(404, b'{"error": {"code": "NotFound", "message": "no such thing"}}')

            def _send(self, code: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    s = FakeServer(FILES)
    yield s
    s.http.shutdown()
    s.http.server_close()


def rest(server: FakeServer, token: str = TOKEN) -> Rest:
    return Rest(server.url, token=token, project="vision")


def test_snapshot_files_modes_and_shared_blobs(server: FakeServer, tmp_path: Path) -> None:
    assert init.fetch_snapshot(rest(server), "vision", "sha256:snap", tmp_path) == 3
    for rel, data in FILES.items():
        assert (tmp_path / rel).read_bytes() == data
        assert stat.S_IMODE((tmp_path / rel).stat().st_mode) == MODES[rel]
    blob_reads = [p for p in server.requests if "/blobs/" in p]
    assert len(blob_reads) == 2  # train.py and copy.py share one blob
    assert not (tmp_path / FILLED).exists()


def test_snapshot_kept_directory_is_filled_once(server: FakeServer, tmp_path: Path) -> None:
    assert init.fetch_snapshot(rest(server), "vision", "sha256:snap", tmp_path, keep=True) == 3
    (tmp_path / "train.py").write_text("edited in the session\n")
    assert init.fetch_snapshot(rest(server), "vision", "sha256:snap", tmp_path, keep=True) == 0
    assert (tmp_path / "train.py").read_text() == "edited in the session\n"


def test_snapshot_refuses_bytes_that_do_not_match(server: FakeServer, tmp_path: Path) -> None:
    server.blobs[digest(FILES["bin/run.sh"])] = b"tampered"
    with pytest.raises(init.InitFailed, match="bin/run.sh arrived with SHA-256"):
        init.fetch_snapshot(rest(server), "vision", "sha256:snap", tmp_path)
    assert not (tmp_path / "bin/run.sh").exists()


def test_snapshot_refuses_paths_outside(server: FakeServer, tmp_path: Path) -> None:
    server.manifest["files"]["../escape"] = server.manifest["files"]["train.py"]
    with pytest.raises(init.InitFailed, match="outside the work directory"):
        init.fetch_snapshot(rest(server), "vision", "sha256:snap", tmp_path / "work")
    assert not (tmp_path / "escape").exists()


def test_snapshot_command_line(
    server: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command the init container runs: the token from RUNYARD_TOKEN; a refusal is one line, exit 1."""
    args = ["snapshot", "--server", server.url, "--project", "vision", "--snapshot", "sha256:snap"]
    os.environ["RUNYARD_TOKEN"] = TOKEN
    try:
        assert init.main([*args, "--dest", str(tmp_path / "a")]) == 0
        assert (tmp_path / "a/train.py").exists()
        os.environ["RUNYARD_TOKEN"] = "wrong"
        assert init.main([*args, "--dest", str(tmp_path / "b")]) == 1
    finally:
        del os.environ["RUNYARD_TOKEN"]
    assert capsys.readouterr().err.startswith("runyard init snapshot: ")


def test_environment_installed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pods of a node ask for the same environment at once: one installs it, the other waits and
    finds it complete."""
    monkeypatch.setenv("UV_OFFLINE", "1")
    target = tmp_path / "envs" / "abc"
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(init.install_environment(target, "# no packages\n")))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    assert (target / init.INSTALLED).exists() and (target / "bin" / "python").exists()
    assert not init.install_environment(target, "# no packages\n")


def test_environment_cut_short_is_installed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_OFFLINE", "1")
    target = tmp_path / "abc"
    (target / "bin").mkdir(parents=True)
    (target / "bin" / "leftover").write_text("")
    assert init.install_environment(target, "\n")
    assert not (target / "bin" / "leftover").exists()


def test_environment_failure_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_OFFLINE", "1")
    lock = "surely-not-a-cached-package==0.0.1 --hash=sha256:" + "0" * 64 + "\n"
    with pytest.raises(init.InitFailed, match="uv pip exited with code"):
        init.install_environment(tmp_path / "abc", lock)
    assert not (tmp_path / "abc" / init.INSTALLED).exists()


def test_listen_hands_the_command_its_socket(tmp_path: Path) -> None:
    """The command gets a socket already listening on the port, as the fd it was told."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = (
        "import socket; s = socket.socket(fileno=7); c, _ = s.accept(); "
        "c.sendall(str(s.getsockname()[1]).encode()); c.close()"
    )
    argv = [
        sys.executable,
        "-m",
        "runyard.runtime.kubernetes.init",
        "listen",
        "--port",
        str(port),
        "--fd",
        "7",
    ]
    proc = subprocess.Popen([*argv, "--", sys.executable, "-c", child])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                    assert conn.recv(100) == str(port).encode()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "nothing listened"
                time.sleep(0.05)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
