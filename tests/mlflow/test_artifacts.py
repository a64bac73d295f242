"""Run artifacts through the real mlflow client (its mlflow-artifacts repository) against a real server,
the size limit, path safety and tenancy, the native run-artifact endpoints, and fsspec artifact roots."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
from tests.support import ServerProcess

import mlflow
from runyard.core.errors import Invalid, NotFound, TooLarge
from runyard.services.artifacts import ArtifactStore

MiB = 1 << 20
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


@pytest.fixture
def start(tmp_path) -> Iterator:
    """start(**env) -> a real server with these settings in its environment."""
    started: list[ServerProcess] = []

    def make(**env: str) -> ServerProcess:
        srv = ServerProcess(tmp_path / f"home{len(started)}", env={**os.environ, **env}).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def stored_files(root: Path) -> list[str]:
    """Every file under an artifact root, temporary uploads included."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_artifacts_round_trip_through_the_mlflow_client(start, use_server, tmp_path):
    srv = start()
    use_server(srv)
    src = tmp_path / "src"
    (src / "plots" / "deep").mkdir(parents=True)
    (src / "weights.bin").write_bytes(bytes(range(256)) * 64 + b"\0\xff")
    (src / "plots" / "loss.txt").write_text("0.3\n0.2\n")
    (src / "plots" / "deep" / "notes.md").write_text("# nested\n")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MiB))  # over the 8 MiB of an ordinary request: the artifact limit applies
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(src / "weights.bin"))
        mlflow.log_artifacts(str(src / "plots"), artifact_path="plots")
        mlflow.log_artifact(str(big), artifact_path="data")
    run_id = run.info.run_id
    assert run.info.artifact_uri == f"mlflow-artifacts:/default/{run.info.experiment_id}/{run_id}/artifacts"
    client = mlflow.MlflowClient()
    top = {(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run_id)}
    assert top == {("data", True, None), ("plots", True, None), ("weights.bin", False, 16386)}
    assert [(f.path, f.is_dir) for f in client.list_artifacts(run_id, "plots")] == [
        ("plots/deep", True),
        ("plots/loss.txt", False),
    ]
    out = tmp_path / "out"
    out.mkdir()
    got = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(out)))
    assert tree(got) == {
        "weights.bin": (src / "weights.bin").read_bytes(),
        "plots/loss.txt": b"0.3\n0.2\n",
        "plots/deep/notes.md": b"# nested\n",
        "data/big.bin": big.read_bytes(),
    }
    # the files are kept per project under the artifact root, in the run's folder
    root = srv.home / "artifacts"
    assert (root / "default" / run.info.experiment_id / run_id / "artifacts" / "data" / "big.bin").exists()
    # MLflow's own run-artifact listing (artifacts/list) sees the same files
    r = httpx.get(
        srv.url + "/api/2.0/mlflow/artifacts/list",
        params={"run_id": run_id, "path": "plots"},
        headers={"Authorization": f"Bearer {srv.token}"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["root_uri"] == run.info.artifact_uri
    assert [f["path"] for f in r.json()["files"]] == ["plots/deep", "plots/loss.txt"]


def test_a_client_that_asks_for_multipart_uploads_falls_back_to_one_streamed_put(
    start, use_server, tmp_path, monkeypatch
):
    srv = start()
    use_server(srv)
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", "1")
    data = os.urandom(MiB)
    (tmp_path / "f.bin").write_bytes(data)
    monkeypatch.delenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", raising=False)
    for forced in (False, True):  # the server's capabilities say none; then the user forces it
        if forced:
            monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
        with mlflow.start_run() as run:
            mlflow.log_artifact(str(tmp_path / "f.bin"))
        listed = mlflow.MlflowClient().list_artifacts(run.info.run_id)
        assert [(f.path, f.file_size) for f in listed] == [("f.bin", MiB)]


def test_a_runs_artifacts_by_project_and_run_name(start, use_server, tmp_path, project_token):
    srv = start()
    use_server(srv)
    (tmp_path / "a.txt").write_text("alpha")
    with mlflow.start_run(run_name="art-run") as run:
        mlflow.log_artifact(str(tmp_path / "a.txt"), "d")
    api = srv.api()
    r = api.get("/runs/art-run/artifacts")
    assert r.status_code == 200, r.text
    assert r.json() == {"root": run.info.artifact_uri, "files": [{"path": "d", "is_dir": True}]}
    assert api.get("/runs/art-run/artifacts", params={"path": "d"}).json()["files"] == [
        {"path": "d/a.txt", "is_dir": False, "file_size": 5}
    ]
    r = api.get("/runs/art-run/artifacts/d/a.txt")
    assert r.content == b"alpha" and r.headers["content-length"] == "5"
    r = api.put("/runs/art-run/artifacts/up/b.bin", content=b"\0" * 1000)
    assert r.status_code == 201 and r.json() == {"path": "up/b.bin", "file_size": 1000}
    listed = mlflow.MlflowClient().list_artifacts(run.info.run_id, "up")
    assert [(f.path, f.file_size) for f in listed] == [("up/b.bin", 1000)]
    r = api.get("/runs/art-run/artifacts/..%2F..%2Fother/x")
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "path"
    assert api.get("/runs/no-such-run/artifacts").status_code == 404
    assert api.get("/runs/art-run/artifacts/d/missing.txt").status_code == 404
    other = srv.api(project_token(srv, "other"))
    assert other.get("/runs/art-run/artifacts").status_code == 403
    assert other.put("/runs/art-run/artifacts/x", content=b"x").status_code == 403


def test_deleting_a_run_removes_its_artifacts(start, use_server, tmp_path):
    srv = start()
    use_server(srv)
    (tmp_path / "a.txt").write_text("gone soon")
    runs = {}
    for name in ("doomed", "kept"):
        with mlflow.start_run(run_name=name) as run:
            mlflow.log_artifact(str(tmp_path / "a.txt"), "d")
        runs[name] = srv.home / "artifacts" / "default" / run.info.experiment_id / run.info.run_id
    assert (runs["doomed"] / "artifacts" / "d" / "a.txt").exists()
    assert srv.api().delete("/runs/doomed").status_code in (200, 202)
    deadline = time.monotonic() + 20
    while runs["doomed"].exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not runs["doomed"].exists()
    assert (runs["kept"] / "artifacts" / "d" / "a.txt").read_text() == "gone soon"


def test_a_download_streams_with_its_content_length(start, use_server, tmp_path):
    srv = start()
    use_server(srv)
    repo = MlflowArtifactsRepository("mlflow-artifacts:/default/0/r/artifacts")
    data = os.urandom(3 * MiB + 17)
    (tmp_path / "f.bin").write_bytes(data)
    repo.log_artifact(str(tmp_path / "f.bin"))
    headers = {"Authorization": f"Bearer {srv.token}"}
    with httpx.stream("GET", srv.url + ARTIFACTS + "/default/0/r/artifacts/f.bin", headers=headers) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(len(data))
        assert hashlib.sha256(r.read()).digest() == hashlib.sha256(data).digest()
    r = httpx.get(srv.url + ARTIFACTS + "/default/0/r/artifacts/missing.bin", headers=headers)
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_an_upload_over_the_limit_is_refused_clearly_and_leaves_nothing(start, use_server, tmp_path):
    srv = start(RUNYARD_SERVER_MAX_ARTIFACT_BYTES=str(MiB))
    use_server(srv)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (MiB + 1))
    repo = MlflowArtifactsRepository("mlflow-artifacts:/default/0/r/artifacts")
    with pytest.raises(Exception, match="413") as caught:
        repo.log_artifact(str(big))
    assert "1048576" in str(caught.value)
    headers = {"Authorization": f"Bearer {srv.token}"}
    url = srv.url + ARTIFACTS + "/default/0/r/artifacts/chunked.bin"
    for body in (b"y" * (MiB + 1), iter([b"y" * MiB, b"y"])):  # the second without a Content-Length
        r = httpx.put(url, content=body, headers=headers)
        assert r.status_code == 413 and "1048576" in r.json()["message"], r.text
        assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    with mlflow.start_run(run_name="limited"):
        pass
    r = srv.api().put("/runs/limited/artifacts/big.bin", content=big.read_bytes())
    assert r.status_code == 413 and "1048576" in r.json()["error"]["message"]
    assert stored_files(srv.home / "artifacts") == []
    (tmp_path / "ok.bin").write_bytes(b"z" * MiB)
    repo.log_artifact(str(tmp_path / "ok.bin"))
    assert stored_files(srv.home / "artifacts") == ["default/0/r/artifacts/ok.bin"]


def test_paths_that_leave_the_project_are_refused(start, tmp_path):
    srv = start()
    headers = {"Authorization": f"Bearer {srv.token}"}
    secret = srv.home / "artifacts" / "other" / "secret.txt"
    secret.parent.mkdir(parents=True)
    secret.write_text("not yours")
    bad = [
        "default/%2e%2e/other/secret.txt",
        "default/a/..%2F..%2Fother/secret.txt",
        "default/a%5C..%5C..%5Cother/secret.txt",
        "%2Fetc/passwd",
        "..%2Fhome0/runyard.db",
        "default/%252e%252e/other/secret.txt",  # what MLflow's client would decode to '..' when it lists
        "default/a%23b.txt",  # '#', which MLflow's client refuses in a listed path
    ]
    for path in bad:
        for method in ("GET", "PUT", "DELETE"):
            r = httpx.request(method, f"{srv.url}{ARTIFACTS}/{path}", headers=headers, content=b"x")
            assert r.status_code == 400, (method, path, r.text)
            assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    for path in ("default/../other", "/etc", "../", ""):
        r = httpx.get(srv.url + ARTIFACTS, params={"path": path}, headers=headers)
        assert r.status_code == 400, (path, r.text)
    assert secret.read_text() == "not yours"
    assert stored_files(srv.home / "artifacts") == ["other/secret.txt"]


def test_a_token_of_another_project_gets_403(start, use_server, tmp_path, project_token):
    srv = start()
    use_server(srv)
    (tmp_path / "a.txt").write_text("mine")
    MlflowArtifactsRepository("mlflow-artifacts:/default/0/r/artifacts").log_artifact(str(tmp_path / "a.txt"))
    use_server(srv, project_token(srv, "other"))
    theirs = MlflowArtifactsRepository("mlflow-artifacts:/default/0/r/artifacts")
    for attempt in (
        lambda: theirs.list_artifacts(),
        lambda: theirs.download_artifacts("a.txt", str(tmp_path)),
        lambda: theirs.log_artifact(str(tmp_path / "a.txt")),
        lambda: theirs.delete_artifacts("a.txt"),
    ):
        with pytest.raises(Exception, match="403"):
            attempt()
    # its own project is open to it; a viewer of default may read but not write
    MlflowArtifactsRepository("mlflow-artifacts:/other/0/r/artifacts").log_artifact(str(tmp_path / "a.txt"))
    use_server(srv, project_token(srv, "default", role="viewer"))
    viewer = MlflowArtifactsRepository("mlflow-artifacts:/default/0/r/artifacts")
    assert [f.path for f in viewer.list_artifacts()] == ["a.txt"]
    with pytest.raises(Exception, match="403"):
        viewer.log_artifact(str(tmp_path / "a.txt"))
    r = httpx.get(srv.url + ARTIFACTS, params={"path": "default/0/r/artifacts"})
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"


def test_an_upload_streams_in_flat_memory(start, use_server, tmp_path):
    srv = start()
    headers = {"Authorization": f"Bearer {srv.token}"}
    count = 160
    block = os.urandom(MiB)
    digest = hashlib.sha256()

    def body():
        for _ in range(count):
            digest.update(block)
            yield block

    before = _rss_kib(srv.proc.pid, "VmRSS")
    url = srv.url + ARTIFACTS + "/default/0/r/artifacts/huge.bin"
    r = httpx.put(url, content=body(), headers={**headers, "Content-Length": str(count * MiB)}, timeout=120)
    assert r.status_code == 200, r.text
    peak = _rss_kib(srv.proc.pid, "VmHWM")
    assert peak - before < 48 * 1024, f"the server grew by {(peak - before) // 1024} MiB"
    stored = srv.home / "artifacts" / "default/0/r/artifacts/huge.bin"
    assert stored.stat().st_size == count * MiB
    with httpx.stream("GET", url, headers=headers, timeout=120) as r:
        got = hashlib.sha256()
        for chunk in r.iter_bytes():
            got.update(chunk)
    assert got.digest() == digest.digest()


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_an_fsspec_url_as_artifact_root_is_used_by_the_server(start, use_server, tmp_path):
    where = tmp_path / "elsewhere"
    srv = start(RUNYARD_SERVER_ARTIFACT_ROOT=f"file://{where}")
    use_server(srv)
    (tmp_path / "m.txt").write_text("via fsspec")
    repo = MlflowArtifactsRepository("mlflow-artifacts:/default/0/r/artifacts")
    repo.log_artifact(str(tmp_path / "m.txt"), "d")
    assert (where / "default/0/r/artifacts/d/m.txt").read_text() == "via fsspec"
    assert not (srv.home / "artifacts").exists()
    assert [f.path for f in repo.list_artifacts("d")] == ["d/m.txt"]


async def _chunks(*parts: bytes):
    for p in parts:
        yield p


@pytest.mark.parametrize("where", ["memory://runyard-test-artifacts", "local"])
def test_the_artifact_store_on_an_in_memory_fsspec_filesystem_and_a_directory(where, tmp_path):
    store = ArtifactStore(str(tmp_path) if where == "local" else where, max_bytes=10)
    assert asyncio.run(store.save("p", "a/b/c.bin", _chunks(b"01234", b"5678"))) == 9
    asyncio.run(store.save("p", "a/top.txt", _chunks(b"t")))
    assert [(f.path, f.is_dir, f.file_size) for f in store.list("p", "a")] == [
        ("b", True, None),
        ("top.txt", False, 1),
    ]
    assert store.list("p", "a/top.txt") == [] and store.list("p", "nothing") == []
    for taken in ("a/top.txt/below", "a"):  # a file where a folder is, or a folder where a file is
        with pytest.raises(Invalid):
            asyncio.run(store.save("p", taken, _chunks(b"x")))
    assert store.size("p", "a/b/c.bin") == 9
    assert b"".join(store.read("p", "a/b/c.bin")) == b"012345678"
    with pytest.raises(TooLarge, match="over the limit of 10 bytes"):
        asyncio.run(store.save("p", "a/big.bin", _chunks(b"0123456789", b"x")))
    assert [f.path for f in store.list("p", "a")] == ["b", "top.txt"]
    assert store.list("p", "") and store.fs.ls(store.base + "/.uploads") == []
    for bad in ("../q/x", "a/../../q", "/abs", "a\\b", "a\0b", "a#b", "%2e%2e/q", "%252fabs"):
        with pytest.raises(Invalid):
            store.size("p", bad)
    store.remove("p", "a/b")
    with pytest.raises(NotFound):
        store.size("p", "a/b/c.bin")
    store.remove("p")
    assert store.list("p") == []
    store.fs.rm(store.base, recursive=True)


def test_uploads_a_crash_cut_short_are_swept_when_the_store_opens_again(tmp_path):
    uploads = tmp_path / "root" / ".uploads"
    uploads.mkdir(parents=True)
    stale, fresh = uploads / "stale", uploads / "fresh"
    stale.write_bytes(b"half a file")
    fresh.write_bytes(b"still arriving")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(stale, (two_days_ago, two_days_ago))
    ArtifactStore(str(tmp_path / "root"), max_bytes=10)
    assert not stale.exists() and fresh.exists()


def test_removing_a_runs_folder_never_reaches_into_another_project(tmp_path):
    """An experiment's artifact_location may name another project's folder (`mlflow-artifacts:/other/…`):
    deleting a run of it must not delete files there."""
    store = ArtifactStore(str(tmp_path), max_bytes=100)
    asyncio.run(store.save("victim", "exp/0123/artifacts/model.bin", _chunks(b"weights")))
    store.remove_uri("mlflow-artifacts:/victim/exp/0123", project="attacker")
    assert store.size("victim", "exp/0123/artifacts/model.bin") == 7
    store.remove_uri("mlflow-artifacts:/victim/exp/0123", project="victim")
    assert store.list("victim", "exp") == []
