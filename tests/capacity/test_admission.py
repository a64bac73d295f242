"""A request the node can never fit fails at admission, naming the resource and both figures; a node
setting above what the host has stops the server with a line naming it. Through real server processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from tests.support import experiment, wait_phase


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"cpu": 3}, "requests cpu 3 cores, but the node offers 2 (RUNYARD_RUNTIME_NODE_CPU)"),
        ({"memory": "1000Ti"}, "requests memory 1000.0 TiB, but the node offers "),
        ({"gpu": 3}, "requests 3 GPUs, but the node offers 2"),
    ],
)
def test_a_request_beyond_the_node_fails_unschedulable_and_launches_nothing(node_server, resources, message):
    api = node_server.api()
    name = "too-big-" + next(iter(resources))
    api.put(f"/experiments/{name}", json=experiment(name, "true", resources=resources))
    status = wait_phase(api, name, {"Failed", "Succeeded"})["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "Unschedulable")
    assert status["message"].startswith(message)
    assert status["attempts"] == [] and status.get("allocation") is None


def test_a_node_setting_above_the_host_stops_the_server_naming_it(tmp_path):
    env = {**os.environ, "RUNYARD_RUNTIME_NODE_CPU": "100000", "RUNYARD_RUNTIME_SIMULATED_GPUS": "two"}
    argv = [sys.executable, "-m", "runyard", "server", "--home", str(tmp_path), "--port", "0"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "RUNYARD_RUNTIME_NODE_CPU" in done.stderr and "more than this host offers" in done.stderr
    assert "RUNYARD_RUNTIME_SIMULATED_GPUS" in done.stderr
    assert "Traceback" not in done.stderr
