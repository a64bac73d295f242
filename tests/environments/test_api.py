"""The environments API through a real server: build a tiny environment, follow its log, show, list and
remove it; what it refuses (422 naming the field, 404, 409 while a run uses it, 403 across projects)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest
from tests.support import API, ServerProcess, experiment, wait_phase

from runyard.rest import ENVIRONMENT_FILES
from runyard.services.environments import SOURCE_FILES

TINY = "six==1.16.0\n"  # a pure-Python wheel: a build takes a second or two


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("env-api") / "home").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(srv: ServerProcess) -> Iterator[httpx.Client]:
    with srv.api() as client:
        yield client


def build(api: httpx.Client, requirements: str, name: str | None = None) -> dict:
    """POST the files, follow the log to its end; the final record."""
    r = api.post("/environments", json={"files": {"requirements.txt": requirements}, "name": name})
    assert r.status_code == 202, r.text
    env_id = r.json()["id"]
    with api.stream("GET", f"/environments/{env_id}/log", params={"follow": "true"}, timeout=120) as log:
        assert log.status_code == 200
        assert log.headers["content-type"].startswith("text/plain")
        log.read()
    return api.get(f"/environments/{env_id}").json()


def test_the_client_sends_the_files_the_server_reads():
    assert set(ENVIRONMENT_FILES) == set(SOURCE_FILES)


def test_build_follow_show_list_and_remove_a_tiny_environment(api):
    record = build(api, TINY + "# round trip\n", name="tiny")
    env_id = record["id"]
    assert record["state"] == "Ready", record["message"]
    assert env_id.startswith("sha256:") and len(env_id) == 71
    assert record["names"] == ["tiny"]
    assert record["python"]["version"].count(".") == 2
    assert record["platform"] and record["builder"].startswith("uv ")
    assert {"name": "six", "version": "1.16.0"} in record["packages"]
    assert "six==1.16.0" in record["lock"] and "--hash=sha256:" in record["lock"]
    assert record["lockDigest"].startswith("sha256:") and record["sizeBytes"] > 0
    assert record["source"]["files"] == ["requirements.txt"]

    log = api.get(f"/environments/{env_id}/log").text
    assert log.strip(), "the build log is empty"
    middle = len(log.encode()) // 2
    rest = api.get(f"/environments/{env_id}/log", params={"offset": middle}).content
    assert rest == log.encode()[middle:]

    for ref in ("tiny", env_id, env_id[:19]):
        assert api.get(f"/environments/{ref}").json()["id"] == env_id
    listed = {item["id"]: item for item in api.get("/environments").json()["items"]}
    assert listed[env_id]["names"] == ["tiny"] and "lock" not in listed[env_id]

    again = api.post("/environments", json={"files": {"requirements.txt": TINY + "# round trip\n"}})
    assert (again.status_code, again.json()["id"], again.json()["state"]) == (202, env_id, "Ready")

    assert api.delete("/environments/tiny").status_code == 204
    assert api.get("/environments/tiny").status_code == 404
    assert api.get(f"/environments/{env_id}").json()["state"] == "Ready"  # a name goes, not the env
    assert api.delete(f"/environments/{env_id}").status_code == 204
    removed = api.get(f"/environments/{env_id}").json()
    assert removed["state"] == "Removed" and "six==1.16.0" in removed["lock"]  # its lock is kept


def test_pythons_lists_the_servers_own_interpreter(srv, api):
    r = httpx.get(srv.url + API + "/environments/pythons", headers=api.headers)
    assert r.status_code == 200, r.text
    versions = {p["version"] for p in r.json()["items"]}
    assert "{}.{}.{}".format(*sys.version_info[:3]) in versions


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"files": {}}, "files"),
        ({"files": {".python-version": "3.11\n"}}, "files"),
        ({"files": {"requirements.txt": TINY, "setup.py": "x"}}, "files.setup.py"),
        ({"files": {"requirements.txt": TINY}, "name": "Not A Name"}, "name"),
        ({"name": "x"}, "files"),
    ],
)
def test_a_build_without_dependency_files_or_with_unknown_ones_is_refused_naming_the_field(api, body, field):
    r = api.post("/environments", json=body)
    assert r.status_code == 422, r.text
    assert field in [d["field"] for d in r.json()["error"]["details"]], r.json()


def test_unknown_environments_are_404(api):
    for ref in ("nope", "sha256:" + "0" * 12, "sha256:" + "f" * 64):
        for path in (f"/environments/{ref}", f"/environments/{ref}/log"):
            r = api.get(path)
            assert r.status_code == 404, (path, r.text)
        assert api.delete(f"/environments/{ref}").status_code == 404


def test_an_environment_a_running_run_uses_cannot_be_removed(api):
    record = build(api, TINY + "# in use\n", name="busy")
    assert record["state"] == "Ready", record["message"]
    run = experiment(
        "holds-env", ["python", "-c", "import six, time; print('up', flush=True); time.sleep(60)"]
    )
    run["spec"]["environment"] = "busy"
    assert api.post("/experiments", json=run).status_code == 201
    try:
        wait_phase(api, "holds-env", {"Running"}, timeout=60)
        r = api.delete(f"/environments/{record['id']}")
        assert r.status_code == 409, r.text
        assert "holds-env" in r.json()["error"]["message"]
    finally:
        api.post("/runs/holds-env/stop")
    wait_phase(api, "holds-env", {"Cancelled", "Failed", "Succeeded"}, timeout=30)
    assert api.delete(f"/environments/{record['id']}").status_code == 204  # the run has ended


def test_another_projects_token_and_a_viewer_are_refused(srv, api):
    admin = {"Authorization": f"Bearer {srv.token}"}
    assert httpx.post(srv.url + API + "/projects", json={"name": "other"}, headers=admin).status_code == 201

    def token(role: str, project: str) -> dict:
        body = {"name": f"{role} of {project}", "role": role, "project": project}
        r = httpx.post(srv.url + API + "/tokens", json=body, headers=admin)
        return {"Authorization": f"Bearer {r.json()['token']}"}

    other, viewer = token("editor", "other"), token("viewer", "default")
    base = srv.url + API + "/projects/default/environments"
    files = {"files": {"requirements.txt": TINY}}
    assert httpx.get(base, headers=other).status_code == 403
    assert httpx.post(base, json=files, headers=other).status_code == 403
    assert httpx.get(base + "/anything", headers=other).status_code == 403
    assert httpx.get(base, headers=viewer).status_code == 200
    assert httpx.post(base, json=files, headers=viewer).status_code == 403
    assert httpx.delete(base + "/anything", headers=viewer).status_code == 403

    theirs = srv.url + API + "/projects/other/environments"
    posted = httpx.post(theirs, json={"files": {"requirements.txt": TINY + "# other\n"}}, headers=other)
    assert posted.status_code == 202, posted.text
    assert api.get(f"/environments/{posted.json()['id']}").status_code == 404  # not one default used
