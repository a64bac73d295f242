"""A Model's Deployment as the controller sends it (pure): valid for Kubernetes, one replica's command and
environment as the local controller gives them, and a hash that changes with what a version runs or the
replicas, nothing else."""

from __future__ import annotations

from typing import Any

from kubernetes_validate import validate

from runyard.controller.kube.models import HASH_ANNOTATION, model_deployment
from runyard.controller.models.versions import version_for
from runyard.core.resources import Model, ModelSpec, ObjectMeta
from runyard.settings import ServingSettings

K8S = "1.33"


def deployment(replicas: int = 2, **spec: Any) -> dict[str, Any]:
    m = Model(
        metadata=ObjectMeta(name="iris", project="vision", uid="0f0e0d0c-aaaa-bbbb-cccc-000000000001"),
        spec=ModelSpec(**{"modelUri": "runs:/abc/model", **spec}),
    )
    version, _ = version_for(m.status, m.spec, m.spec.modelUri)
    settings = ServingSettings(auth_cache_seconds=7, drain_seconds=12)
    return model_deployment(
        m, version, replicas, image="runyard:1", server_url="http://srv", settings=settings
    )


def test_the_deployment_is_valid_and_runs_one_replica_as_locally() -> None:
    dep = deployment(env={"A": "1"}, resources={"cpu": "500m", "memory": "1Gi"})
    validate(dep, K8S, strict=True)
    pod = dep["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    assert main["command"][-3:] == ["python", "-m", "runyard.serving.replica"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["RUNYARD_MODEL_SOURCE"] == "runs:/abc/model" and env["RUNYARD_MODEL_VERSION"] == "1"
    assert env["RUNYARD_MODEL_AUTH_CACHE_SECONDS"] == "7" and env["A"] == "1"
    assert env["RUNYARD_PROJECT"] == "vision" and env["RUNYARD_LISTEN_FD"] == "5"
    assert pod["terminationGracePeriodSeconds"] == 12  # drained as locally
    assert main["resources"]["limits"] == {"cpu": "500m", "memory": str(2**30)}
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "Model"


def test_the_hash_follows_the_version_and_the_replicas_only() -> None:
    def digest(dep: dict[str, Any]) -> str:
        return dep["metadata"]["annotations"][HASH_ANNOTATION]

    assert digest(deployment()) == digest(deployment())
    assert digest(deployment(replicas=3)) != digest(deployment())
    assert digest(deployment(env={"B": "2"})) != digest(deployment())
