"""What the model API tests share: a Model document applied through the API, a token of a project."""

from __future__ import annotations

import httpx
from tests.support import API, ServerProcess, resource


def apply_model(srv: ServerProcess, name: str, project: str = "default", **spec) -> dict:
    api = httpx.Client(base_url=f"{srv.url}{API}/projects/{project}", headers=auth(srv.token), timeout=30)
    doc = resource("Model", name, **({"handler": "serve:predict"} | spec))
    answer = api.put(f"/models/{name}", json=doc)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token(srv: ServerProcess, role: str, project: str | None) -> str:
    if project is not None:
        httpx.post(f"{srv.url}{API}/projects", json={"name": project}, headers=auth(srv.token))
    body = {"name": f"{role} of {project}", "role": role, "project": project}
    answer = httpx.post(f"{srv.url}{API}/tokens", json=body, headers=auth(srv.token))
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]
