"""A Model that follows a registered model's alias (models:/NAME@champion), through a real server and the
real MLflow client: it serves the version the alias names, and moving the alias rolls out a new version."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys

import pytest
from tests.models_controller.serving_support import predict, ready, start_server, wait_status
from tests.support import resource, until

pytestmark = pytest.mark.timeout(600)  # logging models with MLflow takes a while on a busy box

# In a fresh interpreter: logging a model sets process-wide MLflow state the other tests must not see.
LOG_MODELS = """
import sys
import mlflow, mlflow.sklearn
import numpy as np
from mlflow import MlflowClient
from sklearn.linear_model import LinearRegression
X = np.array([[0.0], [1.0], [2.0]])
for slope in (2.0, 3.0):  # y = slope * x
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(LinearRegression().fit(X, slope * X[:, 0]), name="model",
                                 pip_requirements=["scikit-learn"])
    mlflow.register_model(f"runs:/{run.info.run_id}/model", sys.argv[1])
MlflowClient().set_registered_model_alias(sys.argv[1], "champion", "1")
"""


def _slope(url: str, token: str) -> float:
    resp = predict(url, token, {"inputs": [[1.0]]})
    assert resp.status_code == 200, resp.text
    return round(resp.json()["predictions"][0], 6)


def test_a_model_follows_its_alias_and_rolls_when_the_alias_moves(tmp_path):
    server = start_server(tmp_path / "home")
    try:
        env = {**server.env(), "MLFLOW_TRACKING_URI": server.url, "MLFLOW_TRACKING_TOKEN": server.token}
        done = subprocess.run(
            [sys.executable, "-c", LOG_MODELS, "lines"], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        api = server.api()
        # The host's Python with the packages of this one (mlflow, scikit-learn): no environment to build.
        packages = {"PYTHONPATH": os.pathsep.join(site.getsitepackages())}
        doc = resource("Model", "line", modelUri="models:/lines@champion", environment="system", env=packages)
        assert api.put("/models/line", json=doc).status_code == 201
        st = wait_status(api, "line", ready, "the model never got ready", timeout=120)
        assert _slope(st["url"], server.token) == 2.0
        first = st["versions"][0]["source"]
        assert first and not first.startswith("models:/lines@")  # resolved: it names one version

        move = "import mlflow; mlflow.MlflowClient().set_registered_model_alias('lines', 'champion', '2')"
        moved = subprocess.run([sys.executable, "-c", move], env=env, capture_output=True, text=True)
        assert moved.returncode == 0, moved.stderr[-3000:]
        st = wait_status(
            api, "line", lambda s: s.get("currentVersion") == 2 and ready(s), "no roll out", timeout=120
        )  # fmt: skip
        assert st["versions"][1]["source"] != first and _slope(st["url"], server.token) == 3.0
        events = json.dumps(api.get("/models/line/events").json()["items"])
        assert events.count("VersionCreated") == 2
    finally:
        server.stop()


def test_a_model_naming_no_registered_model_fails_saying_which(tmp_path):
    server = start_server(tmp_path / "home")
    try:
        api = server.api()
        doc = resource("Model", "ghost", modelUri="models:/nothing@champion", environment="system")
        assert api.put("/models/ghost", json=doc).status_code == 201
        st = wait_status(api, "ghost", lambda s: s.get("phase") == "Failed", "the model did not fail")
        assert st["reason"] == "ModelNotFound" and "'nothing'" in st["message"] and not st.get("versions")
        events = api.get("/models/ghost/events").json()["items"]
        assert [e["type"] for e in events if e["reason"] == "ModelNotFound"] == ["Warning"]
        assert api.delete("/models/ghost").status_code == 200
        until(lambda: api.get("/models/ghost").status_code == 404, "the failed model was not deleted")
    finally:
        server.stop()
