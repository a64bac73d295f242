"""Runs in environments, through a real server: the first run builds its project's environment with uv,
the next ones reuse it; concurrent runs share one build; what fails says why."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest
from tests.environments.conftest import SHOW, TINY, builds_of, snapshot
from tests.support import ServerProcess, experiment, read_logs, wait_phase


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("envs") / "home").start()
    yield server
    server.stop()


def run(srv: ServerProcess, name: str, files: dict[str, str], command, **spec) -> dict:
    api = srv.api()
    doc = experiment(name, command, snapshot=snapshot(srv, files), **spec)
    r = api.put(f"/experiments/{name}", json=doc)
    assert r.status_code in (200, 201), r.text
    return wait_phase(api, name, {"Succeeded", "Failed", "Cancelled"}, timeout=120)


def output(srv: ServerProcess, name: str) -> str:
    lines, _ = read_logs(srv.api(), name, follow=False)
    return "".join(line["text"] + "\n" for line in lines)


def test_a_run_builds_its_environment_once_and_the_next_run_reuses_it(srv):
    files = {"requirements.txt": TINY, "show.py": SHOW}
    first = run(srv, "first", files, "python show.py")
    assert first["status"]["phase"] == "Succeeded", first["status"]
    env = first["status"]["environment"]
    assert env["id"].startswith("sha256:") and len(env["id"]) == 71
    assert env["name"] == "default" and env["packages"] == 1 and env["lockDigest"].startswith("sha256:")
    assert env["python"].count(".") == 2 and env["platform"].startswith("linux")
    directory = srv.home / "envs" / env["id"].removeprefix("sha256:")
    assert f"six 1.16.0 in {directory}" in output(srv, "first")
    ready = [c for c in first["status"]["conditions"] if c["type"] == "EnvironmentReady"]
    assert ready and ready[0]["status"] == "True"
    assert not (directory / "bin" / "python").stat().st_mode & 0o222 or not directory.stat().st_mode & 0o222

    second = run(
        srv, "second", {**files, "other.py": "# a code change, same dependencies\n"}, "python show.py"
    )
    assert second["status"]["phase"] == "Succeeded"
    assert second["status"]["environment"]["id"] == env["id"]
    assert builds_of(srv, env["id"]) == 1


def test_runs_submitted_at_once_share_one_build(srv):
    files = {"requirements.txt": TINY + "# shared\n", "show.py": SHOW}
    done: dict[str, dict] = {}
    threads = [
        threading.Thread(target=lambda n=n: done.__setitem__(n, run(srv, n, files, "python show.py")))
        for n in ("together-a", "together-b", "together-c")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {d["status"]["phase"] for d in done.values()} == {"Succeeded"}
    ids = {d["status"]["environment"]["id"] for d in done.values()}
    assert len(ids) == 1
    assert builds_of(srv, ids.pop()) == 1


def test_an_unresolvable_requirement_fails_the_run_with_uvs_own_message(srv):
    got = run(srv, "unresolvable", {"requirements.txt": "numpy==99.0\n"}, "python -c pass")
    st = got["status"]
    assert st["phase"] == "Failed" and st["reason"] == "EnvironmentBuildFailed", st
    assert "failed to build" in st["message"] and "numpy==99.0" in st["message"]
    assert "no version of numpy" in st["message"].lower() and "Traceback" not in st["message"]


def test_a_python_that_is_not_installed_fails_the_run_naming_the_ones_there_are(srv):
    got = run(srv, "nopython", {"requirements.txt": TINY, ".python-version": "3.99\n"}, "python -c pass")
    st = got["status"]
    assert st["phase"] == "Failed" and st["reason"] == "EnvironmentBuildFailed", st
    assert "Python 3.99 is not installed" in st["message"] and "installed: " in st["message"]
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in st["message"]


def test_system_and_an_unknown_name(srv):
    files = {"requirements.txt": "numpy==99.0\n"}  # never built: `system` ignores the project's files
    host = run(srv, "on-host", files, [sys.executable, "-c", "print('host')"], environment="system")
    assert host["status"]["phase"] == "Succeeded" and host["status"].get("environment") is None
    unknown = run(srv, "unknown-env", files, "python -c pass", environment="nosuchenv")
    st = unknown["status"]
    assert st["phase"] == "Failed" and st["reason"] == "EnvironmentNotFound", st
    assert "runyard env build --name nosuchenv" in st["message"]


def test_a_project_pinning_an_old_httpx_still_logs_with_runyard(srv):
    files = {
        "requirements.txt": "httpx==0.23.0\n",
        "log.py": "import httpx, runyard\n"
        "runyard.log_metric('pinned', 0.23)\n"
        "print('httpx', httpx.__version__)\n",
    }
    got = run(srv, "pinned", files, "python log.py")
    assert got["status"]["phase"] == "Succeeded", (got["status"], output(srv, "pinned"))
    assert "httpx 0.23.0" in output(srv, "pinned")
    tracked = srv.api().get("/runs/pinned/tracking").json()
    assert tracked["metrics"]["pinned"]["value"] == 0.23, tracked
