"""A replica serving a scikit-learn model logged with the real MLflow client into a local tracking store:
answers as `mlflow models serve` does, through the fast path and through pyfunc."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests.serving_replica.replica_support import AccessServer, Replica, clean_environ, client

pytestmark = pytest.mark.timeout(600)  # logging a model with MLflow takes a minute on a busy box

# Run in a fresh interpreter: logging a model sets process-wide MLflow state the other tests must not see.
LOG_MODEL = """
import json, sys
import mlflow, mlflow.sklearn
import pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
iris = load_iris(as_frame=True)
X = iris.data
model = LogisticRegression(max_iter=500).fit(X, iris.target)
mlflow.set_tracking_uri(sys.argv[1])
with mlflow.start_run():
    info = mlflow.sklearn.log_model(
        model, name="model", input_example=X.iloc[:2], pip_requirements=["scikit-learn"]
    )
rows = X.iloc[[0, 60, 120]]
print(json.dumps({"uri": info.model_uri, "columns": list(X.columns), "rows": rows.values.tolist(),
                  "expected": model.predict(rows).tolist(),
                  "proba": model.predict_proba(rows).tolist()}))
"""


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import json

    store = tmp_path_factory.mktemp("mlflow")
    tracking = f"sqlite:///{store}/mlflow.db"
    out = subprocess.run(
        [sys.executable, "-c", LOG_MODEL, tracking],
        cwd=store,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "tracking": tracking, "dir": store}


def test_sklearn_model_answers_like_mlflow_serve(
    logged: dict, listener: socket.socket, project: Path, access: AccessServer
):
    r = Replica(
        listener,
        project,
        access.url,
        RUNYARD_MODEL_SOURCE=logged["uri"],
        MLFLOW_TRACKING_URI=logged["tracking"],
    )
    try:
        r.wait_ready(timeout=120)
        columns, rows, expected = logged["columns"], logged["rows"], logged["expected"]
        base = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with client(base) as c:
            split = c.post("/invocations", json={"dataframe_split": {"columns": columns, "data": rows}})
            assert split.status_code == 200, split.text
            assert split.json() == {"predictions": expected}
            reordered = {"columns": columns[::-1], "data": [row[::-1] for row in rows]}  # by column name
            assert (
                c.post("/invocations", json={"dataframe_split": reordered}).json()["predictions"] == expected
            )
            assert c.post("/predict", json={"instances": rows}).json() == {"predictions": expected}
            records = [dict(zip(columns, row, strict=True)) for row in rows]  # through pyfunc
            by_records = c.post("/invocations", json={"dataframe_records": records})
            assert by_records.status_code == 200, by_records.text
            assert by_records.json() == {"predictions": expected}
            missing = c.post(
                "/invocations", json={"dataframe_split": {"columns": columns[:2], "data": [[1, 2]]}}
            )
            assert missing.status_code == 422 and missing.json()["error"]["code"] == "invalid_input"
            bad = c.post("/invocations", json={"nothing": []})
            assert bad.status_code == 422 and "['nothing']" in bad.json()["error"]["message"]
            assert c.post("/invocations", json={"instances": rows}).status_code == 200  # still up
        m = r.metrics()
        assert m["requests"] == 7 and m["errors"] == 2
    finally:
        r.stop()


def test_a_model_that_cannot_load_exits_with_the_reason(
    listener: socket.socket, project: Path, access: AccessServer
):
    r = Replica(listener, project, access.url, RUNYARD_MODEL_SOURCE=os.fspath(project / "no-such-model"))
    assert r.proc.wait(timeout=120) != 0
    assert "no-such-model" in r.output()
