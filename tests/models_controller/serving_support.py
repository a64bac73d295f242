"""Helpers of the model controller's tests: a server whose probes are quick, a project with a handler
uploaded as a snapshot, a model applied from it, and clients that hammer its URL."""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path

import httpx
from tests.support import ServerProcess, resource, until

from runyard.client import Client

HANDLER = """
import asyncio
import os

VERSION = {version!r}


async def predict(body):
    if body.get("crash"):
        os._exit(3)
    if body.get("pid"):
        return {{"version": VERSION, "pid": os.getpid()}}
    await asyncio.sleep(body.get("sleep", 0))
    return {{"version": VERSION, "echo": body.get("x")}}
"""

SETTINGS = {
    "RUNYARD_SERVING_PROBE_SECONDS": "0.2",
    "RUNYARD_SERVING_DRAIN_SECONDS": "5",
    "RUNYARD_SERVING_AUTH_CACHE_SECONDS": "60",  # a killed server's replicas keep trusting what it said
}


def start_server(home: Path, **settings: str) -> ServerProcess:
    return ServerProcess(home, env={**os.environ, **SETTINGS, **settings}).start()


def snapshot(server: ServerProcess, root: Path, version: str) -> str:
    """Upload a project whose predict.py answers with `version`; returns the snapshot id."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "predict.py").write_text(HANDLER.format(version=version))
    return Client(server.url, server.token).upload_snapshot(root)


def model_doc(name: str, snap: str, **spec) -> dict:
    return resource("Model", name, handler="predict:predict", snapshot=snap, environment="system", **spec)


def wait_status(api: httpx.Client, name: str, check, what: str, timeout: float = 60) -> dict:
    last: list[dict] = []

    def look():
        last[:] = [api.get(f"/models/{name}").json().get("status") or {}]
        return last[0] if check(last[0]) else None

    try:
        return until(look, what, timeout)
    except AssertionError as exc:
        shown = {k: v for k, v in last[0].items() if k not in ("versions", "conditions")}
        raise AssertionError(f"{exc}; status: {shown}") from None


def ready(st: dict) -> bool:
    return st.get("phase") == "Ready" and st.get("readyReplicas", 0) >= st.get("desiredReplicas", 1)


def replicas(api: httpx.Client, name: str, version: int) -> list[dict]:
    selector = f"runyard.dev/model={name},runyard.dev/model-version={version}"
    return api.get("/runs", params={"labelSelector": selector}).json()["items"]


def predict(url: str, token: str, body: dict, timeout: float = 30) -> httpx.Response:
    """One request on its own connection: what is tested is that the model's socket never refuses one."""
    headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
    return httpx.post(url + "/invocations", json=body, headers=headers, timeout=timeout)


class Hammer:
    """Threads that POST to the model until stopped, counting answers by version and failures."""

    def __init__(self, url: str, token: str, threads: int = 4, body: dict | None = None):
        self.url, self.token, self.body = url, token, body or {"x": 1}
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Hammer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    @property
    def total(self) -> int:
        return sum(self.versions.values()) + len(self.failures)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Connection": "close"}
        client = httpx.Client(headers=headers, timeout=30)
        while not self._stop.is_set():
            try:
                resp = client.post(self.url + "/invocations", json=self.body)
                outcome = resp.json()["version"] if resp.status_code == 200 else None
                failure = None if outcome else f"{resp.status_code} {resp.text[:200]}"
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                outcome, failure = None, f"{type(exc).__name__}: {exc}"
            with self._lock:
                if failure:
                    self.failures.append(failure)
                else:
                    self.versions[outcome] += 1
