"""The environments service in process, on a real store and with real uv builds: GC with an injected
time, removal while a run uses an environment, and one build when two servers ask for it at once."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tests.environments.conftest import TINY
from tests.support import fresh_postgres_database

from runyard.core.clock import now
from runyard.core.errors import Conflict, Invalid, NotFound
from runyard.core.phases import Phase
from runyard.core.resources import ObjectMeta, Run, RunSpec
from runyard.services.env_build import uv_binary
from runyard.services.environments import EnvironmentProblem, Environments
from runyard.services.notify import Notifier
from runyard.services.snapshots import BlobStore
from runyard.settings import RuntimeSettings
from runyard.store import Store

HOUR = 3600.0


def service(home: Path, store: Store, retention: float = HOUR) -> Environments:
    settings = RuntimeSettings(env_retention_seconds=retention)
    return Environments(store, home, BlobStore(home / "blobs"), Notifier(), settings, adopt=False)


@pytest.fixture
def envs(tmp_path) -> Iterator[Environments]:
    store = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    service_ = service(tmp_path / "home", store)
    yield service_
    service_.close()
    store.close()


def built(envs: Environments, requirements: str, **kw) -> dict:
    rec = envs.request("default", {"requirements.txt": requirements}, **kw)
    rec = envs.wait(rec["id"], timeout=120)
    assert rec["state"] == "Ready", rec["message"]
    return envs.get("default", rec["id"])


def test_gc_removes_what_nobody_used_for_the_retention_keeps_the_record_and_rebuilds_it_exactly(envs):
    rec = built(envs, TINY + "# gc\n", name="tiny")
    env_id, directory = rec["id"], envs.directory(rec["id"])
    assert rec["names"] == ["tiny"] and rec["packages"] == [{"name": "six", "version": "1.16.0"}]
    assert "six==1.16.0" in rec["lock"] and "--hash=sha256:" in rec["lock"]
    assert (directory / "bin" / "python").exists() and not directory.stat().st_mode & 0o222

    assert envs.collect(now() + timedelta(seconds=HOUR - 60)) == []  # used within the retention
    assert envs.collect(now() + timedelta(seconds=HOUR + 60)) == [env_id]
    assert not directory.exists()
    gone = envs.get("default", "tiny")
    assert gone["state"] == "Removed" and gone["lock"] == rec["lock"]

    again = built(envs, TINY + "# gc\n")
    assert again["id"] == env_id and again["lockDigest"] == rec["lockDigest"]
    assert (directory / "bin" / "python").exists()


def test_an_environment_an_unfinished_run_uses_is_neither_collected_nor_removed(envs):
    rec = built(envs, TINY + "# in use\n")
    store = envs.store
    run = store.create(Run(metadata=ObjectMeta(name="user", project="default"), spec=RunSpec(command="x")))
    run.status.phase = Phase.RUNNING
    run.status.environment = {"id": rec["id"], "name": "default"}
    run = store.update_status(run)
    assert envs.collect(now() + timedelta(days=365)) == []
    with pytest.raises(Conflict, match="used by run user"):
        envs.remove("default", rec["id"][:20])
    run.status.phase = Phase.SUCCEEDED
    store.update_status(run)
    envs.remove("default", rec["id"][:20])
    assert envs.get("default", rec["id"])["state"] == "Removed"
    assert not envs.directory(rec["id"]).exists()


def test_names_ids_and_what_another_project_may_see(envs):
    rec = built(envs, TINY + "# names\n", name="mine")
    assert envs.get("default", "mine")["id"] == rec["id"]
    assert envs.get("default", rec["id"][:19])["id"] == rec["id"]
    with pytest.raises(NotFound, match="runyard env build --name other"):
        envs.get("default", "other")
    with pytest.raises(NotFound):
        envs.get("elsewhere", rec["id"])  # an id this project never asked for
    assert [r["id"] for r in envs.list("default")] == [rec["id"]]
    assert envs.for_run("default", "uid", "mine", None, waited=False)["id"] == rec["id"]  # cached now
    envs.remove("default", "mine")
    after = envs.get("default", rec["id"])
    assert after["names"] == [] and after["state"] == "Ready"
    with pytest.raises(EnvironmentProblem, match="not found"):
        envs.for_run("default", "uid", "mine", None, waited=False)
    with pytest.raises(Invalid) as bad:
        envs.request("default", {"setup.py": "x", "README": ""}, name="default")
    fields = {d.field for d in bad.value.details}
    assert fields == {"files.setup.py", "files.README", "name"}
    with pytest.raises(Invalid) as bad:
        envs.request("default", {".python-version": "3.11"})
    assert [d.field for d in bad.value.details] == ["files"]
    with pytest.raises(Invalid) as bad:
        envs.request("default", {"requirements.txt": TINY}, python="2.1")
    assert bad.value.details[0].field == "python" and "Python 2.1 is not installed" in str(bad.value)


def test_the_log_is_read_by_offset_and_says_when_it_is_complete(envs):
    rec = built(envs, TINY + "# log\n")
    text, end, complete = envs.log(rec["id"], 0)
    assert complete and text.startswith("resolving dependencies") and "installing 1 package" in text
    assert text.rstrip().splitlines()[-1].startswith("ready in ")
    assert envs.log(rec["id"], end) == ("", end, True)


@pytest.mark.postgres
def test_two_servers_asking_at_once_build_once(tmp_path):
    """Two services on one PostgreSQL database (as two servers would be): the first insert claims the
    build, the other waits for it and finds it Ready."""
    url = fresh_postgres_database()
    stores = [Store(url), Store(url)]
    a, b = (service(tmp_path / f"home-{i}", s) for i, s in enumerate(stores))
    try:
        ra = a.request("default", {"requirements.txt": TINY + "# two\n"})
        rb = b.request("default", {"requirements.txt": TINY + "# two\n"})
        assert ra["id"] == rb["id"] and a.builds_started + b.builds_started == 1
        assert b.wait(ra["id"], 120)["state"] == "Ready"
    finally:
        for x in (a, b):
            x.close()
        for s in stores:
            s.close()


def test_a_failed_build_fails_the_runs_that_waited_and_is_built_again_for_a_new_one(envs):
    rec = envs.request("default", {"requirements.txt": "numpy==99.0\n"}, name="broken")
    failed = envs.wait(rec["id"], 60)
    assert failed["state"] == "Failed" and "numpy==99.0" in failed["message"]
    assert failed["message"].startswith(f"environment {rec['id']} failed to build: ")
    with pytest.raises(EnvironmentProblem) as waited:
        envs.for_run("default", "uid-waited", "broken", None, waited=True)
    assert waited.value.reason == "EnvironmentBuildFailed" and "numpy==99.0" in str(waited.value)
    before = envs.builds_started
    again = envs.for_run("default", "uid-new", "broken", None, waited=False)
    assert again is not None and again["state"] == "Building" and envs.builds_started == before + 1
    assert envs.wait(rec["id"], 60)["state"] == "Failed"


def test_a_build_whose_server_stopped_heartbeating_is_taken_over(envs):
    plan = envs.plan({"requirements.txt": TINY + "# orphan\n"})
    assert plan is not None
    assert envs.store.env_claim(plan.fields(), "a-server-that-died")
    envs.store.env_update(plan.id, heartbeat_at=now())
    assert envs.request("default", {"requirements.txt": TINY + "# orphan\n"})["state"] == "Building"
    assert envs.builds_started == 0  # its builder may still be alive: wait for it
    envs.store.env_update(plan.id, heartbeat_at=now() - timedelta(seconds=31))
    envs.request("default", {"requirements.txt": TINY + "# orphan\n"})
    assert envs.builds_started == 1
    assert envs.wait(plan.id, 60)["state"] == "Ready"


def test_pyproject_alone_and_with_uv_lock_and_the_python_they_ask_for(envs, tmp_path):
    pythons = {i["version"].rsplit(".", 1)[0] for i in envs.pythons()}
    wanted = "3.12" if "3.12" in pythons else sorted(pythons)[-1]
    project = (
        f'[project]\nname = "p"\nversion = "0"\nrequires-python = ">={wanted}"\n'
        'dependencies = ["six==1.16.0"]\n'
    )
    alone = envs.wait(envs.request("default", {"pyproject.toml": project})["id"], 120)
    assert alone["state"] == "Ready" and alone["source"] == {"kind": "pyproject", "files": ["pyproject.toml"]}
    assert alone["python"]["version"].startswith(wanted) or alone["python"]["version"] > wanted
    (tmp_path / "pyproject.toml").write_text(project)
    subprocess.run(
        [uv_binary(), "lock", "--python", alone["python"]["path"]],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    files = {
        "pyproject.toml": project,
        "uv.lock": (tmp_path / "uv.lock").read_text(),
        ".python-version": wanted,
    }
    locked = envs.wait(envs.request("default", files)["id"], 120)
    assert locked["state"] == "Ready", locked["message"]
    assert locked["source"]["kind"] == "uv.lock" and locked["python"]["version"].startswith(wanted)
    assert [p["name"] for p in locked["packages"]] == ["six"]
