"""The model registry through the real mlflow client against a real server: register a logged model,
aliases and loading by alias and by version, and the registry's metadata calls."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

import mlflow
from mlflow import MlflowClient


class Scaler(mlflow.pyfunc.PythonModel):
    def __init__(self, factor: int):
        self.factor = factor

    def predict(self, context, model_input, params=None):
        return model_input * self.factor


FRAME = pd.DataFrame({"a": [1, 2]})


def _predict(uri: str) -> list:
    return mlflow.pyfunc.load_model(uri).predict(FRAME)["a"].tolist()


def _error(call) -> str:
    with pytest.raises(MlflowException) as caught:
        call()
    return caught.value.error_code


def test_registered_versions_load_by_alias_and_by_number(registry_server, use_server, unique):
    use_server(registry_server)
    name = unique("scaler")
    runs = []
    for factor in (2, 3):
        with mlflow.start_run() as run:
            mlflow.pyfunc.log_model(name="model", python_model=Scaler(factor), pip_requirements=["mlflow"])
        runs.append(run.info.run_id)
    v1 = mlflow.register_model(f"runs:/{runs[0]}/model", name)
    v2 = mlflow.register_model(f"runs:/{runs[1]}/model", name)
    assert (v1.version, v2.version) == ("1", "2")
    assert v1.run_id == runs[0] and v1.status == "READY" and v1.source.startswith("models:/m-")

    client = MlflowClient()
    client.set_registered_model_alias(name, "champion", "1")
    got = client.get_model_version_by_alias(name, "champion")
    assert (got.version, got.aliases) == ("1", ["champion"])
    assert _predict(f"models:/{name}@champion") == [2, 4]
    assert _predict(f"models:/{name}/2") == [3, 6]
    assert _predict(f"models:/{name}/latest") == [3, 6]

    client.set_registered_model_alias(name, "champion", "2")
    assert _predict(f"models:/{name}@champion") == [3, 6]
    assert client.get_registered_model(name).aliases == {"champion": "2"}
    download = client.get_model_version_download_uri(name, "1")
    assert download == mlflow.get_logged_model(v1.source.removeprefix("models:/")).artifact_location

    client.delete_registered_model_alias(name, "champion")
    assert _error(lambda: client.get_model_version_by_alias(name, "champion")) == "RESOURCE_DOES_NOT_EXIST"
    assert _error(lambda: client.set_registered_model_alias(name, "latest", "1")) == "INVALID_PARAMETER_VALUE"
    assert _error(lambda: client.set_registered_model_alias(name, "best", "9")) == "RESOURCE_DOES_NOT_EXIST"


def test_tags_descriptions_stages_search_rename_and_delete(both_servers, use_server, unique):
    use_server(both_servers)
    client = MlflowClient()
    name = unique("meta")
    client.create_registered_model(name, tags={"team": "cv"}, description="first")
    assert _error(lambda: client.create_registered_model(name)) == "RESOURCE_ALREADY_EXISTS"
    with mlflow.start_run() as run:
        mlflow.log_text("flavors: {}\n", "model/MLmodel")
    rid = run.info.run_id
    v1 = client.create_model_version(name, f"runs:/{rid}/model", rid, tags={"stage": "dev"}, description="d1")
    client.create_model_version(name, f"runs:/{rid}/model", rid)
    assert (v1.version, v1.tags, v1.description) == ("1", {"stage": "dev"}, "d1")
    assert (
        client.get_model_version_download_uri(name, "2") == mlflow.get_run(rid).info.artifact_uri + "/model"
    )

    client.update_registered_model(name, description="second")
    client.set_registered_model_tag(name, "owner", "ana")
    client.delete_registered_model_tag(name, "team")
    model = client.get_registered_model(name)
    assert (model.description, model.tags) == ("second", {"owner": "ana"})
    client.update_model_version(name, "1", description="better")
    client.set_model_version_tag(name, "1", "k", "v")
    client.delete_model_version_tag(name, "1", "stage")
    got = client.get_model_version(name, "1")
    assert (got.description, got.tags) == ("better", {"k": "v"})

    client.transition_model_version_stage(name, "1", "Production")
    client.transition_model_version_stage(name, "2", "production", archive_existing_versions=True)
    assert client.get_model_version(name, "1").current_stage == "Archived"
    assert [v.version for v in client.get_latest_versions(name, stages=["Production"])] == ["2"]
    assert {v.current_stage for v in client.get_registered_model(name).latest_versions} == {
        "Archived",
        "Production",
    }

    assert [m.name for m in client.search_registered_models(f"name = '{name}'")] == [name]
    assert [
        m.name for m in client.search_registered_models(f"name LIKE '{name[:8]}%' AND tags.owner = 'ana'")
    ] == [name]
    assert client.search_registered_models(f"name = '{name}' AND tags.owner = 'bob'") == []
    versions = client.search_model_versions(f"name = '{name}'")
    assert [v.version for v in versions] == ["2", "1"]  # newest first, as MLflow orders them
    assert [
        v.version for v in client.search_model_versions(f"run_id IN ('{rid}') AND version_number < 2")
    ] == ["1"]
    first = client.search_model_versions(f"name = '{name}'", max_results=1, order_by=["version_number ASC"])
    assert [v.version for v in first] == ["1"] and first.token
    rest = client.search_model_versions(
        f"name = '{name}'", max_results=1, order_by=["version_number ASC"], page_token=first.token
    )
    assert [v.version for v in rest] == ["2"] and not rest.token
    assert _error(lambda: client.search_model_versions("name ~ 'x'")) == "INVALID_PARAMETER_VALUE"

    new = unique("renamed")
    client.set_registered_model_alias(name, "prod", "2")
    client.rename_registered_model(name, new)
    assert _error(lambda: client.get_registered_model(name)) == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_model_version(new, "2").aliases == ["prod"]
    client.delete_model_version(new, "2")
    assert _error(lambda: client.get_model_version(new, "2")) == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_registered_model(new).aliases == {}  # the alias went with its version
    assert client.create_model_version(new, f"runs:/{rid}/model", rid).version == "3"  # never reused
    client.delete_registered_model(new)
    assert _error(lambda: client.get_registered_model(new)) == "RESOURCE_DOES_NOT_EXIST"
    assert client.search_model_versions(f"name = '{new}'") == []
