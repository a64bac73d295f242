"""Model access keys against a real server: shown once, stored only hashed, listed without the key,
revoked at once; and the access check a replica asks (204/401/403) for keys and API tokens."""

from __future__ import annotations

import hashlib
import re

import httpx
import sqlalchemy as sa
from tests.models_api.models_api_support import apply_model, auth, token
from tests.support import API, ServerProcess


def access(
    srv: ServerProcess, name: str, headers: dict[str, str], project: str = "default"
) -> httpx.Response:
    return httpx.get(f"{srv.url}{API}/projects/{project}/models/{name}/access", headers=headers, timeout=30)


def stored_rows(srv: ServerProcess) -> list[tuple]:
    url = srv.store_url or f"sqlite:///{srv.home / 'runyard.db'}"
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text("SELECT * FROM model_keys"))]
    finally:
        engine.dispose()


def test_a_key_is_shown_once_stored_hashed_listed_without_it_and_revoked_at_once(server):
    apply_model(server, "keyed")
    api = server.api()
    made = api.post("/models/keyed/keys", json={"description": "the web shop"})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    assert re.fullmatch(r"rym_[A-Za-z0-9_-]{43}", key)
    assert key.startswith(made.json()["prefix"]) and made.json()["description"] == "the web shop"

    rows = stored_rows(server)
    assert len(rows) == 1
    cells = [str(cell) for cell in rows[0]]
    assert not any(key in cell for cell in cells), "the plain key is in the database"
    assert hashlib.sha256(key.encode()).hexdigest() in cells

    listed = api.get("/models/keyed/keys").json()["items"]
    assert [k["id"] for k in listed] == [made.json()["id"]]
    assert "key" not in listed[0] and key not in str(listed)

    assert access(server, "keyed", auth(key)).status_code == 204
    assert access(server, "keyed", {"X-Runyard-Key": key}).status_code == 204
    assert api.get("/models/keyed/keys").json()["items"][0]["lastUsedAt"] is not None

    assert api.delete(f"/models/keyed/keys/{made.json()['id']}").status_code == 204
    refused = access(server, "keyed", auth(key))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "Unauthorized"
    assert api.get("/models/keyed/keys").json()["items"] == []
    again = api.delete(f"/models/keyed/keys/{made.json()['id']}")
    assert again.status_code == 404 and "no key" in again.json()["error"]["message"]


def test_the_access_check_lets_in_only_this_models_keys_and_readers_of_its_project(srv):
    apply_model(srv, "shop")
    apply_model(srv, "other")
    api = srv.api()
    key = api.post("/models/shop/keys").json()["key"]
    other_key = api.post("/models/other/keys", json={}).json()["key"]

    assert access(srv, "shop", auth(key)).status_code == 204
    wrong = access(srv, "shop", auth(other_key))
    assert wrong.status_code == 403 and "'other'" in wrong.json()["error"]["message"]
    assert access(srv, "other", auth(key)).status_code == 403

    none = access(srv, "shop", {})
    assert none.status_code == 401 and none.json()["error"]["code"] == "Unauthorized"
    assert access(srv, "shop", auth("rym_" + "x" * 43)).status_code == 401
    assert access(srv, "shop", auth("ryd_not-a-token")).status_code == 401

    assert access(srv, "shop", auth(srv.token)).status_code == 204  # admin
    assert access(srv, "shop", auth(token(srv, "viewer", "default"))).status_code == 204
    outsider = access(srv, "shop", auth(token(srv, "editor", "elsewhere")))
    assert outsider.status_code == 403 and outsider.json()["error"]["code"] == "Forbidden"


def test_keys_are_managed_with_write_access_and_name_the_model(srv):
    apply_model(srv, "managed")
    viewer = auth(token(srv, "viewer", "default"))
    base = f"{srv.url}{API}/projects/default/models"
    assert httpx.post(f"{base}/managed/keys", headers=viewer).status_code == 403
    assert httpx.get(f"{base}/managed/keys", headers=viewer).status_code == 403
    missing = srv.api().post("/models/nowhere/keys")
    assert missing.status_code == 404 and "'nowhere'" in missing.json()["error"]["message"]
    long = srv.api().post("/models/managed/keys", json={"description": "x" * 300})
    assert long.status_code == 422 and "description" in long.text


def test_a_key_dies_with_its_model_even_when_the_name_comes_back(srv):
    """A key opens one model by uid: the same name made again is another model."""
    apply_model(srv, "phoenix")
    key = srv.api().post("/models/phoenix/keys").json()["key"]
    assert access(srv, "phoenix", auth(key)).status_code == 204
    store_url = srv.store_url or f"sqlite:///{srv.home / 'runyard.db'}"
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:  # what the controller does once the model's replicas are gone
        conn.execute(sa.text("DELETE FROM resources WHERE kind = 'Model' AND name = 'phoenix'"))
    engine.dispose()
    apply_model(srv, "phoenix")
    assert access(srv, "phoenix", auth(key)).status_code == 401
