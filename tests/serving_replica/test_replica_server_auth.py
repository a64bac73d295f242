"""A replica checks credentials with a real runyard server: model keys (bearer or X-Runyard-Key), API
tokens, a key of another model, a revoked key."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
from tests.serving_replica.replica_support import Replica, client
from tests.support import API, ServerProcess, resource, until


def test_keys_and_tokens_checked_by_the_server(tmp_path: Path, listener: socket.socket, project: Path):
    server = ServerProcess(tmp_path / "home").start()
    try:
        api = httpx.Client(
            base_url=f"{server.url}{API}/projects/default",
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=30,
        )
        keys = {}
        for name in ("m1", "m2"):
            applied = api.put(f"/models/{name}", json=resource("Model", name, handler="handlers:predict"))
            assert applied.status_code in (200, 201), applied.text
            made = api.post(f"/models/{name}/keys", json={"description": "replica test"})
            assert made.status_code == 201, made.text
            keys[name] = made.json()
        env = {
            "RUNYARD_PROJECT": "default",
            "RUNYARD_MODEL_AUTH_CACHE_SECONDS": "0.5",
            "RUNYARD_MODEL_HANDLER": "handlers:predict",
        }
        r = Replica(listener, project, server.url, **env).wait_ready()
        try:
            base = f"http://127.0.0.1:{listener.getsockname()[1]}"
            key = keys["m1"]["key"]
            with client(base, cred=key) as c:
                assert c.post("/predict", json={"x": 1}).json()["y"] == 2
            with client(base, cred=None) as c:
                assert c.post("/predict", json={"x": 1}, headers={"X-Runyard-Key": key}).status_code == 200
                refused = c.post("/predict", json={"x": 1})
                assert refused.status_code == 401 and refused.json()["error"]["message"]
            with client(base, cred=server.token) as c:
                assert c.post("/predict", json={"x": 1}).status_code == 200
            with client(base, cred=keys["m2"]["key"]) as c:
                other = c.post("/predict", json={"x": 1})
                assert other.status_code == 403 and "m2" in other.json()["error"]["message"], other.text
            with client(base, cred="rym_" + "x" * 43) as c:
                assert c.post("/predict", json={"x": 1}).status_code == 401
            assert api.delete(f"/models/m1/keys/{keys['m1']['id']}").status_code == 204
            with client(base, cred=key) as c:  # revoked: refused once the replica's cache has expired
                until(lambda: c.post("/predict", json={"x": 1}).status_code == 401, "the revoked key refused")
        finally:
            r.stop()
    finally:
        server.stop()
