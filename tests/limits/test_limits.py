"""Limits enforced, not only recorded: cpu, pids and memory through a real server (real cgroups here).

Skipped only where cgroups cannot be written (not root, or no hierarchy): there the memory limit falls back
to the watchdog, which tests/runtime covers, and cpu and pids are not enforced (the limits note says so).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from tests.runtime.test_local_runtime import HOG, cgroups_writable
from tests.support import ServerProcess, experiment, read_logs

pytestmark = pytest.mark.skipif(not cgroups_writable(), reason="cgroups are not writable here")

MiB = 1 << 20

BUSY = """
import json, os, time
t0, c0 = time.monotonic(), os.times()
while time.monotonic() - t0 < 2.0:
    pass
c1, wall = os.times(), time.monotonic() - t0
print(json.dumps({"cores": (c1.user + c1.system - c0.user - c0.system) / wall}))
"""

FORK_BOMB = """
import errno, json, os, signal, time
children = []
error = None
while len(children) < 1000:  # bounded: the limit must stop it long before
    try:
        pid = os.fork()
    except OSError as e:
        error = errno.errorcode.get(e.errno, str(e.errno))
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print(json.dumps({"forked": len(children), "error": error}))
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("limits") / "home").start()
    yield server
    server.stop()


def run(srv: ServerProcess, name: str, command: list[str], **resources) -> tuple[dict, list[dict]]:
    api = srv.api()
    doc = experiment(name, command, resources=resources)
    assert api.put(f"/experiments/{name}", json=doc).status_code in (200, 201)
    lines, end = read_logs(api, name)
    assert end.get("phase") in ("Succeeded", "Failed"), (end, lines)
    return api.get(f"/runs/{name}").json(), lines


def stdout_json(lines: list[dict]) -> dict:
    return json.loads(next(line["text"] for line in lines if line["stream"] == "stdout"))


def busy_here(seconds: float) -> float:
    """The share of a core a busy loop in this process gets now (no limit): how loaded the host is."""
    t0, c0 = time.monotonic(), time.process_time()
    while time.monotonic() - t0 < seconds:
        pass
    return (time.process_time() - c0) / (time.monotonic() - t0)


def test_a_busy_loop_with_half_a_core_uses_about_half_a_core(srv):
    doc, lines = run(srv, "busy", [sys.executable, "-c", BUSY], cpu=0.5)
    assert doc["status"]["phase"] == "Succeeded", lines
    cores = stdout_json(lines)["cores"]
    assert cores <= 0.65, f"measured {cores:.2f} cores with cpu: 0.5"
    if cores < 0.35 and (free := busy_here(1.0)) < 0.8:
        pytest.skip(f"host too busy to measure: an unlimited busy loop here got {free:.2f} of a core")
    assert cores >= 0.35, f"measured {cores:.2f} cores with cpu: 0.5"
    limits = doc["status"]["limits"]
    assert limits["mechanism"] in ("cgroup-v1", "cgroup-v2") and "cpu" in limits["enforced"]
    assert doc["status"]["peakMemoryBytes"] > 0  # measured for every run, limited or not


def test_a_fork_bomb_stops_at_the_pids_limit_and_the_host_is_unharmed(srv):
    doc, lines = run(srv, "bomb", [sys.executable, "-c", FORK_BOMB], pids=32)
    assert doc["status"]["phase"] == "Succeeded", lines
    got = stdout_json(lines)
    assert got["error"] == "EAGAIN", got
    assert 10 <= got["forked"] < 32, got  # the sandbox's own processes count too
    assert "pids" in doc["status"]["limits"]["enforced"] and doc["status"]["limits"]["pids"] == 32
    assert subprocess.run(["true"], check=False).returncode == 0  # this side can still fork


def test_memory_1ki_ends_oomkilled_with_its_peak_and_says_so(srv):
    doc, lines = run(srv, "tiny", ["/bin/sh", "-c", "echo never printed"], memory="1Ki")
    st = doc["status"]
    assert (st["phase"], st["reason"], st["exitCode"]) == ("Failed", "OOMKilled", -signal.SIGKILL), st
    assert st["peakMemoryBytes"] == 1024  # it reached its limit: that is what an OOM kill means
    assert "killed: out of memory (limit 1.0 KiB, peak 1.0 KiB)" in st["message"]
    system = [line["text"] for line in lines if line["stream"] == "system"]
    assert "killed: out of memory (limit 1.0 KiB, peak 1.0 KiB)" in system, lines


def test_a_growing_hog_is_oomkilled_with_its_peak_near_the_limit(srv):
    doc, lines = run(srv, "hog", [sys.executable, "-c", HOG], memory="128Mi")
    st = doc["status"]
    assert (st["phase"], st["reason"], st["exitCode"]) == ("Failed", "OOMKilled", -signal.SIGKILL), st
    assert st["peakMemoryBytes"] == 128 * MiB
    assert "killed: out of memory (limit 128.0 MiB, peak 128.0 MiB)" in st["message"]
    assert not any(line["text"] == "survived" for line in lines)


def test_the_peak_memory_of_a_run_is_measured(srv):
    """Without a limit too: a memory cgroup is made for every run that has limits (pids always has)."""
    grow = "x = bytearray(64 << 20); x[::4096] = b'1' * len(x[::4096]); print('held')"
    doc, lines = run(srv, "grow", [sys.executable, "-c", grow], pids=64)
    assert doc["status"]["phase"] == "Succeeded", lines
    assert 64 * MiB <= doc["status"]["peakMemoryBytes"] <= 256 * MiB, doc["status"]["peakMemoryBytes"]
