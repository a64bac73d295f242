"""Helpers the job reconciler, policy, history and pipeline tests share (no tests here): job documents, a
fire made as the scheduler makes it (one store transaction, from this process, against the server's
database: the server's controller finds the run at its next resync) and waiting with a deadline."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from tests.support import ServerProcess, resource, until

from runyard.core.resources import Job
from runyard.store import Store
from runyard.store.jobs import Fire, FireResult


def job(name: str, command: str | list[str] = "true", *, template: dict | None = None, **spec: Any) -> dict:
    return resource("Job", name, template={"command": command, **(template or {})}, **spec)


def store_of(srv: ServerProcess) -> Store:
    """The server's own database, opened from the test process."""
    return Store(srv.store_url or f"sqlite:///{srv.home / 'runyard.db'}")


def fire(store: Store, name: str, key: str | None = None, **kw: Any) -> FireResult:
    """A manual fire, claimed as the scheduler and the trigger route claim theirs."""
    current = store.get(Job, "default", name)
    return store.fire_job(Fire(current, "manual", f"manual:{key or uuid.uuid4().hex}", **kw))


def status(api: httpx.Client, name: str) -> dict:
    r = api.get(f"/jobs/{name}")
    assert r.status_code == 200, r.text
    return r.json()["status"]


def status_when(api: httpx.Client, name: str, check: Callable[[dict], Any], what: str, timeout=30) -> dict:
    return until(lambda: (lambda st: st if check(st) else None)(status(api, name)), what, timeout)


def events(api: httpx.Client, plural: str, name: str) -> list[dict]:
    r = api.get(f"/{plural}/{name}/events")
    assert r.status_code == 200, r.text
    return r.json()["items"]


def run_phase(api: httpx.Client, name: str) -> str | None:
    r = api.get(f"/runs/{name}")
    return r.json()["status"].get("phase") if r.status_code == 200 else None


def trigger(api: httpx.Client, name: str, **params: str) -> httpx.Response:
    """`runyard jobs trigger NAME --param k=v` through the API."""
    return api.post(f"/jobs/{name}/trigger", json={"params": params})


def triggered(api: httpx.Client, name: str, **params: str) -> str:
    """Trigger the job; the name of the run it made."""
    r = trigger(api, name, **params)
    assert r.status_code == 201, r.text
    return r.json()["metadata"]["name"]
