"""Every example in examples/ applies through the CLI against a real server; the Experiment runs the
example training script from the snapshot `apply` uploads, and finishes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support import ServerProcess, wait_phase

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("examples") / "home").start()
    yield server
    server.stop()


def cli(srv: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in srv.env().items() if k != "RUNYARD_HOME"}
    return subprocess.run([sys.executable, "-m", "runyard", *args], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_each_example_applies(srv, example):
    result = cli(srv, "apply", "-f", str(EXAMPLES / example))
    assert result.returncode == 0, result.stderr
    assert " created" in result.stdout or " unchanged" in result.stdout


def test_the_example_experiment_trains_from_its_uploaded_folder(srv):
    assert cli(srv, "apply", "-f", str(EXAMPLES / "experiment.yaml")).returncode == 0
    run = wait_phase(srv.api(), "train-example", {"Succeeded", "Failed"}, timeout=60)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    logs = cli(srv, "logs", "train-example").stdout.splitlines()
    assert logs[:3] == ["epoch 1/3 loss=1.000", "epoch 2/3 loss=0.500", "epoch 3/3 loss=0.333"]
    assert logs[-1] == "run train-example done; model saved"
    assert run["spec"]["snapshot"].startswith("sha256:")
    assert not (EXAMPLES / "model.json").exists()  # the run wrote into its own copy, not the user's folder


def test_the_example_pipeline_runs_its_second_job_after_the_first_succeeds(srv):
    assert cli(srv, "apply", "-f", str(EXAMPLES / "job.yaml")).returncode == 0
    trigger = cli(srv, "jobs", "trigger", "nightly-train", "--param", "EPOCHS=2", "--follow")
    assert trigger.returncode == 0, trigger.stderr
    assert "epoch 2/2 loss=0.500" in trigger.stdout
    api = srv.api()
    deadline = time.monotonic() + 60
    while not (
        runs := api.get("/runs", params={"labelSelector": "runyard.dev/job=evaluate"}).json()["items"]
    ):
        assert time.monotonic() < deadline, "evaluate never ran after nightly-train succeeded"
        time.sleep(0.1)
    run = wait_phase(api, runs[0]["metadata"]["name"], {"Succeeded", "Failed"}, timeout=60)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["metadata"]["annotations"]["runyard.dev/trigger"] == "dependency"


def test_the_example_model_serves_its_handler_from_its_uploaded_folder(srv):
    assert cli(srv, "apply", "-f", str(EXAMPLES / "model.yaml")).returncode == 0
    api = srv.api()
    deadline = time.monotonic() + 90
    while (status := api.get("/models/doubler").json()["status"]).get("readyReplicas", 0) < 2:
        assert time.monotonic() < deadline, f"the example model never got its two replicas ready: {status}"
        time.sleep(0.1)
    answer = cli(srv, "models", "predict", "doubler", '{"values": [1, 2, 3]}')
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == {"doubled": [2, 4, 6]}
    refused = cli(srv, "models", "predict", "doubler", '{"values": 3}')
    assert refused.returncode != 0 and "'values' must be a list of numbers" in refused.stderr, refused.stderr
