"""A run pod's snapshot step (`python -m runyard.runtime.kubernetes.init snapshot`) against a real server
process: the files the CLI uploaded arrive in the pod's work directory with their modes, through the
server's snapshot and blob downloads, and another project's token gets neither."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from tests.support import API

from runyard.rest import Rest
from runyard.upload import scan, upload_snapshot


def _init(server, token: str, project: str, snapshot: str, dest: Path) -> subprocess.CompletedProcess:
    step = [sys.executable, "-m", "runyard.runtime.kubernetes.init", "snapshot", "--server", server.url]
    return subprocess.run(
        [*step, "--project", project, "--snapshot", snapshot, "--dest", str(dest)],
        env={**os.environ, "RUNYARD_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_snapshot_step_fetches_the_uploaded_files_from_the_server(server_factory, tmp_path):
    server = server_factory()
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "train.py").write_text("print('trained')\n")
    (project / "pkg" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (project / "pkg" / "run.sh").chmod(0o755)
    (project / "copy.py").write_text("print('trained')\n")  # the same bytes: one blob
    rest = Rest(server.url, token=server.token, project="default")
    snapshot = upload_snapshot(rest, project, scan(project))

    done = _init(server, server.token, "default", snapshot, tmp_path / "work")
    assert done.returncode == 0, done.stderr
    work = tmp_path / "work"
    assert (work / "train.py").read_text() == (work / "copy.py").read_text() == "print('trained')\n"
    assert (work / "pkg" / "run.sh").stat().st_mode & 0o777 == 0o755

    # Another project's token reads neither the manifest nor the bytes, and learns they exist no more
    # than for a snapshot that never was.
    admin = {"Authorization": f"Bearer {server.token}"}
    assert httpx.post(f"{server.url}{API}/projects", json={"name": "other"}, headers=admin).status_code == 201
    other = httpx.post(
        f"{server.url}{API}/tokens",
        json={"name": "other", "project": "other", "role": "editor"},
        headers=admin,
    )
    assert other.status_code == 201, other.text
    theirs = other.json()["token"]
    refused = _init(server, theirs, "default", snapshot, tmp_path / "theirs")
    assert refused.returncode == 1 and "project" in refused.stderr, refused.stderr
    missing = _init(server, theirs, "other", snapshot, tmp_path / "theirs")
    assert missing.returncode == 1 and "no snapshot" in missing.stderr
    manifest = rest.send("GET", f"{rest.base}/projects/default/snapshots/{snapshot}").json()
    digest = manifest["files"]["train.py"]["sha256"]
    blob = httpx.get(
        f"{server.url}{API}/projects/other/blobs/{digest}", headers={"Authorization": f"Bearer {theirs}"}
    )
    assert blob.status_code == 404
