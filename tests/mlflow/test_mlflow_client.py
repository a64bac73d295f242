"""Unmodified mlflow client code (MlflowClient and the fluent API, configured only through
MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN) against a real runyard server."""

from __future__ import annotations

import math

import httpx
import mlflow.data
import pandas as pd
import pytest
from mlflow.entities import LoggedModelOutput, Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tests.support import API, wait_phase

import mlflow
from mlflow import MlflowClient

MAX_FLOAT = 1.7976931348623157e308


def error_code(excinfo: pytest.ExceptionInfo) -> str:
    return excinfo.value.error_code


def test_experiments_lifecycle(tracking_server, use_server, unique):
    use_server(tracking_server)
    client = MlflowClient()
    name = unique("exp")
    exp_id = client.create_experiment(name, tags={"team": "cv"})
    exp = client.get_experiment(exp_id)
    assert (exp.name, exp.lifecycle_stage, exp.tags) == (name, "active", {"team": "cv"})
    assert exp.artifact_location == f"mlflow-artifacts:/default/{exp_id}"
    assert client.get_experiment_by_name(name).experiment_id == exp_id
    assert client.get_experiment_by_name(unique("nope")) is None

    with pytest.raises(MlflowException) as dup:
        client.create_experiment(name)
    assert error_code(dup) == "RESOURCE_ALREADY_EXISTS"

    client.rename_experiment(exp_id, name + "-renamed")
    client.set_experiment_tag(exp_id, "stage", "two")
    exp = client.get_experiment(exp_id)
    assert exp.name == name + "-renamed" and exp.tags == {"team": "cv", "stage": "two"}

    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    active = [e.experiment_id for e in client.search_experiments()]
    deleted = [e.experiment_id for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)]
    assert exp_id not in active and exp_id in deleted
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"

    with pytest.raises(MlflowException) as missing:
        client.get_experiment("987654321")
    assert error_code(missing) == "RESOURCE_DOES_NOT_EXIST"


def test_search_experiments_filters_orders_and_pages(tracking_server, use_server, unique):
    use_server(tracking_server)
    client = MlflowClient()
    prefix = unique("search")
    ids = [client.create_experiment(f"{prefix}-{i}", tags={"i": str(i)}) for i in range(3)]
    found = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", order_by=["name DESC"])
    assert [e.experiment_id for e in found] == ids[::-1]
    tagged = client.search_experiments(filter_string=f"name LIKE '{prefix}-%' AND tags.i = '1'")
    assert [e.experiment_id for e in tagged] == [ids[1]]
    first = client.search_experiments(
        max_results=2, filter_string=f"name LIKE '{prefix}-%'", order_by=["name ASC"]
    )
    assert [e.experiment_id for e in first] == ids[:2] and first.token
    rest = client.search_experiments(
        max_results=2, filter_string=f"name LIKE '{prefix}-%'", order_by=["name ASC"], page_token=first.token
    )
    assert [e.experiment_id for e in rest] == ids[2:] and not rest.token


def test_runs_lifecycle(tracking_server, use_server, unique):
    use_server(tracking_server)
    client = MlflowClient()
    exp_id = client.create_experiment(unique("runs"))
    run = client.create_run(exp_id, tags={"owner": "ana"}, run_name="first try")
    run_id = run.info.run_id
    assert len(run_id) == 32 and run.info.status == "RUNNING" and run.info.run_name == "first try"
    assert run.data.tags["owner"] == "ana"
    assert run.info.artifact_uri == f"mlflow-artifacts:/default/{exp_id}/{run_id}/artifacts"

    client.set_terminated(run_id, "FAILED")
    got = client.get_run(run_id)
    assert got.info.status == "FAILED" and got.info.end_time >= got.info.start_time

    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    assert client.search_runs([exp_id]) == []
    assert [r.info.run_id for r in client.search_runs([exp_id], run_view_type=ViewType.DELETED_ONLY)] == [
        run_id
    ]
    client.restore_run(run_id)
    assert [r.info.run_id for r in client.search_runs([exp_id])] == [run_id]

    with pytest.raises(MlflowException) as missing:
        client.get_run("0" * 32)
    assert error_code(missing) == "RESOURCE_DOES_NOT_EXIST"


def test_fluent_run_is_a_tracking_only_runyard_run(tracking_server, use_server, unique):
    use_server(tracking_server)
    name = unique("fluent")
    mlflow.set_experiment(name)
    with mlflow.start_run(run_name=name) as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"layers": 3, "optimizer": "adam"})
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9})
        mlflow.set_tags({"team": "cv"})
    got = MlflowClient().get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"lr": "0.01", "layers": "3", "optimizer": "adam"}
    assert got.data.metrics == {"loss": pytest.approx(1 / 3), "acc": 0.9}
    assert got.data.tags["team"] == "cv" and got.data.tags["mlflow.runName"] == name

    # the same record, seen through runyard's own API
    headers = {"Authorization": f"Bearer {tracking_server.token}"}
    doc = httpx.get(f"{tracking_server.url}{API}/projects/default/runs/{name}", headers=headers).json()
    assert doc["kind"] == "Run" and doc["spec"]["trackingOnly"] is True
    assert doc["metadata"]["uid"].replace("-", "") == run.info.run_id
    assert doc["status"]["phase"] == "Succeeded"


def test_search_runs_with_filters_order_by_and_pages(tracking_server, use_server, unique):
    use_server(tracking_server)
    client = MlflowClient()
    exp_id = client.create_experiment(unique("search-runs"))
    ids = {}
    for i, (lr, loss) in enumerate([("0.1", 0.5), ("0.01", 0.2), ("0.001", 0.9), ("0.01", 0.4)]):
        run = client.create_run(exp_id, run_name=f"r{i}")
        client.log_batch(
            run.info.run_id, metrics=[Metric("loss", loss, 0, 0)], params=[Param("lr", lr)], tags=[]
        )
        ids[i] = run.info.run_id
    client.set_terminated(ids[3])

    by_loss = client.search_runs([exp_id], "metrics.loss < 0.6", order_by=["metrics.loss ASC"])
    assert [r.info.run_id for r in by_loss] == [ids[1], ids[3], ids[0]]
    by_param = client.search_runs([exp_id], "params.lr = '0.01'", order_by=["metrics.loss DESC"])
    assert [r.info.run_id for r in by_param] == [ids[3], ids[1]]
    finished = client.search_runs([exp_id], "attributes.status = 'FINISHED'")
    assert [r.info.run_id for r in finished] == [ids[3]]
    named = client.search_runs([exp_id], "attributes.run_name = 'r2'")
    assert [r.info.run_id for r in named] == [ids[2]]

    page = client.search_runs([exp_id], order_by=["metrics.loss ASC"], max_results=3)
    assert len(page) == 3 and page.token
    rest = client.search_runs([exp_id], order_by=["metrics.loss ASC"], max_results=3, page_token=page.token)
    assert [r.info.run_id for r in rest] == [ids[2]] and not rest.token

    with pytest.raises(MlflowException) as bad:
        client.search_runs([exp_id], "metrics.loss <<< 1")
    assert error_code(bad) == "INVALID_PARAMETER_VALUE"


def test_metric_history_in_order_and_paged(tracking_server, use_server, unique):
    use_server(tracking_server)
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment(unique("history"))).info.run_id
    points = [Metric("loss", 1.0 / (s + 1), 1000 + s, s) for s in reversed(range(30))]
    client.log_batch(run_id, metrics=points)
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value, m.timestamp) for m in history] == [
        (s, 1.0 / (s + 1), 1000 + s) for s in range(30)
    ]
    store = client._tracking_client.store  # the client's own paged call, as its pager makes it
    first = store.get_metric_history(run_id, "loss", max_results=20)
    assert [m.step for m in first] == list(range(20)) and first.token
    second = store.get_metric_history(run_id, "loss", max_results=20, page_token=first.token)
    assert [m.step for m in second] == list(range(20, 30)) and not second.token
    assert client.get_metric_history(run_id, "never-logged") == []


def test_nan_and_infinities_round_trip(tracking_server, use_server, unique):
    use_server(tracking_server)
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment(unique("nan"))).info.run_id
    client.log_metric(run_id, "nan", float("nan"))
    client.log_metric(run_id, "inf", float("inf"))
    client.log_metric(run_id, "neg", float("-inf"))
    client.log_batch(run_id, metrics=[Metric("batch_nan", float("nan"), 1, 0)])
    metrics = client.get_run(run_id).data.metrics
    assert math.isnan(metrics["nan"]) and math.isnan(metrics["batch_nan"])
    assert metrics["inf"] == MAX_FLOAT and metrics["neg"] == -MAX_FLOAT
    [point] = client.get_metric_history(run_id, "nan")
    assert math.isnan(point.value)


def test_validation_errors_raise_with_mlflows_error_code(tracking_server, use_server, unique):
    use_server(tracking_server)
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment(unique("invalid"))).info.run_id
    refused = {
        "over-long key": lambda: client.log_metric(run_id, "k" * 251, 1.0),
        "bad characters": lambda: client.log_param(run_id, "lr*2", "1"),
        "a path out": lambda: client.set_tag(run_id, "a/../b", "x"),
        "long param value": lambda: client.log_param(run_id, "big", "x" * 6001),
        "empty experiment name": lambda: client.create_experiment(""),
    }
    for what, call in refused.items():
        with pytest.raises(MlflowException) as err:
            call()
            pytest.fail(f"{what}: not refused")
        assert error_code(err) == "INVALID_PARAMETER_VALUE", what

    client.log_param(run_id, "lr", "0.1")
    client.log_param(run_id, "lr", "0.1")  # the same value again is fine
    with pytest.raises(MlflowException) as changed:
        client.log_param(run_id, "lr", "0.2")
    assert error_code(changed) == "INVALID_PARAMETER_VALUE" and "lr" in str(changed.value)

    with pytest.raises(MlflowException) as batch:
        client.log_batch(
            run_id,
            metrics=[Metric("good", 1.0, 0, 0), Metric("bad key!", 1.0, 0, 0)],
            params=[Param("fine", "1")],
            tags=[RunTag("t", "v")],
        )
    assert error_code(batch) == "INVALID_PARAMETER_VALUE"
    data = client.get_run(run_id).data
    assert data.metrics == {} and data.params == {"lr": "0.1"} and "t" not in data.tags


def test_no_token_is_unauthenticated_and_another_projects_token_is_denied(
    tracking_server, use_server, unique, project_token
):
    use_server(tracking_server)
    run_id = MlflowClient().create_run("0").info.run_id  # the Default experiment of project default

    use_server(tracking_server, token="")
    with pytest.raises(MlflowException) as anon:
        MlflowClient().get_run(run_id)
    assert error_code(anon) == "UNAUTHENTICATED"

    other = unique("other")
    use_server(tracking_server, token=project_token(tracking_server, other))
    client = MlflowClient()
    for call in (lambda: client.get_run(run_id), lambda: client.log_metric(run_id, "m", 1.0)):
        with pytest.raises(MlflowException) as denied:
            call()
        assert error_code(denied) == "PERMISSION_DENIED"
    # what this token creates lands in its own project, where the admin's scope ("default") does not see it
    exp_name = unique("theirs")
    exp_id = client.create_experiment(exp_name)
    assert client.get_experiment(exp_id).artifact_location == f"mlflow-artifacts:/{other}/{exp_id}"
    assert client.get_experiment_by_name(exp_name).experiment_id == exp_id
    use_server(tracking_server)
    assert MlflowClient().get_experiment_by_name(exp_name) is None


def test_a_viewer_token_reads_but_cannot_write(tracking_server, use_server, project_token):
    use_server(tracking_server)
    run_id = MlflowClient().create_run("0").info.run_id
    use_server(tracking_server, token=project_token(tracking_server, "default", role="viewer"))
    client = MlflowClient()
    assert client.get_run(run_id).info.run_id == run_id
    assert client.search_runs(["0"], max_results=1)
    with pytest.raises(MlflowException) as denied:
        client.log_metric(run_id, "m", 1.0)
    assert error_code(denied) == "PERMISSION_DENIED"


@pytest.mark.postgres
def test_on_postgresql_runs_search_history_and_nan(pg_tracking_server, use_server, unique):
    use_server(pg_tracking_server)
    client = MlflowClient()
    name = unique("pg")
    mlflow.set_experiment(name)
    with mlflow.start_run(run_name=name) as run:
        mlflow.log_param("lr", "0.1")
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metric("nan", float("nan"))
    run_id = run.info.run_id
    exp_id = run.info.experiment_id
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(5))
    assert math.isnan(client.get_run(run_id).data.metrics["nan"])
    assert [r.info.run_id for r in client.search_runs([exp_id], "params.lr = '0.1'")] == [run_id]
    with pytest.raises(MlflowException) as changed:
        client.log_param(run_id, "lr", "0.2")
    assert error_code(changed) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as dup:
        client.create_experiment(name)
    assert error_code(dup) == "RESOURCE_ALREADY_EXISTS"


def test_inputs_nested_runs_and_the_fluent_search(tracking_server, use_server, unique):
    use_server(tracking_server)
    name = unique("inputs")
    mlflow.set_experiment(name)
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]})
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_input(mlflow.data.from_pandas(frame, name="train"), context="training")
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("loss", 0.25)
    got = MlflowClient().get_run(parent.info.run_id)
    [dataset_input] = got.inputs.dataset_inputs
    assert dataset_input.dataset.name == "train"
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
    kid = MlflowClient().get_run(child.info.run_id)
    assert kid.data.tags["mlflow.parentRunId"] == parent.info.run_id

    found = mlflow.search_runs(experiment_names=[name], order_by=["attributes.start_time ASC"])
    assert list(found["run_id"]) == [parent.info.run_id, child.info.run_id]
    assert found.loc[found["run_id"] == child.info.run_id, "metrics.loss"].item() == 0.25
    children = mlflow.search_runs(
        experiment_names=[name], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert list(children["run_id"]) == [child.info.run_id]


def test_metrics_logged_for_a_model_are_the_models_and_its_run_lists_it(tracking_server, use_server, unique):
    use_server(tracking_server)
    mlflow.set_experiment(unique("model-metrics"))
    client = MlflowClient()
    with mlflow.start_run() as run:
        model = mlflow.initialize_logged_model(name="net")
        mlflow.log_metric("acc", 0.75, step=1, model_id=model.model_id)  # log-metric
        mlflow.log_metric("acc", 0.5, step=0, model_id=model.model_id)  # older: not the latest
        on_val = Metric(
            "loss", 0.25, 1000, 2, model_id=model.model_id, dataset_name="val", dataset_digest="d1"
        )
        client.log_batch(run.info.run_id, metrics=[on_val, Metric("plain", 1.0, 1000, 0)])  # log-batch
        client.log_outputs(run.info.run_id, [LoggedModelOutput(model.model_id, step=3)])
    got = {(m.key, m.dataset_name): m.value for m in mlflow.get_logged_model(model.model_id).metrics}
    assert got == {("acc", None): 0.75, ("loss", "val"): 0.25}
    outputs = client.get_run(run.info.run_id).outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(model.model_id, 3)]
    assert client.get_run(run.info.run_id).data.metrics == {"acc": 0.75, "loss": 0.25, "plain": 1.0}


def test_sklearn_autolog_metrics_reach_its_logged_model(tracking_server, use_server, unique):
    use_server(tracking_server)
    mlflow.set_experiment(unique("autolog"))
    mlflow.sklearn.autolog()
    try:
        X, y = load_iris(return_X_y=True)
        with mlflow.start_run() as run:
            LogisticRegression(max_iter=300).fit(X, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    model = mlflow.last_logged_model()
    assert model is not None and model.source_run_id == run.info.run_id
    metrics = {m.key for m in mlflow.get_logged_model(model.model_id).metrics}
    assert "training_accuracy_score" in metrics
    outputs = MlflowClient().get_run(run.info.run_id).outputs.model_outputs
    assert [o.model_id for o in outputs] == [model.model_id]


def test_log_model_links_the_runs_metrics_without_writing_them_twice(tracking_server, use_server, unique):
    """log_model logs the run's metrics of its step again, with the model's id; as in MLflow (one row per
    identical point) the run's history keeps each point once, and the model gets the metric."""
    use_server(tracking_server)
    mlflow.set_experiment(unique("relog"))
    X, y = load_iris(return_X_y=True)
    with mlflow.start_run() as run:
        mlflow.log_metric("acc", 0.9, step=0)
        info = mlflow.sklearn.log_model(LogisticRegression(max_iter=300).fit(X, y), name="m")
    history = MlflowClient().get_metric_history(run.info.run_id, "acc")
    assert [(m.value, m.step) for m in history] == [(0.9, 0)]
    assert {m.key: m.value for m in mlflow.get_logged_model(info.model_id).metrics} == {"acc": 0.9}


def test_delete_experiment_tag(tracking_server, use_server, unique):
    use_server(tracking_server)
    client = MlflowClient()
    exp_id = client.create_experiment(unique("tags"), tags={"team": "cv", "stage": "one"})
    client.delete_experiment_tag(exp_id, "stage")
    assert client.get_experiment(exp_id).tags == {"team": "cv"}
    with pytest.raises(MlflowException) as missing:
        client.delete_experiment_tag(exp_id, "stage")
    assert error_code(missing) == "RESOURCE_DOES_NOT_EXIST"
    client.delete_experiment(exp_id)
    with pytest.raises(MlflowException) as deleted:
        client.delete_experiment_tag(exp_id, "team")
    assert error_code(deleted) == "INVALID_PARAMETER_VALUE"


def test_a_run_stopped_by_runyard_stays_cancelled_when_its_client_ends_it(
    tracking_server, use_server, unique
):
    use_server(tracking_server)
    client = MlflowClient()
    name = unique("stopped")
    run = client.create_run("0", run_name=name)
    api = tracking_server.api()
    assert api.post(f"/runs/{name}/stop").status_code == 200
    wait_phase(api, name, {"Cancelled"}, timeout=10)
    ended = client.get_run(run.info.run_id).info.end_time
    client.set_terminated(run.info.run_id, "FINISHED")  # the client's end_run, after the stop
    client.update_run(run.info.run_id, status="RUNNING", name=name + "-renamed")  # or a resume
    got = client.get_run(run.info.run_id).info
    assert (got.status, got.end_time, got.run_name) == ("KILLED", ended, name + "-renamed")
    assert api.get(f"/runs/{name}").json()["status"]["phase"] == "Cancelled"
