"""Tracking from inside real runs: nothing logged is lost at exit or on `runyard stop`, any Python can
`import runyard`, and MLflow's own client logs into the very run it executes in."""

from __future__ import annotations

import subprocess
import sys

from tests.sdk.conftest import history, python, script_env
from tests.support import experiment, read_logs, wait_phase

LOG_50K = """
import runyard
for i in range(50_000):
    runyard.log_metric("loss", 1.0 / (i + 1), step=i)
runyard.log_params({"lr": 0.01, "layers": 3})
runyard.set_tag("stage", "test")
print("logged", flush=True)
"""

LOG_UNTIL_STOPPED = """
import os, signal, time, runyard

def stopped(signum, frame):  # the run's own handler: runyard's flushes first, then calls it
    print("last", i, flush=True)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)

signal.signal(signal.SIGTERM, stopped)
i = 0
while True:  # about 20,000 points a second until SIGTERM: points are always queued when it comes
    runyard.log_metric("loss", float(i), step=i)
    i += 1
    if i % 200 == 0:
        time.sleep(0.01)
    if i == 50_000:
        print("logged 50000", flush=True)
"""

KILLED_RIGHT_AFTER = """
import os, signal, time, runyard
for i in range(50_000):
    runyard.log_metric("loss", float(i), step=i)
os.kill(os.getpid(), signal.SIGTERM)  # before the sender's next batch: most points are still queued
time.sleep(60)
"""


def test_every_point_of_a_run_that_exits_normally_is_stored(server):
    api = server.api()
    api.put("/experiments/exits", json=experiment("exits", [sys.executable, "-c", LOG_50K]))
    wait_phase(api, "exits", {"Succeeded"}, timeout=90)
    points = history(api, "exits", "loss")
    assert [p["step"] for p in points] == list(range(50_000))
    assert points[-1]["value"] == 1.0 / 50_000
    tracked = api.get("/runs/exits/tracking").json()
    assert tracked["params"] == {"lr": "0.01", "layers": "3"} and tracked["tags"]["stage"] == "test"
    assert tracked["status"] == "FINISHED"


def test_every_point_logged_before_runyard_stop_is_stored(server):
    api = server.api()
    doc = experiment("stopped", [sys.executable, "-c", LOG_UNTIL_STOPPED], stopGracePeriodSeconds=60)
    api.put("/experiments/stopped", json=doc)
    _until(api, "stopped", "logged 50000")
    stop = subprocess.run(
        [sys.executable, "-m", "runyard", "stop", "stopped"], env=server.env(), capture_output=True, text=True
    )
    assert stop.returncode == 0, stop.stderr
    run = wait_phase(api, "stopped", {"Cancelled"}, timeout=60)
    assert run["status"]["exitCode"] == -15  # the run's own handler ran after runyard's, then died of it
    lines, _ = read_logs(api, "stopped", follow=False)
    last = int(next(line["text"] for line in lines if line["text"].startswith("last ")).split()[1])
    steps = [p["step"] for p in history(api, "stopped", "loss")]
    assert steps == list(range(len(steps)))
    assert len(steps) in (last, last + 1)  # the signal came before or after `i += 1`
    assert len(steps) >= 50_000


def test_every_point_is_stored_when_sigterm_kills_a_run_that_has_no_handler(srv):
    api = srv.api()
    api.put("/experiments/sigterm", json=experiment("sigterm", [sys.executable, "-c", KILLED_RIGHT_AFTER]))
    run = wait_phase(api, "sigterm", {"Failed"}, timeout=60)
    assert run["status"]["exitCode"] == -15  # the default disposition, once the queue was sent
    assert [p["step"] for p in history(api, "sigterm", "loss")] == list(range(50_000))


def _until(api, run: str, text: str) -> None:
    seen = []
    with api.stream("GET", f"/runs/{run}/logs", params={"follow": "true"}, timeout=90) as resp:
        for raw in resp.iter_lines():
            seen.append(raw)
            if text in raw:
                return
    raise AssertionError(f"{text!r} never appeared in {run}'s logs: {seen[-5:]}")


def test_a_run_on_the_system_python_imports_runyard_and_logs(srv):
    """Not the server's environment: the base interpreter, which has none of the server's packages."""
    api = srv.api()
    base = subprocess.run(
        [sys.executable, "-c", "import sys, os; print(os.path.join(sys.base_prefix, 'bin', 'python3'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    code = "import sys, runyard; assert sys.prefix == sys.base_prefix; runyard.log_metric('x', 1)"
    api.put("/experiments/system-python", json=experiment("system-python", [base, "-c", code]))
    run = wait_phase(api, "system-python", {"Succeeded", "Failed"}, timeout=30)
    assert run["status"]["phase"] == "Succeeded", read_logs(api, "system-python", follow=False)
    assert [(m["key"], m["value"]) for m in api.get("/runs/system-python/metrics").json()["metrics"]] == [
        ("x", 1.0)
    ]


def test_the_spec_pythonpath_follows_the_sdk(srv):
    api = srv.api()
    code = "import os; print(os.environ['PYTHONPATH'])"
    api.put("/experiments/pp", json=experiment("pp", ["python3", "-c", code], env={"PYTHONPATH": "/opt/x"}))
    wait_phase(api, "pp", {"Succeeded"}, timeout=30)
    lines, _ = read_logs(api, "pp", follow=False)
    sdk, rest = lines[0]["text"].split(":")
    assert sdk.endswith("/sdk") and rest == "/opt/x"


MLFLOW_SCRIPT = """
import mlflow
with mlflow.start_run() as run:
    mlflow.log_metric("acc", 0.9, step=2)
    mlflow.log_param("model", "tree")
print("mlflow run", run.info.run_id, flush=True)
raise SystemExit(3)  # MLflow ended its run FINISHED; the process failing must still fail the Run
"""


def test_mlflow_start_run_inside_a_run_logs_into_that_run(srv):
    api = srv.api()
    api.put("/experiments/with-mlflow", json=experiment("with-mlflow", [sys.executable, "-c", MLFLOW_SCRIPT]))
    run = wait_phase(api, "with-mlflow", {"Succeeded", "Failed"}, timeout=90)
    lines, _ = read_logs(api, "with-mlflow", follow=False)
    printed = [line["text"] for line in lines if line["text"].startswith("mlflow run")]
    assert printed == [f"mlflow run {run['metadata']['uid'].replace('-', '')}"], lines[-10:]
    assert run["status"]["phase"] == "Failed" and run["status"]["exitCode"] == 3
    metrics = api.get("/runs/with-mlflow/metrics").json()["metrics"]
    assert [(m["key"], m["value"], m["step"]) for m in metrics] == [("acc", 0.9, 2)]
    tracked = api.get("/runs/with-mlflow/tracking").json()
    assert tracked["params"] == {"model": "tree"} and tracked["status"] == "FAILED"


def test_a_value_the_server_refuses_is_reported_once_and_the_rest_is_stored(srv):
    api = srv.api()
    code = """
import runyard
runyard.log_param("lr", 0.1)
for i in range(100):
    runyard.log_metric("loss", i, step=i)
    runyard.log_param("lr", 0.2)  # a param logged again with another value: refused, as by MLflow
print("done")
"""
    api.put("/experiments/refused", json=experiment("refused", [sys.executable, "-c", code]))
    wait_phase(api, "refused", {"Succeeded"}, timeout=30)
    lines, _ = read_logs(api, "refused", follow=False)
    reports = [line["text"] for line in lines if line["stream"] == "stderr"]
    assert len(reports) == 1, reports
    assert reports[0].startswith("runyard: run 'refused': the server refused tracking data")
    assert "lr" in reports[0]
    assert [p["step"] for p in history(api, "refused", "loss")] == list(range(100))
    assert api.get("/runs/refused/tracking").json()["params"] == {"lr": "0.1"}


def test_artifacts_logged_in_a_run_are_uploaded(srv, tmp_path):
    api = srv.api()
    code = """
import os, runyard
os.makedirs("out/sub")
open("model.bin", "wb").write(os.urandom(3 << 20))
open("out/a.txt", "w").write("a")
open("out/sub/b.txt", "w").write("b")
runyard.log_artifact("model.bin")
runyard.log_artifact("out/a.txt", artifact_path="single")
runyard.log_artifacts("out", artifact_path="all")
"""
    api.put("/experiments/artifacts", json=experiment("artifacts", [sys.executable, "-c", code]))
    run = wait_phase(api, "artifacts", {"Succeeded", "Failed"}, timeout=60)
    assert run["status"]["phase"] == "Succeeded", read_logs(api, "artifacts", follow=False)
    listed = api.get("/runs/artifacts/artifacts", params={"path": "all/sub"}).json()["files"]
    files = {f["path"]: f for f in listed}
    assert files["all/sub/b.txt"]["file_size"] == 1
    assert api.get("/runs/artifacts/artifacts/single/a.txt").content == b"a"
    assert len(api.get("/runs/artifacts/artifacts/model.bin").content) == 3 << 20
    outside = python("import runyard\nrunyard.log_metric('x', 1)", script_env(srv))
    assert "no active run" in outside.stderr


def test_a_forked_child_logs_on_its_own_connection_and_nothing_is_lost(srv):
    code = """
import os, sys, runyard
runyard.log_metric("parent", 0, step=0)
runyard.tracking.flush()  # the parent's connection is open when the child is forked
pid = os.fork()
who = "child" if pid == 0 else "parent"
for i in range(1, 20_001):
    runyard.log_metric(who, i, step=i)
if pid == 0:
    sys.exit(0)  # an ordinary exit: the child's queue is sent
os.waitpid(pid, 0)
"""
    api = srv.api()
    api.put("/experiments/forks", json=experiment("forks", [sys.executable, "-c", code]))
    run = wait_phase(api, "forks", {"Succeeded", "Failed"}, timeout=60)
    assert run["status"]["phase"] == "Succeeded", read_logs(api, "forks", follow=False)
    assert [p["step"] for p in history(api, "forks", "child")] == list(range(1, 20_001))
    assert [p["step"] for p in history(api, "forks", "parent")] == list(range(20_001))
