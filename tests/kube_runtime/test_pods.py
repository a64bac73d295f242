"""The kubernetes runtime's manifests: every one valid against the upstream Kubernetes schemas
(kubernetes_validate, strict: an unknown field fails), and the fields that make a run behave as the local
runtime's do (resources, owner, deadline, grace, init steps, environment on PATH)."""

from __future__ import annotations

import pytest
from kubernetes_validate import ValidationError, validate

from runyard.runtime.base import LaunchSpec
from runyard.runtime.kubernetes import pods

K8S = "1.33"
SNAP = "sha256:" + "ab" * 32
OWNER = {"kind": "Run", "name": "train-7", "uid": "0f4c7d7e-1b0d-4d0e-9a59-2f7a5d1e2c3b"}
LOCK = "numpy==2.1.0 --hash=sha256:" + "cd" * 32 + "\n"


def spec(**kw) -> LaunchSpec:
    base = dict(
        run_uid=OWNER["uid"],
        project="vision",
        name="train-7",
        attempt=2,
        argv=["/bin/sh", "-c", "python train.py"],
        env={"RUNYARD_TOKEN": "secret-token", "PYTHONPATH": "/extra", "CUDA_VISIBLE_DEVICES": "GPU-1"},
        snapshot=SNAP,
        cpu=1.5,
        memory=2 << 30,
        gpu=1,
        stop_grace=12.5,
    )
    base.update(kw)
    return LaunchSpec(**base)


def valid(obj: dict) -> dict:
    validate(obj, K8S, strict=True)
    return obj


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_run_pod() -> None:
    pod = valid(
        pods.pod_manifest(
            spec(),
            image="runyard:1",
            server_url="http://runyard.runyard-system:8000",
            namespace="vision",
            owner=OWNER,
            run_token_secret=None,
            env_lock=LOCK,
            timeout=3600.2,
        )
    )
    meta, body = pod["metadata"], pod["spec"]
    assert meta["name"] == "train-7-2" and meta["namespace"] == "vision"
    assert meta["labels"] == {
        "runyard.dev/project": "vision",
        "runyard.dev/kind": "Run",
        "runyard.dev/run": "train-7",
        "runyard.dev/run-uid": OWNER["uid"],
        "runyard.dev/attempt": "2",
        "app.kubernetes.io/managed-by": "runyard",
    }
    assert meta["ownerReferences"] == [
        {**OWNER, "apiVersion": "runyard.dev/v1", "controller": True, "blockOwnerDeletion": True}
    ]
    assert body["restartPolicy"] == "Never"
    assert body["automountServiceAccountToken"] is False  # no Kubernetes credential in a run
    assert body["activeDeadlineSeconds"] == 3601
    assert body["terminationGracePeriodSeconds"] == 13
    main = body["containers"][0]
    assert main["name"] == "main" and main["image"] == "runyard:1"
    assert main["command"] == ["/bin/sh", "-c", "python train.py"]
    assert main["workingDir"] == "/workspace"
    amounts = {"cpu": "1500m", "memory": str(2 << 30), "nvidia.com/gpu": "1"}
    assert main["resources"] == {"requests": amounts, "limits": amounts}
    env = env_of(main)
    venv = pods.env_dir(LOCK)
    assert env["PATH"].startswith(f"{venv}/bin:") and env["VIRTUAL_ENV"] == venv
    assert env["PYTHONPATH"] == "/runyard/sdk:/extra"
    assert "CUDA_VISIBLE_DEVICES" not in env  # the host's GPU, meaningless in a pod
    assert env["RUNYARD_TOKEN"] == "secret-token"
    snapshot, environment = body["initContainers"]
    assert snapshot["image"] == environment["image"] == "runyard:1"
    assert snapshot["command"][:4] == ["python", "-m", "runyard.runtime.kubernetes.init", "snapshot"]
    assert SNAP in snapshot["command"] and "--keep" not in snapshot["command"]
    assert env_of(snapshot) == {"RUNYARD_TOKEN": "secret-token"}
    assert env_of(environment) == {"RUNYARD_ENV_LOCK": LOCK}
    assert venv in environment["command"]
    volumes = {v["name"]: v for v in body["volumes"]}
    assert volumes["workspace"] == {"name": "workspace", "emptyDir": {}}
    assert volumes["envs"]["hostPath"]["type"] == "DirectoryOrCreate"
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert mounts["envs"]["mountPath"] == pods.ENVS and mounts["envs"]["readOnly"]


def test_environment_dir_is_keyed_by_the_lock() -> None:
    assert pods.env_dir(LOCK) == pods.env_dir(LOCK)
    assert pods.env_dir(LOCK) != pods.env_dir(LOCK + "six==1.16.0\n")


def test_minimal_pod_and_token_secret() -> None:
    """No snapshot, no environment, no resources: one container; the token from a Secret, never inline."""
    s = spec(
        snapshot=None, cpu=None, memory=None, gpu=0, env={"RUNYARD_TOKEN": "t", "CUDA_VISIBLE_DEVICES": ""}
    )
    pod = valid(
        pods.pod_manifest(
            s,
            image="i",
            server_url="http://s",
            namespace="p",
            owner=None,
            run_token_secret="tok",
            env_lock=None,
        )
    )
    body = pod["spec"]
    assert body["initContainers"] == [] and "ownerReferences" not in pod["metadata"]
    assert "activeDeadlineSeconds" not in body
    main = body["containers"][0]
    assert main["resources"] == {}
    env = env_of(main)
    assert env["RUNYARD_TOKEN"] == {"secretKeyRef": {"name": "tok", "key": "token"}}
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # no GPU: still hidden
    assert "PATH" not in env and "VIRTUAL_ENV" not in env


def test_snapshot_init_reads_the_token_secret() -> None:
    pod = valid(
        pods.pod_manifest(
            spec(),
            image="i",
            server_url="http://s",
            namespace="p",
            owner=OWNER,
            run_token_secret="tok",
            env_lock=None,
        )
    )
    (snapshot,) = pod["spec"]["initContainers"]
    assert env_of(snapshot) == {"RUNYARD_TOKEN": {"secretKeyRef": {"name": "tok", "key": "token"}}}
    assert "secret-token" not in str(pod)


def test_service_account() -> None:
    pod = valid(
        pods.pod_manifest(
            spec(), image="i", server_url="http://s", namespace="p", service_account="runyard-spark"
        )
    )
    assert pod["spec"]["serviceAccountName"] == "runyard-spark"
    assert pod["spec"]["automountServiceAccountToken"] is True


def test_env_cache_claim() -> None:
    pod = valid(
        pods.pod_manifest(
            spec(),
            image="i",
            server_url="http://s",
            namespace="p",
            env_lock=LOCK,
            env_cache=pods.EnvCache(claim="envs"),
        )
    )
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["envs"] == {"name": "envs", "persistentVolumeClaim": {"claimName": "envs"}}


@pytest.mark.parametrize("name", ["a" * 63, "b" * 61 + "-x", "c" * 40])
def test_pod_names_are_dns_labels(name: str) -> None:
    got = pods.pod_name(name, 12)
    assert len(got) <= 63 and got.endswith("-12")
    assert valid(
        pods.pod_manifest(spec(name=name, attempt=12), image="i", server_url="http://s", namespace="p")
    )
    if len(name) + 3 > 63:  # cut short: the hash keeps two long names apart
        assert got != pods.pod_name(name[:-1] + "z", 12)


def test_model_deployment_and_service() -> None:
    s = spec(argv=["python", "-m", "runyard.serving.replica"], env={"RUNYARD_LISTEN_FD": "6"}, snapshot=None)
    owner = {"kind": "Model", "name": "iris", "uid": "u-1"}
    dep = valid(
        pods.deployment_manifest(
            s,
            model="iris",
            version=3,
            replicas=2,
            image="i",
            server_url="http://s",
            namespace="vision",
            owner=owner,
            env_lock=LOCK,
        )
    )
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    template = dep["spec"]["template"]
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    assert template["spec"]["restartPolicy"] == "Always"
    main = template["spec"]["containers"][0]
    assert main["command"][-3:] == ["python", "-m", "runyard.serving.replica"]
    assert main["command"][3:8] == ["listen", "--port", "8080", "--fd", "6"]
    assert main["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert main[probe]["httpGet"] == {"path": "/health", "port": "http"}
    svc = valid(pods.model_service_manifest("iris", project="vision", namespace="vision", owner=owner))
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["selector"] == selector
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_session_pod_and_service() -> None:
    env = {"RUNYARD_SESSION_LISTEN_FD": "5", "RUNYARD_SESSION_BASE_URL": "/projects/vision/sessions/nb/"}
    s = spec(argv=["python", "-m", "runyard.sessions.jupyter"], env=env, cpu=None, memory=None, gpu=0)
    owner = {"kind": "Session", "name": "nb", "uid": "u-2"}
    pod = valid(
        pods.session_pod_manifest(
            s,
            session="nb",
            image="i",
            server_url="http://s",
            namespace="vision",
            owner=owner,
            workspace_claim="nb-work",
        )
    )
    assert pod["metadata"]["labels"]["runyard.dev/session"] == "nb"
    body = pod["spec"]
    main = body["containers"][0]
    assert main["command"][3:8] == ["listen", "--port", "8888", "--fd", "5"]
    assert main["readinessProbe"]["httpGet"]["path"] == "/projects/vision/sessions/nb/api"
    assert {"name": "workspace", "persistentVolumeClaim": {"claimName": "nb-work"}} in body["volumes"]
    assert "--keep" in body["initContainers"][0]["command"]  # a kept workspace is filled once
    svc = valid(pods.session_service_manifest("nb", project="vision", namespace="vision", owner=owner))
    assert svc["spec"]["selector"] == {"runyard.dev/session": "nb", "runyard.dev/project": "vision"}
    assert svc["spec"]["ports"][0]["port"] == 8888


def test_the_validation_can_fail() -> None:
    """The schema check is real: a misspelt field is refused."""
    pod = pods.pod_manifest(spec(), image="i", server_url="http://s", namespace="p")
    pod["spec"]["containers"][0]["workDir"] = "/x"
    with pytest.raises(ValidationError):
        validate(pod, K8S, strict=True)


def test_mlflows_client_gets_the_run_token_from_the_secret_when_it_logs_to_runyard() -> None:
    """A pod whose MLflow client logs to runyard reads its token from the same Secret; one that logs to
    another MLflow server gets none of ours."""
    ours = {"RUNYARD_TOKEN": "t", "RUNYARD_API_URL": "http://s", "MLFLOW_TRACKING_URI": "http://s"}
    theirs = {**ours, "MLFLOW_TRACKING_URI": "http://mlflow.example"}
    envs = []
    for env in (ours, theirs):
        s = spec(snapshot=None, cpu=None, memory=None, gpu=0, env=env)
        pod = pods.pod_manifest(
            s,
            image="i",
            server_url="http://s",
            namespace="p",
            owner=None,
            run_token_secret="tok",
            env_lock=None,
        )
        envs.append(env_of(valid(pod)["spec"]["containers"][0]))
    assert envs[0]["MLFLOW_TRACKING_TOKEN"] == {"secretKeyRef": {"name": "tok", "key": "token"}}
    assert "MLFLOW_TRACKING_TOKEN" not in envs[1]
    assert all(not isinstance(v, str) or v != "t" for env in envs for v in env.values())  # never inline
