"""Snapshot manifests are checked whole at registration: nothing a manifest says can fail at launch."""

from __future__ import annotations

import hashlib

import httpx
from tests.support import API

CONTENT = b"print('hi')\n"
DIGEST = hashlib.sha256(CONTENT).hexdigest()


def entry(**over) -> dict:
    return {"sha256": DIGEST, "size": len(CONTENT), "mode": 0o644, **over}


def refused(api, files: dict) -> dict[str, str]:
    r = api.post("/snapshots", json={"files": files})
    assert r.status_code == 422, (files, r.text)
    return {d["field"]: d["reason"] for d in r.json()["error"]["details"]}


def test_modes_beyond_permission_bits_are_refused_naming_the_file(server):
    api = server.api()
    assert "setuid" in refused(api, {"run.sh": entry(mode=3583)})["files.run.sh.mode"]  # 0o6777
    assert "files.run.sh.mode" in refused(api, {"run.sh": entry(mode=0o1755)})  # sticky
    assert "files.run.sh.mode" in refused(api, {"run.sh": entry(mode=2**40)})
    assert "files.run.sh.mode" in refused(api, {"run.sh": entry(mode=-1)})
    assert api.post("/snapshots", json={"files": {"run.sh": entry(mode=0o755)}}).status_code == 200


def test_paths_that_cannot_be_a_file_in_the_work_directory_are_refused(server):
    api = server.api()
    bad = ["a\0b.py", "", "/etc/passwd", "../up.py", "a/../../b", "a//b.py", "./a.py", "a/", "x" * 256]
    for path in bad:
        assert f"files.{path}" in refused(api, {path: entry()}), path
    nested = refused(api, {"pkg": entry(), "pkg/mod.py": entry()})
    assert "other files are inside it" in nested["files.pkg"]
    assert "files.a.py.colour" in refused(api, {"a.py": entry(colour="red")})


def test_a_size_that_disagrees_with_the_blob_is_refused(server):
    api = server.api()
    assert api.post("/snapshots", json={"files": {"a.py": entry()}}).json()["missing"] == [DIGEST]
    assert api.put(f"/blobs/{DIGEST}", content=CONTENT).status_code == 201
    reason = refused(api, {"a.py": entry(size=len(CONTENT) + 1)})["files.a.py.size"]
    assert f"its content is {len(CONTENT)} bytes" in reason
    assert api.post("/snapshots", json={"files": {"a.py": entry()}}).json()["missing"] == []


def test_a_blob_is_present_only_for_the_projects_that_sent_its_bytes(server):
    api = server.api()
    other = httpx.Client(base_url=server.url + API + "/projects/other", headers=api.headers)
    api.post("/snapshots", json={"files": {"a.py": entry()}})
    assert api.put(f"/blobs/{DIGEST}", content=CONTENT).status_code == 201
    assert api.post("/snapshots", json={"files": {"a.py": entry()}}).json()["missing"] == []

    # Another project learns nothing of it: not that it exists, not its size...
    assert other.post("/snapshots", json={"files": {"a.py": entry()}}).json()["missing"] == [DIGEST]
    wrong_size = other.post("/snapshots", json={"files": {"a.py": entry(size=999)}})
    assert wrong_size.status_code == 200 and wrong_size.json()["missing"] == [DIGEST]
    # ...and must send the very bytes, checked, before the blob counts as its own.
    assert other.put(f"/blobs/{DIGEST}", content=b"not the bytes").status_code == 422
    assert other.post("/snapshots", json={"files": {"a.py": entry()}}).json()["missing"] == [DIGEST]
    assert other.put(f"/blobs/{DIGEST}", content=CONTENT).status_code == 201
    assert other.post("/snapshots", json={"files": {"a.py": entry()}}).json()["missing"] == []
