"""`runyard models` end to end, as users run it (a process per command) against a real server whose
replicas are real processes: deploy from a directory, predict, keys, status with figures, Prometheus,
redeploy and roll back."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.cli.helpers import runyard_cli
from tests.models_api.models_api_support import token
from tests.support import ServerProcess, until

SERVE = """
VERSION = {version}


def predict(body):
    return {{"sum": sum(body["x"]), "version": VERSION}}
"""
SETTINGS = {"RUNYARD_SERVING_PROBE_SECONDS": "0.2", "RUNYARD_RUNTIME_SANDBOX": "off"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("models-cli") / "home"
    server = ServerProcess(home, env={**os.environ, **SETTINGS}).start()
    yield server
    server.stop()


def cli(srv: ServerProcess, *args: str):
    return runyard_cli(*args, env={**srv.env(), "NO_COLOR": "1"})


def ok(srv: ServerProcess, *args: str) -> str:
    done = cli(srv, *args)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


def deploy(srv: ServerProcess, project: Path, version: int) -> dict:
    project.mkdir(exist_ok=True)
    (project / "serve.py").write_text(SERVE.format(version=version))
    args = ["--name", "adder", "--handler", "serve:predict", "--environment", "system"]
    return json.loads(ok(srv, "models", "deploy", *args, "--path", str(project), "-o", "json"))


def predicted(srv: ServerProcess) -> dict:
    return json.loads(ok(srv, "models", "predict", "adder", '{"x": [1, 2, 3]}'))


def served_requests(srv: ServerProcess, version: int, token: str | None = None) -> float:
    text = httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {token or srv.token}"}).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            wanted = {"project": "default", "model": "adder", "version": str(version)}
            if sample.name == "runyard_model_requests_total" and sample.labels == wanted:
                return sample.value
    return 0


def test_deploy_predict_keys_status_redeploy_and_roll_back(srv: ServerProcess, tmp_path: Path):
    model = deploy(srv, tmp_path / "adder", 1)
    url = model["status"]["url"]
    assert model["status"]["phase"] == "Ready" and url.startswith("http://")
    assert predicted(srv) == {"sum": 6, "version": 1}

    key = json.loads(ok(srv, "models", "keys", "create", "adder", "-d", "shop", "-o", "json"))
    assert httpx.post(
        f"{url}/invocations", json={"x": [2]}, headers={"X-Runyard-Key": key["key"]}
    ).json() == {
        "sum": 2,
        "version": 1,
    }
    unused = ok(srv, "models", "keys", "create", "adder").strip()
    listed = json.loads(ok(srv, "models", "keys", "list", "adder", "-o", "json"))["items"]
    assert {k["description"] for k in listed} == {"shop", ""} and unused not in str(listed)
    revoked_id = next(k["id"] for k in listed if unused.startswith(k["prefix"]) and k["description"] == "")
    ok(srv, "models", "keys", "revoke", "adder", revoked_id)
    refused = httpx.post(f"{url}/invocations", json={"x": [2]}, headers={"Authorization": f"Bearer {unused}"})
    assert refused.status_code == 401
    assert json.loads(ok(srv, "models", "predict", "adder", '{"x": [5]}', "--key", key["key"]))["sum"] == 5

    until(lambda: served_requests(srv, 1) >= 3, "Prometheus counts version 1's requests")
    assert served_requests(srv, 1, token(srv, "viewer", "elsewhere")) == 0  # another project's models
    assert served_requests(srv, 1, token(srv, "viewer", "default")) >= 3
    status = json.loads(ok(srv, "models", "status", "adder", "-o", "json"))
    v1 = next(v for v in status["metrics"]["versions"] if v["version"] == 1)
    assert v1["requests"] >= 3 and v1["readyReplicas"] == 1 and v1["p50Ms"] is not None
    table = ok(srv, "models", "status", "adder")
    assert url in table and "v1 *" in table and "P99 MS" in table

    redeployed = deploy(srv, tmp_path / "adder", 2)
    assert redeployed["status"]["currentVersion"] == 2 and redeployed["status"]["url"] == url
    assert predicted(srv)["version"] == 2

    ok(srv, "models", "rollback", "adder", "--to", "1")
    assert predicted(srv)["version"] == 1
    listed_models = json.loads(ok(srv, "models", "list", "-o", "json"))["items"]
    assert [m["status"]["currentVersion"] for m in listed_models] == [1]
    assert "adder" in ok(srv, "models", "list")

    missing = cli(srv, "models", "rollback", "adder", "--to", "9")
    assert missing.returncode == 1 and "no version 9" in missing.stderr and "1, 2" in missing.stderr


def test_deploy_needs_exactly_one_source(srv: ServerProcess, tmp_path: Path):
    both = cli(
        srv, "models", "deploy", "--handler", "a:b", "--model-uri", "runs:/x/m", "--path", str(tmp_path)
    )
    assert both.returncode == 2 and "exactly one" in both.stderr
    missing = cli(srv, "models", "status", "nowhere")
    assert missing.returncode == 1 and "nowhere" in missing.stderr
