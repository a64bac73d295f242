"""MLflow 3 logged models through the real mlflow client against a real server: scikit-learn autologging,
a pyfunc python_model logged and loaded back (runs:/ and models:/), and the logged-model API itself."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator

import httpx
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.exceptions import MlflowException
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tests.support import ServerProcess, experiment, read_logs, wait_phase

import mlflow
from runyard.core.errors import Invalid
from runyard.services.logged_models import LoggedModels
from runyard.services.tracking import Tracking
from runyard.store import Store


@pytest.fixture
def srv(tmp_path, use_server) -> Iterator[ServerProcess]:
    """A real server of its own, and the mlflow client pointed at it as users do (environment only)."""
    server = ServerProcess(tmp_path / "home").start()
    use_server(server)
    yield server
    mlflow.sklearn.autolog(disable=True)
    server.stop()


class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input * 2


def test_sklearn_autolog_logs_params_metrics_and_a_model_that_loads(srv):
    X, y = load_iris(return_X_y=True)
    mlflow.sklearn.autolog()
    with mlflow.start_run() as run:
        fitted = LogisticRegression(max_iter=300, C=0.5).fit(X, y)
    got = mlflow.get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params["C"] == "0.5" and got.data.params["max_iter"] == "300"
    assert got.data.metrics["training_accuracy_score"] == pytest.approx(fitted.score(X, y))
    [model] = mlflow.search_logged_models(output_format="list")
    assert model.source_run_id == run.info.run_id and model.status == LoggedModelStatus.READY
    assert model.params["C"] == "0.5"
    exp = run.info.experiment_id
    assert model.artifact_location == f"mlflow-artifacts:/default/{exp}/models/{model.model_id}/artifacts"
    stored = srv.home / "artifacts" / "default" / exp / "models" / model.model_id / "artifacts"
    assert (stored / "MLmodel").exists() and (stored / "model.pkl").exists()
    for uri in (f"models:/{model.model_id}", f"runs:/{run.info.run_id}/model"):
        loaded = mlflow.sklearn.load_model(uri)
        assert np.array_equal(loaded.predict(X), fitted.predict(X))


def test_a_pyfunc_python_model_is_logged_and_loaded_back(srv):
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(name="model", python_model=Doubler(), pip_requirements=["mlflow"])
    assert info.model_uri == f"models:/{info.model_id}"
    frame = pd.DataFrame({"a": [1, 2, 3]})
    for uri in (info.model_uri, f"runs:/{run.info.run_id}/model"):
        assert mlflow.pyfunc.load_model(uri).predict(frame)["a"].tolist() == [2, 4, 6]
    model = mlflow.get_logged_model(info.model_id)
    assert model.name == "model" and model.status == LoggedModelStatus.READY
    files = {f.path for f in mlflow.MlflowClient().list_logged_model_artifacts(info.model_id)}
    assert {"MLmodel", "python_model.pkl"} <= files


def test_the_logged_model_api_through_the_client(server, use_server):
    """On SQLite and on PostgreSQL."""
    use_server(server)
    client = mlflow.MlflowClient()
    exp = client.create_experiment("models-api")
    with mlflow.start_run(experiment_id=exp) as run:
        pass
    params = {f"p{i}": str(i) for i in range(150)}  # past the 100 a create carries: the rest are sent after
    first = mlflow.initialize_logged_model(
        name="first", source_run_id=run.info.run_id, params=params, tags={"team": "cv"}, experiment_id=exp
    )
    second = mlflow.initialize_logged_model(name="second", model_type="agent", experiment_id=exp)
    assert first.status == LoggedModelStatus.PENDING and first.params == params
    client.set_logged_model_tags(first.model_id, {"stage": "candidate", "team": "vision"})
    for step in (3, 4):  # recording an output again only moves its step
        client.log_outputs(run.info.run_id, [LoggedModelOutput(first.model_id, step=step)])
    client.finalize_logged_model(first.model_id, LoggedModelStatus.READY)
    got = client.get_logged_model(first.model_id)
    assert got.status == LoggedModelStatus.READY
    assert {k: got.tags[k] for k in ("stage", "team")} == {"stage": "candidate", "team": "vision"}
    client.delete_logged_model_tag(first.model_id, "stage")
    assert "stage" not in client.get_logged_model(first.model_id).tags

    def names(**kw) -> list[str]:
        return [m.name for m in client.search_logged_models(experiment_ids=[exp], **kw)]

    assert names() == ["second", "first"]  # newest first
    assert names(filter_string="name = 'first'") == ["first"]
    assert names(filter_string="tags.team = 'vision' AND params.p7 = '7'") == ["first"]
    assert names(filter_string="name LIKE 'sec%'") == ["second"]
    assert names(filter_string="status = 'READY' AND creation_time > 0") == ["first"]
    assert names(filter_string="tags.`mlflow.source.type` != 'nothing'") == ["second", "first"]
    assert names(filter_string=f"source_run_id = '{run.info.run_id}'") == ["first"]
    assert names(order_by=[{"field_name": "name", "ascending": True}]) == ["first", "second"]
    page = client.search_logged_models(experiment_ids=[exp], max_results=1)
    assert [m.name for m in page] == ["second"] and page.token
    rest = client.search_logged_models(experiment_ids=[exp], max_results=1, page_token=page.token)
    assert [m.name for m in rest] == ["first"] and not rest.token
    with pytest.raises(MlflowException, match="filter") as bad:
        names(filter_string="name = ")
    assert bad.value.error_code == "INVALID_PARAMETER_VALUE"
    client.delete_logged_model(second.model_id)
    with pytest.raises(MlflowException) as gone:
        client.get_logged_model(second.model_id)
    assert gone.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert names() == ["first"]


def test_bad_logged_model_requests_get_400_naming_the_field(srv):
    headers = {"Authorization": f"Bearer {srv.token}"}
    url = srv.url + "/api/2.0/mlflow/logged-models"
    for body, field in (
        ({}, "experiment_id"),
        ({"experiment_id": "0", "name": "a/b"}, "name"),
        ({"experiment_id": "0", "name": 5}, "name"),
        ({"experiment_id": "0", "params": {"a": "b"}}, "params"),
        ({"experiment_id": "0", "tags": ["x"]}, "tags[0]"),
        ({"experiment_id": "0", "tags": [{"key": "k" * 251, "value": "v"}]}, "tags[0].key"),
        ({"experiment_id": "0", "source_run_id": "0" * 32}, None),
        ({"experiment_id": "999999"}, None),
    ):
        r = httpx.post(url, json=body, headers=headers)
        assert r.status_code in (400, 404), (body, r.text)
        assert r.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"), r.text
        assert field is None or f"{field}:" in r.json()["message"], (body, r.text)
    model = httpx.post(url, json={"experiment_id": "0"}, headers=headers).json()["model"]["info"]
    r = httpx.patch(f"{url}/{model['model_id']}", json={"status": "DONE"}, headers=headers)
    assert r.status_code == 400 and "status:" in r.json()["message"]
    r = httpx.post(url + "/search", json={"experiment_ids": ["0"], "max_results": 5000}, headers=headers)
    assert r.status_code == 400 and "max_results:" in r.json()["message"]
    for body, field in (
        ({"page_token": "junk"}, "page_token"),
        ({"page_token": 5}, "page_token"),
        ({"filter": 5}, "filter"),
        ({"max_results": "many"}, "max_results"),
        ({"order_by": ["name"]}, "order_by"),
        ({"order_by": [{"field_name": "params.x"}]}, "order_by"),
        ({"datasets": [{"dataset_digest": "d"}]}, "datasets"),
    ):
        r = httpx.post(url + "/search", json={"experiment_ids": ["0"], **body}, headers=headers)
        assert r.status_code == 400 and f"{field}:" in r.json()["message"], (body, r.text)
    with mlflow.start_run() as run:
        pass
    outputs = srv.url + "/api/2.0/mlflow/runs/outputs"
    for models in ({"model_id": model["model_id"]}, [{"model_id": model["model_id"], "step": "x"}], ["m"]):
        r = httpx.post(outputs, json={"run_id": run.info.run_id, "models": models}, headers=headers)
        assert r.status_code == 400 and "models" in r.json()["message"], (models, r.text)


def test_log_model_records_the_model_in_the_runs_history_tag(srv):
    """MLflow 2's record of a logged model (runs/log-model), still sent when logging by artifact_path."""
    with mlflow.start_run() as run:
        pass
    headers = {"Authorization": f"Bearer {srv.token}"}
    url = srv.url + "/api/2.0/mlflow/runs/log-model"
    model = {"artifact_path": "model", "flavors": {"python_function": {}}, "utc_time_created": "now"}
    for i in range(2):
        body = {
            "run_id": run.info.run_id,
            "model_json": json.dumps({**model, "run_id": run.info.run_id, "i": i}),
        }
        assert httpx.post(url, json=body, headers=headers).status_code == 200
    history = json.loads(mlflow.get_run(run.info.run_id).data.tags["mlflow.log-model.history"])
    assert [h["i"] for h in history] == [0, 1]
    r = httpx.post(url, json={"run_id": run.info.run_id, "model_json": "{}"}, headers=headers)
    assert r.status_code == 400 and "artifact_path" in r.json()["message"]


def test_another_projects_token_cannot_read_or_change_its_models(srv, use_server, project_token):
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=Doubler(), pip_requirements=["mlflow"])
    exp = mlflow.get_logged_model(info.model_id).experiment_id
    use_server(srv, other := project_token(srv, "other"))
    client = mlflow.MlflowClient()
    for attempt in (
        lambda: client.get_logged_model(info.model_id),
        lambda: client.search_logged_models(experiment_ids=[exp]),
        lambda: client.finalize_logged_model(info.model_id, LoggedModelStatus.FAILED),
        lambda: client.delete_logged_model(info.model_id),
        lambda: mlflow.pyfunc.load_model(info.model_uri),
    ):
        with pytest.raises(MlflowException) as denied:
            attempt()
        assert denied.value.error_code == "PERMISSION_DENIED"
    headers = {"Authorization": f"Bearer {other}"}
    url = f"{srv.url}/api/2.0/mlflow/logged-models/{info.model_id}"
    for method, path, body in (
        ("PATCH", "/tags", {"tags": [{"key": "x", "value": "y"}]}),
        ("DELETE", "/tags/mlflow.source.type", None),
        ("POST", "/params", {"params": [{"key": "x", "value": "y"}]}),
        ("GET", "/artifacts/directories", None),
    ):
        r = httpx.request(method, url + path, json=body, headers=headers)
        assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED", (path, r.text)
    use_server(srv)
    assert mlflow.get_logged_model(info.model_id).status == LoggedModelStatus.READY
    use_server(srv, other)
    # its own project's Default experiment ("0" for it) is where its models go
    with mlflow.start_run(experiment_id="0") as run:
        mine = mlflow.pyfunc.log_model(name="mine", python_model=Doubler(), pip_requirements=["mlflow"])
    assert mlflow.get_logged_model(mine.model_id).artifact_location.startswith("mlflow-artifacts:/other/")
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/other/")
    assert os.path.exists(srv.home / "artifacts" / "other")


def test_metrics_logged_with_a_model_id_are_the_models_latest_values(store_url):
    """The service part the MLflow metric routes call (on SQLite and PostgreSQL): each model keeps the
    latest point of each metric per dataset, which get, filters and order_by read."""
    store = Store(store_url)
    tracking = Tracking(store)
    models = LoggedModels(store, tracking)
    run = tracking.run(tracking.create_run("default", "0", run_name="trainer")["info"]["run_id"])
    a, b = (models.create("default", "0", name=n, source_run_id=run.run_id)["info"] for n in ("a", "b"))

    def point(model: dict, key: str, value: float, step: int, **more) -> dict:
        return {
            "model_id": model["model_id"],
            "key": key,
            "value": value,
            "step": step,
            "timestamp": 5,
            **more,
        }

    models.link_metrics(run, [point(a, "acc", 0.5, 1), point(a, "acc", 0.7, 2), point(b, "acc", 0.6, 1)])
    older, plain = point(a, "acc", 0.1, 0), {"key": "loss", "value": 1.0, "timestamp": 1}
    models.link_metrics(run, [older, plain])  # an older point, and one for the run alone
    models.link_metrics(run, [point(b, "acc", 0.9, 1, dataset_name="test", dataset_digest="d1")])
    models.link_metrics(run, [point(b, "loss", float("nan"), 1)])
    got = models.render(models.row(a["model_id"]))["data"]["metrics"]
    assert [(m["key"], m["value"], m["step"], m["run_id"]) for m in got] == [("acc", 0.7, 2, run.run_id)]
    exp = [int(a["experiment_id"])]

    def names(**kw) -> list[str]:
        return [m["info"]["name"] for m in models.search(exp, **kw)[0]]

    assert names(filter="metrics.acc > 0.65") == ["a"]
    assert names(filter="metrics.acc > 0.65", datasets=[{"dataset_name": "test"}]) == ["b"]
    assert names(order_by=[{"field_name": "metrics.acc", "ascending": False}]) == ["a", "b"]
    on_test = {"field_name": "metrics.acc", "ascending": False, "dataset_name": "test"}
    assert names(order_by=[on_test]) == ["b", "a"]  # a has no value on it: last
    b_metrics = models.render(models.row(b["model_id"]))["data"]["metrics"]
    assert [(m["key"], m.get("dataset_name"), m["value"]) for m in b_metrics] == [
        ("acc", None, 0.6),
        ("acc", "test", 0.9),
        ("loss", None, "NaN"),
    ]
    store.ensure_project("other")
    elsewhere = tracking.run(tracking.create_run("other", "0")["info"]["run_id"])
    with pytest.raises(Invalid, match="model_id"):
        models.link_metrics(elsewhere, [point(a, "acc", 1.0, 9)])
    store.close()


TRAIN = """
import mlflow, pathlib
pathlib.Path("notes.txt").write_text("from inside")
class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input
with mlflow.start_run() as run:
    mlflow.log_artifact("notes.txt")
    info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
print("MODEL", info.model_id)
"""


def test_a_script_runyard_runs_logs_artifacts_and_a_model_into_its_own_run(srv):
    """No set-up in the script: the run's environment points mlflow at the server, with the run's token."""
    api = srv.api()
    assert (
        api.put("/experiments/train", json=experiment("train", [sys.executable, "-c", TRAIN])).status_code
        == 201
    )
    deadline = time.monotonic() + 30
    while not (items := api.get("/runs").json()["items"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    name = items[0]["metadata"]["name"]
    doc = wait_phase(api, name, {"Succeeded", "Failed"}, timeout=120)
    lines, _ = read_logs(api, name, follow=False)
    assert doc["status"]["phase"] == "Succeeded", [line["text"] for line in lines]
    model_id = next(line["text"].split()[1] for line in lines if line["text"].startswith("MODEL"))
    listed = api.get(f"/runs/{name}/artifacts").json()
    run_id = doc["metadata"]["uid"].replace("-", "")
    assert listed["root"].endswith(f"/{run_id}/artifacts")
    assert listed["files"] == [{"path": "notes.txt", "is_dir": False, "file_size": 11}]
    model = mlflow.get_logged_model(model_id)
    assert model.source_run_id == run_id and model.status == LoggedModelStatus.READY
    frame = pd.DataFrame({"x": [1.5]})
    assert mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(frame)["x"].tolist() == [1.5]
