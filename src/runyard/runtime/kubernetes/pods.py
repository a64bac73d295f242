"""Pure manifest builders: what the kubernetes runtime (and the operator) create for a Run's attempt (a Pod),
a Model (a Deployment and its Service) and a Session (a Pod and its Service). Plain dicts, no API calls.

A pod runs on the runyard image (runyard installed), in three steps: an init container fetches the run's
snapshot from the runyard server into /workspace (an emptyDir, or a session's claim), another installs the
environment from its recorded lock into a cache shared by the pods of a node (a hostPath, or a claim), keyed
by the lock's hash, and the main container runs the command there with the environment first on PATH and
the tracking SDK first on PYTHONPATH, as the local runtime does.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Required, TypedDict, Unpack

from runyard.core.kinds import API_VERSION
from runyard.runtime.base import LaunchSpec
from runyard.serving import protocol

PROJECT_LABEL = "runyard.dev/project"
KIND_LABEL = "runyard.dev/kind"
RUN_LABEL = "runyard.dev/run"
RUN_UID_LABEL = "runyard.dev/run-uid"  # find_launched knows the uid only
ATTEMPT_LABEL = "runyard.dev/attempt"
MODEL_LABEL = "runyard.dev/model"
SESSION_LABEL = "runyard.dev/session"
MANAGED_BY = {"app.kubernetes.io/managed-by": "runyard"}
STOP_ANNOTATION = "runyard.dev/stop-grace"  # set by KubernetesRuntime.stop: the exit was asked for

MAIN = "main"  # the main container's name
WORKSPACE = "/workspace"
ENVS = "/runyard/envs"  # the environment cache, at the same path in every container (venvs hold paths)
SDK_HOME = "/runyard"  # init.environment links the installed runyard package into SDK_HOME/sdk
SDK = f"{SDK_HOME}/sdk"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT = ["python", "-m", "runyard.runtime.kubernetes.init"]
TOKEN_KEY = "token"  # the key of the run token in run_token_secret (and of a session's Jupyter token)
# On a Session: the Secret its Jupyter token is in (the operator makes it; the server's proxy reads it).
SESSION_TOKEN_ANNOTATION = "runyard.dev/session-token-secret"
SESSION_PORT = 8888  # Jupyter's, in a session's pod and on its Service
HTTP_PORT_NAME = "http"
# Set by the controller for a host's GPUs; in a pod the device plugin says which GPUs it has.
HOST_GPU_ENV = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")


@dataclass(frozen=True)
class EnvCache:
    """Where environments are cached: a claim (ReadWriteMany, shared by every node) or else a directory
    of each node (hostPath, created when missing)."""

    host_path: str = "/var/cache/runyard/envs"
    claim: str | None = None

    def volume(self) -> dict[str, Any]:
        if self.claim:
            return {"name": "envs", "persistentVolumeClaim": {"claimName": self.claim}}
        return {"name": "envs", "hostPath": {"path": self.host_path, "type": "DirectoryOrCreate"}}


def dns_name(base: str, suffix: str = "", limit: int = 63) -> str:
    """`base` + `suffix` as a DNS label of at most `limit` characters; a base cut short gets a hash of the
    whole so that two long names sharing a prefix still differ."""
    if len(base) + len(suffix) <= limit:
        return base + suffix
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    keep = limit - len(suffix) - len(digest) - 1
    return f"{base[:keep].rstrip('-')}-{digest}{suffix}"


def pod_name(run_name: str, attempt: int) -> str:
    return dns_name(run_name, f"-{int(attempt)}")


def env_dir(lock: str) -> str:
    """The cached environment of a lock: its directory, named by the lock's hash."""
    return f"{ENVS}/{hashlib.sha256(lock.encode()).hexdigest()}"


def run_labels(spec: LaunchSpec) -> dict[str, str]:
    return {
        PROJECT_LABEL: spec.project,
        KIND_LABEL: "Run",
        RUN_LABEL: spec.name,
        RUN_UID_LABEL: spec.run_uid,
        ATTEMPT_LABEL: str(spec.attempt),
        **MANAGED_BY,
    }


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """A controlling owner reference to a runyard object ({kind, name, uid}, apiVersion runyard.dev/v1 by
    default): the garbage collector deletes what it owns with it."""
    return {
        "apiVersion": owner.get("apiVersion", API_VERSION),
        "kind": owner["kind"],
        "name": owner["name"],
        "uid": owner["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def resources(cpu: float | None, memory: int | None, gpu: int) -> dict[str, Any]:
    """Requests equal to limits: the local runtime enforces cpu and memory as limits, and a run that asked
    for them should get them (Guaranteed QoS when both are set)."""
    amounts: dict[str, str] = {}
    if cpu is not None:
        amounts["cpu"] = f"{max(1, round(cpu * 1000))}m"
    if memory is not None:
        amounts["memory"] = str(int(memory))
    if gpu:
        amounts["nvidia.com/gpu"] = str(int(gpu))
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def _env_list(env: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def _token_env(secret: str, name: str = "RUNYARD_TOKEN") -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": TOKEN_KEY}}}


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False}


# A container that fails says why in its status: init.py's last line, or the tail of the log.
TERMINATION = {"terminationMessagePolicy": "FallbackToLogsOnError"}


def _init_containers(
    spec: LaunchSpec,
    image: str,
    server_url: str,
    run_token_secret: str | None,
    env_lock: str | None,
    keep_workspace: bool,
) -> list[dict[str, Any]]:
    inits: list[dict[str, Any]] = []
    if spec.snapshot:
        token = [_token_env(run_token_secret)] if run_token_secret else []
        if not token and "RUNYARD_TOKEN" in spec.env:
            token = [{"name": "RUNYARD_TOKEN", "value": spec.env["RUNYARD_TOKEN"]}]
        args = ["snapshot", "--server", server_url, "--project", spec.project, "--snapshot", spec.snapshot]
        args += ["--dest", WORKSPACE] + (["--keep"] if keep_workspace else [])
        inits.append(
            {
                "name": "snapshot",
                "image": image,
                "command": [*INIT, *args],
                "env": token,
                "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE}],
                "securityContext": _container_security(),
                **TERMINATION,
            }
        )
    if env_lock is not None:
        inits.append(
            {
                "name": "environment",
                "image": image,
                "command": [*INIT, "environment", "--dir", env_dir(env_lock), "--sdk-home", SDK_HOME],
                "env": [{"name": "RUNYARD_ENV_LOCK", "value": env_lock}],
                "volumeMounts": [
                    {"name": "envs", "mountPath": ENVS},
                    {"name": "sdk", "mountPath": SDK},
                ],
                "securityContext": _container_security(),
                **TERMINATION,
            }
        )
    return inits


def _main_env(spec: LaunchSpec, env_lock: str | None, run_token_secret: str | None) -> list[dict[str, Any]]:
    env = dict(spec.env)
    if spec.gpu:
        for key in HOST_GPU_ENV:
            env.pop(key, None)
    if env_lock is not None:
        venv = env_dir(env_lock)
        env["PATH"] = f"{venv}/bin:{env.get('PATH', DEFAULT_PATH)}"
        env["VIRTUAL_ENV"] = venv
        env["PYTHONPATH"] = ":".join([SDK, *filter(None, env.get("PYTHONPATH", "").split(":"))])
    if run_token_secret:
        env.pop("RUNYARD_TOKEN", None)
        tokens = [_token_env(run_token_secret)]
        if env.get("MLFLOW_TRACKING_URI") == env.get("RUNYARD_API_URL"):  # MLflow's client logs to runyard
            tokens.append(_token_env(run_token_secret, "MLFLOW_TRACKING_TOKEN"))
        return [*_env_list(env), *tokens]
    return _env_list(env)


def listen_command(argv: list[str], port: int, fd: int) -> list[str]:
    """`argv` started with a socket listening on `port` as fd `fd` (a model replica and a session's Jupyter
    accept on an inherited socket rather than binding one)."""
    return [*INIT, "listen", "--port", str(port), "--fd", str(fd), "--", *argv]


class PodArgs(TypedDict, total=False):
    """pod_spec's keywords that every manifest of a pod (a Run's, a Session's, a Model's template) passes on
    unchanged (as `**pod`)."""

    image: Required[str]
    server_url: Required[str]
    run_token_secret: str | None
    env_lock: str | None
    env_cache: EnvCache | None


def token_secret_manifest(
    name: str, namespace: str, labels: dict[str, str], owners: list[dict[str, Any]] | None, token: str
) -> dict[str, Any]:
    """The Secret a pod's runyard token is in (as `run_token_secret`: key TOKEN_KEY), owned like the pod,
    so the token is never in a pod's spec and goes when its owner does."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if owners:
        metadata["ownerReferences"] = owners
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "stringData": {TOKEN_KEY: token}}


def _metadata(
    name: str,
    namespace: str,
    labels: dict[str, str],
    owner: dict[str, Any] | None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An owned object's metadata: owned by `owner` ({kind, name, uid}) when given."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if annotations is not None:
        metadata["annotations"] = annotations
    if owner:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return metadata


def pod_spec(
    spec: LaunchSpec,
    *,
    image: str,
    server_url: str,
    run_token_secret: str | None = None,
    env_lock: str | None = None,
    env_cache: EnvCache | None = None,
    restart_policy: str = "Never",
    port: int | None = None,
    listen_fd: int = 5,
    workspace_claim: str | None = None,
    probes: dict[str, Any] | None = None,
    service_account: str | None = None,
) -> dict[str, Any]:
    """The PodSpec of an attempt (also a Deployment's template). `port`: the main container's process
    accepts on it through an inherited socket, fd `listen_fd` (what the replica and Jupyter expect).
    `workspace_claim`: a claim kept across attempts as /workspace (a session's), filled once.
    `service_account`: the run acts with it on the cluster (e.g. runyard-spark, for Spark on Kubernetes);
    without one, no Kubernetes credential is mounted: a run's credential is its runyard token."""
    argv = list(spec.argv)
    container: dict[str, Any] = {
        "name": MAIN,
        "image": image,
        "command": listen_command(argv, port, listen_fd) if port else argv,
        "env": _main_env(spec, env_lock, run_token_secret),
        "workingDir": WORKSPACE,
        "resources": resources(spec.cpu, spec.memory, spec.gpu),
        "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE}],
        "securityContext": _container_security(),
        **TERMINATION,
    }
    if env_lock is not None:
        container["volumeMounts"] += [
            {"name": "envs", "mountPath": ENVS, "readOnly": True},
            {"name": "sdk", "mountPath": SDK, "readOnly": True},
        ]
    if port:
        container["ports"] = [{"name": HTTP_PORT_NAME, "containerPort": port, "protocol": "TCP"}]
    container.update(probes or {})
    workspace: dict[str, Any] = (
        {"name": "workspace", "persistentVolumeClaim": {"claimName": workspace_claim}}
        if workspace_claim
        else {"name": "workspace", "emptyDir": {}}
    )
    volumes = [workspace]
    if env_lock is not None:
        volumes += [(env_cache or EnvCache()).volume(), {"name": "sdk", "emptyDir": {}}]
    keep = workspace_claim is not None
    return {
        "restartPolicy": restart_policy,
        "terminationGracePeriodSeconds": math.ceil(spec.stop_grace),
        "enableServiceLinks": False,  # a project's services are not the run's environment
        **(
            {"serviceAccountName": service_account, "automountServiceAccountToken": True}
            if service_account
            else {"automountServiceAccountToken": False}
        ),
        "initContainers": _init_containers(spec, image, server_url, run_token_secret, env_lock, keep),
        "containers": [container],
        "volumes": volumes,
    }


def pod_manifest(
    spec: LaunchSpec,
    *,
    namespace: str,
    owner: dict[str, Any] | None = None,
    timeout: float | None = None,
    labels: dict[str, str] | None = None,
    service_account: str | None = None,
    **pod: Unpack[PodArgs],
) -> dict[str, Any]:
    """The Pod of one attempt of a Run: `<run>-<attempt>`, owned by the Run (`owner`: {kind, name, uid}),
    never restarted (a retry is the next attempt), stopped by Kubernetes after `timeout` seconds."""
    body = pod_spec(spec, service_account=service_account, **pod)
    if timeout:
        body["activeDeadlineSeconds"] = max(1, math.ceil(timeout))
    return _pod(spec, namespace, owner, body, labels or {})


def _pod(
    spec: LaunchSpec,
    namespace: str,
    owner: dict[str, Any] | None,
    body: dict[str, Any],
    labels: dict[str, str],
) -> dict[str, Any]:
    name, annotations = pod_name(spec.name, spec.attempt), {"runyard.dev/run-uid": spec.run_uid}
    metadata = _metadata(name, namespace, {**labels, **run_labels(spec)}, owner, annotations)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": body}


def http_probes(port: str | int, path: str, start_seconds: int = 600) -> dict[str, Any]:
    """Readiness on `path` every 2 s; liveness on the same path once started; a startup probe that allows
    `start_seconds` (an environment install or a model's load) before liveness counts."""
    get = {"path": path, "port": port}
    return {
        "readinessProbe": {"httpGet": get, "periodSeconds": 2, "timeoutSeconds": 2, "failureThreshold": 2},
        "livenessProbe": {"httpGet": get, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        "startupProbe": {
            "httpGet": get,
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": max(1, start_seconds // 2),
        },
    }


def model_labels(project: str, model: str) -> dict[str, str]:
    return {PROJECT_LABEL: project, KIND_LABEL: "Model", MODEL_LABEL: model, **MANAGED_BY}


def deployment_manifest(
    spec: LaunchSpec,
    *,
    model: str,
    version: int,
    replicas: int,
    namespace: str,
    owner: dict[str, Any] | None = None,
    port: int = 8080,
    **pod: Unpack[PodArgs],
) -> dict[str, Any]:
    """A Model's replicas: `spec` is one replica's launch (`python -m runyard.serving.replica` and its
    environment). A new version rolls out with no replica down before its successor is ready
    (maxUnavailable 0); readiness is the replica's /health on the model's port, which answers only once
    the model is loaded and the replica accepts."""
    labels = model_labels(spec.project, model)
    body = pod_spec(
        spec,
        restart_policy="Always",
        port=port,
        listen_fd=int(spec.env.get(protocol.ENV_LISTEN_FD) or protocol.LISTEN_FD),
        probes=http_probes(HTTP_PORT_NAME, "/health"),
        **pod,
    )
    marked = {"runyard.dev/model-version": str(version)}
    metadata = _metadata(dns_name(model), namespace, labels, owner, marked)
    template_labels = {**labels, **marked}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {MODEL_LABEL: model, PROJECT_LABEL: spec.project}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": template_labels}, "spec": body},
        },
    }


def service_manifest(
    name: str,
    *,
    namespace: str,
    selector: dict[str, str],
    labels: dict[str, str],
    port: int = 80,
    target_port: str | int = HTTP_PORT_NAME,
    owner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ClusterIP Service: the stable address of a Model's replicas or a Session's pod."""
    metadata = _metadata(dns_name(name), namespace, labels, owner)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": port, "targetPort": target_port, "protocol": "TCP"}],
        },
    }


def model_service_manifest(
    model: str, *, project: str, namespace: str, owner: dict[str, Any] | None = None
) -> dict[str, Any]:
    return service_manifest(
        model,
        namespace=namespace,
        selector={MODEL_LABEL: model, PROJECT_LABEL: project},
        labels=model_labels(project, model),
        owner=owner,
    )


def session_pod_manifest(
    spec: LaunchSpec,
    *,
    session: str,
    namespace: str,
    owner: dict[str, Any] | None = None,
    workspace_claim: str | None = None,
    port: int = 8888,
    **pod: Unpack[PodArgs],
) -> dict[str, Any]:
    """A Session's pod: the run's pod, its Jupyter server accepting on `port` (the fd of
    RUNYARD_SESSION_LISTEN_FD), ready once Jupyter answers under the session's base URL; its work
    directory a claim kept across starts when given (the snapshot is copied into it once)."""
    fd = int(spec.env.get("RUNYARD_SESSION_LISTEN_FD") or spec.listen_fd or 5)
    base = spec.env.get("RUNYARD_SESSION_BASE_URL", "/").rstrip("/")
    body = pod_spec(
        spec,
        port=port,
        listen_fd=fd,
        workspace_claim=workspace_claim,
        probes={"readinessProbe": http_probes(HTTP_PORT_NAME, f"{base}/api")["readinessProbe"]},
        **pod,
    )
    return _pod(spec, namespace, owner, body, {SESSION_LABEL: session})


def session_service_name(session: str) -> str:
    """A Session's Service: not the bare name, which a Model of the same name holds (its stable URL)."""
    return dns_name(session, "-session")


def session_service_manifest(
    session: str, *, project: str, namespace: str, owner: dict[str, Any] | None = None, port: int = 8888
) -> dict[str, Any]:
    labels = {PROJECT_LABEL: project, KIND_LABEL: "Session", SESSION_LABEL: session, **MANAGED_BY}
    return service_manifest(
        session_service_name(session),
        namespace=namespace,
        selector={SESSION_LABEL: session, PROJECT_LABEL: project},
        labels=labels,
        port=port,
        owner=owner,
    )
