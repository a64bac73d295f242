"""The escape suite: from inside a run of a real server, each way out of the sandbox is tried and fails.

The server keeps its home, its SQLite database, its artifacts and its user's ~/.runyard in four places
outside /tmp (a run's /tmp is private, which would hide anything below it without the sandbox having to),
so that each is hidden by the sandbox on its own. One probe run tries everything and prints what it got;
each test asserts one part of it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support import API, ServerProcess, experiment, read_logs, wait_phase

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

PROBE = r"""
import json, os, signal, sqlite3, subprocess, sys, urllib.request

t = json.loads(os.environ["ESCAPE_TARGETS"])
out = {}

def attempt(name, fn):
    try:
        out[name] = {"ok": True, "value": fn()}
    except BaseException as e:
        out[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}

def read(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")

def write(path):
    with open(path, "w") as f:
        f.write("escaped")
    return path

def api(path, token):
    req = urllib.request.Request(t["api"] + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.loads(r.read())

def sqlite_tables():
    with sqlite3.connect(f"file:{t['db']}?mode=ro", uri=True) as db:
        return [r[0] for r in db.execute("select name from sqlite_master")]

def processes():
    seen = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                seen.append(read(f"/proc/{pid}/cmdline").replace("\0", " ").strip())
            except OSError:
                pass
    return seen

attempt("admin_token", lambda: read(t["admin_token"]))
attempt("user_admin_token", lambda: read(t["user_admin_token"]))
attempt("ssh_key", lambda: read(t["ssh_key"]))
attempt("write_cache", lambda: write(os.path.join(t["cache"], "pip-cache-entry")))
stolen = (out["admin_token"].get("value") or out["user_admin_token"].get("value") or "").strip()
attempt("other_project_with_stolen_token", lambda: api("/projects/other/runs", stolen))
attempt("other_project_with_own_token", lambda: api("/projects/other/runs", os.environ["RUNYARD_TOKEN"]))
attempt("own_run_with_own_token", lambda: api(f"/projects/default/runs/{os.environ['RUNYARD_RUN_ID']}",
                                                os.environ["RUNYARD_TOKEN"])[0])
attempt("database_size", lambda: os.path.getsize(t["db"]))
attempt("database_tables", sqlite_tables)
attempt("runs_dir", lambda: os.listdir(t["runs"]))
attempt("other_run_file", lambda: read(t["other_run_file"]))
attempt("blobs", lambda: os.listdir(t["blobs"]))
attempt("blob", lambda: read(t["blob"]))
attempt("artifacts", lambda: os.listdir(t["artifacts"]))
attempt("artifact", lambda: read(t["artifact"]))
attempt("processes", processes)
attempt("signal_server", lambda: os.kill(t["server_pid"], 0))
attempt("kill_server", lambda: os.kill(t["server_pid"], signal.SIGKILL))
attempt("write_usr", lambda: write("/usr/escaped.txt"))
attempt("write_root", lambda: write("/escaped.txt"))
attempt("write_home", lambda: write(os.path.join(t["home"], "escaped.txt")))
attempt("write_cgroup", lambda: write("/sys/fs/cgroup/pids/cgroup.procs"))
swappiness = "/proc/sys/vm/swappiness"  # written with the value it has: harmless if it were allowed
attempt("write_sysctl", lambda: open(swappiness, "w").write(read(swappiness)))
attempt("remount_root", lambda: subprocess.run(["mount", "-o", "remount,rw", "/"], capture_output=True,
                                                check=True))
attempt("host_tmp", lambda: read(t["host_tmp"]))
attempt("write_tmp", lambda: write(t["run_tmp"]))
attempt("write_work", lambda: write(os.path.join(os.getcwd(), "mine.txt")))
attempt("import_runyard", lambda: __import__("runyard").__file__)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def places() -> Iterator[Path]:
    """A directory outside /tmp (see the module docstring), removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix=".runyard-escape-", dir=Path.home()))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def escape(places: Path) -> dict:
    """Start a server, leave secrets of another project around, run the probe; returns what it got."""
    user = places / "user"
    (user / ".runyard").mkdir(parents=True)
    (user / ".runyard" / "admin-token").write_text("a-user-secret\n")
    (user / ".ssh").mkdir()
    (user / ".ssh" / "id_ed25519").write_text("an ssh key\n")
    (user / ".cache").mkdir()
    (places / "db").mkdir()
    artifacts = places / "artifacts"
    (artifacts / "other").mkdir(parents=True)
    (artifacts / "other" / "model.txt").write_text("other project's artifact\n")
    env = {**os.environ, "HOME": str(user), "RUNYARD_SERVER_ARTIFACT_ROOT": str(artifacts)}
    srv = ServerProcess(places / "home", f"sqlite:///{places / 'db' / 'runyard.db'}", env=env).start()
    host_tmp = Path(tempfile.gettempdir()) / f"runyard-host-{uuid.uuid4().hex}"
    host_tmp.write_text("host tmp\n")
    run_tmp = Path(tempfile.gettempdir()) / f"runyard-run-{uuid.uuid4().hex}"
    try:
        admin = httpx.Client(base_url=srv.url + API, headers={"Authorization": f"Bearer {srv.token}"})
        assert admin.post("/projects", json={"name": "other"}).status_code == 201
        other = httpx.Client(base_url=srv.url + API + "/projects/other", headers=admin.headers, timeout=30)
        content = b"other project's code\n"
        digest = __import__("hashlib").sha256(content).hexdigest()
        files = {"secret.py": {"sha256": digest, "size": len(content), "mode": 0o644}}
        assert other.post("/snapshots", json={"files": files}).json()["missing"] == [digest]
        assert other.put(f"/blobs/{digest}", content=content).status_code == 201
        snapshot = other.post("/snapshots", json={"files": files}).json()["id"]
        doc = experiment("secret", "cat secret.py", snapshot=snapshot)
        assert other.put("/experiments/secret", json=doc).status_code in (200, 201)
        secret_run = wait_phase(other, "secret", {"Succeeded"})
        other_work = places / "home" / "runs" / secret_run["metadata"]["uid"] / "attempt-1" / "work"
        blob = next(p for p in (places / "home" / "blobs").rglob("*") if p.is_file())
        targets = {
            "api": srv.url + API,
            "home": str(places / "home"),
            "admin_token": str(places / "home" / "admin-token"),
            "user_admin_token": str(user / ".runyard" / "admin-token"),
            "ssh_key": str(user / ".ssh" / "id_ed25519"),
            "cache": str(user / ".cache"),
            "db": str(places / "db" / "runyard.db"),
            "runs": str(places / "home" / "runs"),
            "other_run_file": str(other_work / "secret.py"),
            "blobs": str(places / "home" / "blobs"),
            "blob": str(blob),
            "artifacts": str(artifacts),
            "artifact": str(artifacts / "other" / "model.txt"),
            "server_pid": srv.proc.pid,
            "host_tmp": str(host_tmp),
            "run_tmp": str(run_tmp),
        }
        assert (other_work / "secret.py").exists() and blob.exists()  # there to be found, outside
        api = srv.api()
        doc = experiment("probe", [sys.executable, "-c", PROBE], env={"ESCAPE_TARGETS": json.dumps(targets)})
        assert api.put("/experiments/probe", json=doc).status_code in (200, 201)
        lines, end = read_logs(api, "probe")
        assert end["phase"] == "Succeeded", lines
        run = api.get("/runs/probe").json()
        out = json.loads(next(line["text"] for line in lines if line["stream"] == "stdout"))
        work = places / "home" / "runs" / run["metadata"]["uid"] / "attempt-1" / "work"
        return {
            "user": user,
            "out": out,
            "run": run,
            "server_token": srv.token,
            "home": places / "home",
            "work": work,
            "run_tmp": run_tmp,
        }
    finally:
        srv.stop()
        host_tmp.unlink(missing_ok=True)
        run_tmp.unlink(missing_ok=True)


def failed(escape: dict, name: str) -> str:
    got = escape["out"][name]
    assert not got["ok"], f"{name} succeeded from inside the sandbox: {got}"
    return got["error"]


def test_the_run_was_sandboxed_and_says_so(escape):
    status = escape["run"]["status"]
    assert status["sandbox"] == {"mechanism": "bubblewrap", "version": status["sandbox"]["version"]}
    sandboxed = [c for c in status["conditions"] if c["type"] == "Sandboxed"]
    assert sandboxed and sandboxed[0]["status"] == "True"


def test_the_admin_tokens_cannot_be_read(escape):
    for name in ("admin_token", "user_admin_token"):
        got = escape["out"][name]
        assert not got["ok"] or got["value"].strip() in ("",), (name, got)
    assert escape["server_token"] not in json.dumps(escape["out"])
    assert "a-user-secret" not in json.dumps(escape["out"])


def test_the_server_users_credentials_are_hidden_and_its_cache_is_private(escape):
    assert "FileNotFoundError" in failed(escape, "ssh_key")
    assert escape["out"]["write_cache"]["ok"]  # tools that cache (pip, matplotlib) still work...
    assert not (escape["user"] / ".cache" / "pip-cache-entry").exists()  # ...in a cache of its own


def test_another_project_cannot_be_listed(escape):
    assert "401" in failed(escape, "other_project_with_stolen_token")
    assert "403" in failed(escape, "other_project_with_own_token")


def test_the_database_cannot_be_read(escape):
    out = escape["out"]
    assert out["database_size"] == {"ok": True, "value": 0} or not out["database_size"]["ok"]
    assert not out["database_tables"]["ok"] or out["database_tables"]["value"] == []


def test_other_runs_blobs_and_artifacts_cannot_be_seen(escape):
    out = escape["out"]
    assert out["runs_dir"]["value"] == [escape["run"]["metadata"]["uid"]]  # the way to its own work dir
    for name in ("blobs", "artifacts"):
        assert not out[name]["ok"] or out[name]["value"] == [], (name, out[name])
    for name in ("other_run_file", "blob", "artifact"):
        assert "FileNotFoundError" in failed(escape, name)


def test_host_processes_are_neither_visible_nor_reachable(escape):
    seen = escape["out"]["processes"]["value"]
    assert len(seen) <= 3, seen  # the sandbox's init, the probe (and its shell, if any)
    assert all(cmd.startswith((f"{shutil.which('bwrap')} ", sys.executable)) for cmd in seen), seen
    assert not any("-m runyard server" in cmd for cmd in seen), seen
    assert "ProcessLookupError" in failed(escape, "signal_server")
    assert "ProcessLookupError" in failed(escape, "kill_server")


def test_the_system_and_the_server_home_cannot_be_written(escape):
    for name in ("write_usr", "write_root", "write_cgroup", "write_sysctl"):
        assert "Read-only file system" in failed(escape, name), name
    assert "CalledProcessError" in failed(escape, "remount_root")  # no capabilities to do it with
    assert not (escape["home"] / "escaped.txt").exists()  # a write there, if any, stayed in the sandbox
    assert not Path("/usr/escaped.txt").exists() and not Path("/escaped.txt").exists()


def test_tmp_is_private_both_ways(escape):
    assert "FileNotFoundError" in failed(escape, "host_tmp")
    assert escape["out"]["write_tmp"]["ok"]  # it has a /tmp of its own...
    assert not escape["run_tmp"].exists()  # ...which is not the host's


def test_what_a_run_needs_still_works(escape):
    out = escape["out"]
    assert out["write_work"]["ok"] and (escape["work"] / "mine.txt").read_text() == "escaped"
    assert out["import_runyard"]["ok"], out["import_runyard"]
    assert out["own_run_with_own_token"] == {"ok": True, "value": 200}
