"""Helpers the tests share: a real server process, resource documents, waiting and reading logs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

API = "/apis/runyard.dev/v1"


def postgres_url() -> str:
    url = os.environ.get("RUNYARD_TEST_POSTGRES_URL")
    if not url:
        import pytest  # only here: the benchmarks share this module and run without pytest

        pytest.fail(
            "RUNYARD_TEST_POSTGRES_URL is not set: run `bash scripts/test.sh`, which starts PostgreSQL"
        )
    return url


def fresh_postgres_database() -> str:
    """A new, empty database on the test server, so tests never see each other's rows."""
    import psycopg

    base = postgres_url()
    name = "ry_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name


class ServerProcess:
    """`runyard server` as users run it: a separate process on a free loopback port."""

    def __init__(
        self,
        home: Path,
        store_url: str | None = None,
        args: list[str] | None = None,
        env: dict | None = None,
        module: str = "runyard",
    ):
        """`args` replace `--home HOME --port 0` (the server must still keep its data in `home`); `module`
        is what `python -m` runs (tests.jobs.warp: the same server, its job scheduler on a warped clock)."""
        self.home, self.store_url, self.args, self.environ = home, store_url, args, env
        self.module = module
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.token = ""

    def start(self, timeout: float = 30) -> ServerProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "server.json").unlink(missing_ok=True)
        args = ["server", "--home", str(self.home), "--port", "0"] if self.args is None else self.args
        cmd = [sys.executable, "-m", self.module, *args]
        if self.store_url:
            cmd += ["--store-url", self.store_url]
        log = open(self.home / "server.log", "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True, env=self.environ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(self.home / 'server.log').read_text()[-3000:]}")
            try:
                info = json.loads((self.home / "server.json").read_text())
                healthy = httpx.get(info["url"] + "/healthz", timeout=1).status_code == 200
                if info["pid"] == self.proc.pid and healthy:
                    self.url = info["url"]
                    self.token = (self.home / "admin-token").read_text().strip()
                    return self
            except (OSError, ValueError, KeyError, httpx.HTTPError):
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not start in time")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        """Stop the server and the model replicas it started: runs outlive their server by design (a
        restart adopts them), and a replica never ends by itself, so a test would leave it serving."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()
        kill_replicas(self.home)

    def api(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url + API + "/projects/default", headers=headers, timeout=30)

    def env(self) -> dict[str, str]:
        """This process's environment for a client of this server; no MLFLOW_* variable another test of
        this worker left (an MLFLOW_EXPERIMENT_ID of another server failed a child's log_model once)."""
        kept = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        return {**kept, "RUNYARD_API_URL": self.url, "RUNYARD_TOKEN": self.token}


def kill_run_processes(state: dict) -> None:
    """SIGKILL what a run's state.json names, as a host reboot would: the spawned process's group and the
    sandboxed command's (its own session, led by the sandbox's init)."""
    for key in ("child_pid", "sandbox_pid"):
        if state.get(key):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state[key], signal.SIGKILL)


SERVICES = (b"runyard.serving.replica", b"runyard.sessions.jupyter")  # runs that never end by themselves


def kill_replicas(home: Path) -> None:
    """SIGKILL the process group (sandbox included) of every model replica and session Jupyter working under
    `home`: they outlive the server, as runs do."""
    root = str(home.resolve())
    for pid in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if not any(s in cmdline for s in SERVICES) or b"bwrap" in cmdline.split(b"\0", 1)[0]:
                continue
            if os.readlink(f"/proc/{pid}/cwd").startswith(root):
                os.killpg(os.getpgid(int(pid)), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def resource(kind: str, name: str, **spec) -> dict:
    """A document of any kind, as users write it."""
    return {"apiVersion": "runyard.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def experiment(name: str, command: str | list[str] = "echo hello", **spec) -> dict:
    return resource("Experiment", name, command=command, **spec)


def until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll `check` until it returns something true, and return that; fail saying `what` did not happen."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        assert time.monotonic() < deadline, f"{what} (last: {last!r})"
        time.sleep(0.05)


def wait_phase(api: httpx.Client, run: str, phases: set[str], timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    doc: dict = {}
    while time.monotonic() < deadline:
        r = api.get(f"/runs/{run}")
        if r.status_code == 200:
            doc = r.json()
            if doc["status"].get("phase") in phases:
                return doc
        time.sleep(0.05)
    raise AssertionError(f"run {run} did not reach {phases}: {doc.get('status')}")


def read_logs(api: httpx.Client, run: str, follow: bool = True) -> tuple[list[dict], dict]:
    lines, end = [], {}
    with api.stream("GET", f"/runs/{run}/logs", params={"follow": str(follow).lower()}, timeout=60) as resp:
        assert resp.status_code == 200, resp.read()
        for raw in resp.iter_lines():
            doc = json.loads(raw)
            if doc.get("end"):
                end = doc
            else:
                lines.append(doc)
    return lines, end


def emit_json(result: dict, out: Path | None) -> None:
    """A benchmark's result: printed as JSON, and written to `out` too when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")
