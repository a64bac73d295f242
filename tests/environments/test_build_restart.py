"""A server killed (kill -9) in the middle of a build: no Ready record of the partial environment is left,
uv dies with the server, and the next server builds it again and runs the run that waited for it."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import psutil
from tests.environments.conftest import builds_of, snapshot
from tests.support import ServerProcess, experiment, read_logs, wait_phase

from runyard.store import Store

# setup.py of a package that builds only once a flag file is gone: the build is held mid-way, for as long
# as the test needs, without any sleep in it.
SETUP = """
import os, time
from setuptools import setup
open({started!r}, "w").close()
deadline = time.monotonic() + 60
while os.path.exists({hold!r}) and time.monotonic() < deadline:
    time.sleep(0.05)
setup(name="heldpkg", version="1.0", py_modules=["heldpkg"])
"""


def held_sdist(folder: Path) -> tuple[Path, Path, Path]:
    """An sdist whose build waits while `hold` exists and touches `started` when it begins."""
    hold, started, sdist = folder / "hold", folder / "started", folder / "heldpkg-1.0.tar.gz"
    hold.touch()
    with tarfile.open(sdist, "w:gz") as tar:
        for name, text in {
            "setup.py": SETUP.format(started=str(started), hold=str(hold)),
            "heldpkg.py": "HELD = 'released'\n",
            "PKG-INFO": "Metadata-Version: 2.1\nName: heldpkg\nVersion: 1.0\n",
        }.items():
            data = text.encode()
            info = tarfile.TarInfo(f"heldpkg-1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return sdist, hold, started


def wait_for(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_kill_9_mid_build_leaves_no_ready_record_and_the_next_server_builds_it(tmp_path):
    sdist, hold, started = held_sdist(tmp_path)
    home = tmp_path / "home"
    server = ServerProcess(home).start()
    files = {
        "requirements.txt": f"heldpkg @ {sdist.as_uri()}\n",
        "use.py": "import heldpkg; print(heldpkg.HELD)",
    }
    api = server.api()
    api.put("/experiments/held", json=experiment("held", "python use.py", snapshot=snapshot(server, files)))
    wait_for(started.exists, "the build to start")
    run = wait_phase(api, "held", {"Pending"})
    assert run["status"]["reason"] == "EnvironmentBuilding"
    assert server.proc is not None
    uv_procs = [p for p in psutil.Process(server.proc.pid).children(recursive=True) if "uv" in p.name()]
    server.kill9()

    wait_for(lambda: not any(p.is_running() and p.status() != "zombie" for p in uv_procs), "uv to die")
    store = Store(f"sqlite:///{home / 'runyard.db'}")
    try:
        (row,) = [r for r in store.env_building()]
        assert row["state"] == "Building"
        env_dir = home / "envs" / row["id"].removeprefix("sha256:")
        assert not (env_dir / ".runyard-environment.json").exists()
    finally:
        store.close()

    hold.unlink()
    again = ServerProcess(home).start()
    try:
        done = wait_phase(again.api(), "held", {"Succeeded", "Failed"}, timeout=120)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        assert done["status"]["environment"]["id"] == row["id"]
        lines, _ = read_logs(again.api(), "held", follow=False)
        assert [line["text"] for line in lines] == ["released"]
        assert builds_of(again, row["id"]) == 2  # the one cut short, and the one that finished
    finally:
        again.stop()
