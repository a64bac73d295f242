"""Tracking-only runs: `runyard.start_run` outside any run, how they end, and how the controller treats
them (never launched, no capacity held, cancelled by a stop, their artifacts removed with them)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from tests.sdk.conftest import history, python, script_env
from tests.support import ServerProcess, experiment, wait_phase

OPEN_AND_LOG = """
import runyard
with runyard.start_run(project="default", name="outside", experiment="sweeps") as run:
    runyard.log_params({"lr": 0.1})
    for i in range(1000):
        runyard.log_metric("loss", 1 / (i + 1), step=i)
print(run.name, run.run_id)
"""


def test_start_run_outside_a_run_finds_the_local_server_and_ends_the_run(srv):
    env = script_env(RUNYARD_HOME=str(srv.home))  # no URL nor token: server.json and admin-token
    out = python(OPEN_AND_LOG, env)
    assert out.returncode == 0, out.stderr
    name, run_id = out.stdout.split()
    api = srv.api()
    run = api.get("/runs/outside").json()
    assert name == "outside" and run_id == run["metadata"]["uid"].replace("-", "")
    assert run["spec"]["trackingOnly"] is True and run["status"]["phase"] == "Succeeded"
    assert run["status"]["attempts"] == []  # nothing was launched
    assert len(history(api, "outside", "loss")) == 1000
    tracked = api.get("/runs/outside/tracking").json()
    assert tracked["experiment"]["name"] == "sweeps" and tracked["status"] == "FINISHED"
    names = [e["name"] for e in api.get("/tracking/experiments").json()["experiments"]]
    assert "sweeps" in names


def test_a_block_that_raises_fails_the_run_and_an_interrupt_cancels_it(srv):
    code = """
import runyard
try:
    with runyard.start_run(name="raises"):
        runyard.log_metric("x", 1)
        raise ValueError("boom")
except ValueError:
    pass
try:
    with runyard.start_run(name="interrupted"):
        raise KeyboardInterrupt
except KeyboardInterrupt:
    pass
runyard.start_run(name="never-ended")  # no block: ended at exit, failed as the script fails
runyard.log_metric("y", 2)
raise SystemExit("the script fails")
"""
    out = python(code, script_env(srv))
    assert out.returncode == 1 and "the script fails" in out.stderr
    api = srv.api()
    phases = {n: api.get(f"/runs/{n}").json()["status"]["phase"] for n in ("raises", "interrupted")}
    assert phases == {"raises": "Failed", "interrupted": "Cancelled"}
    assert api.get("/runs/raises/metrics").json()["metrics"][0]["value"] == 1.0
    never = wait_phase(api, "never-ended", {"Succeeded", "Failed"}, timeout=5)
    assert never["status"]["phase"] == "Succeeded"  # SystemExit is an exit, not an uncaught error
    assert api.get("/runs/never-ended/metrics").json()["metrics"][0]["value"] == 2.0


def test_an_uncaught_error_fails_a_run_no_block_ended(srv):
    code = "import runyard\nrunyard.start_run(name='uncaught')\nraise RuntimeError('bad')"
    assert python(code, script_env(srv)).returncode == 1
    assert srv.api().get("/runs/uncaught").json()["status"]["phase"] == "Failed"


def test_a_name_already_taken_is_refused_with_the_reason(srv):
    code = """
import runyard
with runyard.start_run(name="taken"):
    pass
try:
    runyard.start_run(name="taken")
except runyard.tracking.TrackingError as e:
    print(e)
"""
    out = python(code, script_env(srv))
    assert "taken" in out.stdout and "exists" in out.stdout.lower(), out


def test_runyard_stop_cancels_a_tracking_only_run(srv):
    api = srv.api()
    doc = api.post("/tracking/runs", json={"name": "to-stop"}).json()
    assert doc["status"]["phase"] == "Running" and doc["runId"] == doc["metadata"]["uid"].replace("-", "")
    stop = subprocess.run(
        [sys.executable, "-m", "runyard", "stop", "to-stop"], env=srv.env(), capture_output=True, text=True
    )
    assert stop.returncode == 0, stop.stderr
    run = wait_phase(api, "to-stop", {"Cancelled"}, timeout=10)
    assert run["status"]["attempts"] == []
    assert api.get("/runs/to-stop/tracking").json()["status"] == "KILLED"


def test_tracking_only_runs_hold_no_capacity(tmp_path):
    env = {**os.environ, "RUNYARD_CONTROLLER_MAX_RUNNING_RUNS": "1"}
    server = ServerProcess(tmp_path / "home", env=env).start()
    try:
        api = server.api()
        for name in ("open-1", "open-2"):
            assert api.post("/tracking/runs", json={"name": name}).status_code == 201
        api.put("/experiments/executed", json=experiment("executed", "true"))
        run = wait_phase(api, "executed", {"Succeeded"}, timeout=20)
        assert run["status"]["reason"] == "Completed"
        assert api.get("/runs/open-1").json()["status"]["phase"] == "Running"  # still open, not launched
    finally:
        server.stop()


def test_deleting_a_run_removes_its_artifacts(srv, tmp_path):
    api = srv.api()
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    code = f"""
import runyard
with runyard.start_run(name="with-files") as run:
    runyard.log_artifact({str(model)!r}, artifact_path="models")
print(run.run_id)
"""
    out = python(code, script_env(srv))
    assert out.returncode == 0, out.stderr
    run_dirs = list((srv.home / "artifacts").rglob(out.stdout.strip()))
    assert len(run_dirs) == 1
    assert (run_dirs[0] / "artifacts" / "models" / "model.bin").read_bytes() == b"weights"
    assert api.delete("/runs/with-files").status_code == 200
    deadline = time.monotonic() + 10
    while api.get("/runs/with-files").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not run_dirs[0].exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_points_logged_while_the_server_is_down_are_sent_once_it_is_back(tmp_path):
    home, port = tmp_path / "home", _free_port()
    args = ["server", "--home", str(home), "--port", str(port)]
    first = ServerProcess(home, args=args).start()
    api = first.api()
    api.post("/tracking/runs", json={"name": "survives"})
    first.stop()
    code = """
import runyard
for i in range(1000):
    runyard.log_metric("loss", i, step=i)
print("logged", flush=True)
"""  # as inside a run: the run's name and the server from the environment
    env = script_env(first, RUNYARD_RUN_ID="survives", RUNYARD_PROJECT="default")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "logged"
        time.sleep(1.0)  # the sender meets a refused connection and backs off
        second = ServerProcess(home, args=args).start()
        assert proc.wait(timeout=30) == 0  # exit waited for the retry
        assert [p["step"] for p in history(second.api(), "survives", "loss")] == list(range(1000))
        second.stop()
    finally:
        proc.kill()


def test_a_run_stopped_while_its_block_is_open_stays_cancelled(srv):
    """Ending the block after `runyard stop` must not turn the stopped run into a success."""
    code = """
import sys, runyard
with runyard.start_run(name="stopped-open"):
    print("open", flush=True)
    sys.stdin.readline()
    runyard.log_metric("x", 1)
"""
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
    proc = subprocess.Popen([sys.executable, "-c", code], env=script_env(srv), text=True, **pipes)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        api = srv.api()
        api.post("/runs/stopped-open/stop")
        wait_phase(api, "stopped-open", {"Cancelled"}, timeout=10)
        proc.communicate("\n", timeout=30)
        assert proc.returncode == 0
        assert api.get("/runs/stopped-open").json()["status"]["phase"] == "Cancelled"
        assert api.get("/runs/stopped-open/metrics").json()["metrics"][0]["value"] == 1.0  # still kept
    finally:
        proc.kill()


def test_a_run_deleted_while_its_block_is_open_is_reported_not_raised(srv):
    code = """
import runyard
try:
    with runyard.start_run(name="deleted-open"):
        import httpx, os
        api = httpx.Client(base_url=os.environ["RUNYARD_API_URL"] + "/apis/runyard.dev/v1/projects/default",
                           headers={"Authorization": "Bearer " + os.environ["RUNYARD_TOKEN"]})
        api.delete("/runs/deleted-open")
        import time
        while api.get("/runs/deleted-open").status_code != 404:
            time.sleep(0.05)
        raise ValueError("the block's own error")
except ValueError as e:
    print("caught", e)
"""
    out = python(code, script_env(srv))
    assert out.stdout.strip() == "caught the block's own error", out
    assert out.stderr.count("runyard: run 'deleted-open' could not be ended") == 1
