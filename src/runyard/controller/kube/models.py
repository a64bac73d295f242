"""Models on a cluster: each Model is a Deployment of its replicas and a Service, its one stable URL.

Kubernetes does the work the local models controller does by hand: the Deployment rolls a new version out
with no replica down before its successor is ready (maxUnavailable 0, readiness probes), and replaces a
replica that dies. What stays runyard's is what makes a version (controller/models/versions.py: one per
distinct serving-relevant spec, so a rollback, which sets an earlier version's spec, makes none; a change of
replicas scales, never rolls) and the Model's status: which version serves (currentVersion moves only once
its rollout finished), which is rolling out, how many replicas are ready, the phase as the local controller
names it (Pending, Updating, Ready, ScaledToZero, Failed).

With the platform's database, a models:/NAME@alias (or /latest, /<stage>) is pinned to the version the
registry names (models:/NAME/N, which the replicas load through MLflow's client), looked at again every
ALIAS_POLL seconds: moving the alias makes a new version, which rolls out as any other.

Not on a cluster: scale to zero and request-driven autoscaling (a Service holds no request while no replica
runs): with autoscaling the Deployment keeps minReplicas, at least one. The Deployment and Service are owned
by the Model (deleting it deletes them); everything is watch-driven and only the leader writes: the
lifecycle (start, stop, leading, the leader-only work loop) is base.KindController's, as the Operator's.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Unpack

from runyard.controller.kube.base import Cluster, Elector, KindController, Work
from runyard.controller.kube.decide import launch_spec
from runyard.controller.kube.informer import PodSource
from runyard.controller.kube.tokens import Tokens, ensure_token_secret, revoke_deleted, secret_name
from runyard.controller.models.replicas import replica_spec
from runyard.controller.models.versions import version_for
from runyard.core.errors import Conflict, Invalid, NotFound
from runyard.core.resources import Model, ModelSpec, ModelStatus, ModelVersion, ObjectMeta, Run
from runyard.runtime.kubernetes.pods import (
    MODEL_LABEL,
    deployment_manifest,
    dns_name,
    model_labels,
    model_service_manifest,
)
from runyard.services.registry import parse_models_uri, pin_model_uri
from runyard.settings import ServingSettings
from runyard.store import Store

OWNED_SELECTOR = "app.kubernetes.io/managed-by=runyard,runyard.dev/kind=Model"
VERSION_ANNOTATION = "runyard.dev/model-version"  # deployment_manifest sets it: the version it runs
HASH_ANNOTATION = "runyard.dev/manifest-hash"  # of what we asked for: the API server adds defaults
SERVICE_PORT = 80  # model_service_manifest's
ALIAS_POLL = 10.0  # seconds between looks at the registry for a Model that follows an alias or a stage
CONFLICT_RETRY = 1.0  # seconds: a write refused as stale is tried again once the watch brings the new copy


class OwnedSource(PodSource):
    """PodSource for another kind runyard labels: Deployments or Services (same list, watch, resume)."""

    def __init__(self, api_client: Any, namespace: str | None, selector: str, plural: str):
        from kubernetes import client

        super().__init__(api_client, namespace, selector)
        if plural == "deployments":
            apps = client.AppsV1Api(api_client)
            self._every, self._one = apps.list_deployment_for_all_namespaces, apps.list_namespaced_deployment
        else:
            self._every, self._one = (
                self.core.list_service_for_all_namespaces,
                self.core.list_namespaced_service,
            )

    def _call(self, watch: bool, **kwargs: Any) -> Any:
        args: dict[str, Any] = {"label_selector": self.selector, "_preload_content": False}
        if watch:
            args.update(
                watch=True, allow_watch_bookmarks=True, timeout_seconds=self.timeout_seconds, **kwargs
            )
        return self._every(**args) if self.namespace is None else self._one(self.namespace, **args)


class ModelController(KindController[Work]):
    """Watches Models and their Deployments and Services; reconciles from the caches, writes while leading."""

    kinds = ("Model",)
    thread_prefix = "models"

    def __init__(
        self,
        resources: Any,
        elector: Elector,
        *,
        image: str,
        server_url: str,
        tokens: Tokens | None = None,
        registry: Store | None = None,
        alias_poll: float = ALIAS_POLL,
        **cluster: Unpack[Cluster],
    ):
        """`tokens`: where a Model's runyard token is issued (its replicas fetch its snapshot and report
        with it); None: replicas get none. `registry`: the platform's database, whose model registry pins
        a models:/NAME@alias to the version it names (looked at again every `alias_poll` seconds, so a
        moved alias rolls the Model); None: the replicas resolve it when they load, and never roll."""
        from kubernetes import client

        super().__init__(resources, elector, image=image, server_url=server_url, **cluster)
        api_client, calls = self.api_client, self.calls
        self.tokens, self.registry, self.alias_poll = tokens, registry, alias_poll
        self.settings = ServingSettings()
        if calls is not None:
            calls.instrument(api_client)  # every request counted, once however many share the client
        self.apps, self.core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
        self._made: set[tuple[str, str]] = set()  # (kind, Model uid): its Deployment/Service made or seen
        self._tokened: set[str] = set()  # Models (uids) whose token Secret exists
        for scope in self.scopes:
            self._watch_resources(Model, scope, self._on_model)
            for plural, kind in (("deployments", "Deployment"), ("services", "Service")):
                source = OwnedSource(api_client, scope, OWNED_SELECTOR, plural)
                self._watch_objects(kind, scope, plural, source, self._owned_handler(kind))

    def _on_model(self, type_: str, model: Model) -> None:
        if type_ == "DELETED":
            with self._lock:
                self._tokened.discard(model.uid)
            revoke_deleted(self.tokens, model)
            return
        self.queue.add(("Model", model.metadata.project, model.metadata.name))

    def _owned_handler(self, kind: str) -> Any:
        def on_change(type_: str, obj: dict) -> None:
            """A Deployment or Service of a Model: seen (one gone later was deleted, see _deleted), and
            its Model looked at again."""
            m = obj["metadata"]
            with self._lock:
                self._made.update((kind, o["uid"]) for o in m.get("ownerReferences") or [])
            model = (m.get("labels") or {}).get(MODEL_LABEL)
            if model:
                self.queue.add(("Model", m["namespace"], model))

        return on_change

    # -- reconcile

    def _reconcile(self, item: Work) -> None:
        _, namespace, name = item
        model = self._cache("Model", namespace).get((namespace, name))
        if model is None or model.metadata.deletionTimestamp is not None or model.metadata.uid is None:
            return  # the garbage collector deletes its Deployment and Service
        st = model.status.model_copy(deep=True)
        version = self._version(model, st)
        if version is None:
            return
        desired = replicas_of(model.spec)
        if not self._token_secret(model):
            return
        deployment = self._deployment(model, version, desired)
        if deployment is None:
            return
        if not self._service(model):
            return
        status = model_status(model, st, version.version, desired, deployment)
        if status.model_dump(mode="json") != model.status.model_dump(mode="json"):
            stalls = status.reason == "RolloutStalled" and model.status.reason != "RolloutStalled"
            if self._write_status(model, status) and stalls:
                self._warn(model, "RolloutStalled", status.message or "")

    def _version(self, model: Model, st: ModelStatus) -> ModelVersion | None:
        """The version the spec asks for, in `st`: its models:/ URI pinned to the registry's version now
        (a moved alias makes a new version, which rolls out); the one serving when the registry cannot
        say, or None (the Model Failed, ModelNotFound) when none ever served."""
        m, uri = model.metadata, model.spec.modelUri
        source = uri
        if self.registry is not None and uri is not None:
            if is_registry_uri(uri):  # the registry may move it: looked at again
                self.queue.add_after(("Model", m.project, m.name), self.alias_poll)
            try:
                source = pin_model_uri(self.registry, m.project, uri)
            except (Invalid, NotFound) as exc:
                serving = next((v for v in st.versions if v.version == st.currentVersion), None)
                if serving is not None:
                    return serving
                if (model.status.phase, model.status.message) != ("Failed", str(exc)):
                    st.phase, st.reason, st.message = "Failed", "ModelNotFound", str(exc)
                    if self._write_status(model, st):
                        self._warn(model, "ModelNotFound", str(exc))
                return None
        return version_for(st, model.spec, source)[0]

    def _deployment(self, model: Model, version: ModelVersion, desired: int) -> dict | None:
        """The Deployment as the spec asks, created or replaced when what we asked for changed; None when
        the name is held by another object (an earlier Model of that name, still being collected)."""
        m = model.metadata
        wanted = self.manifest(model, version, desired)
        cache = self._cache("Deployment", m.project)
        current = cache.get((m.project, wanted["metadata"]["name"]))
        if current is not None and not _owned_by(current, model):
            self.queue.add_after(("Model", m.project, m.name), CONFLICT_RETRY)
            return None
        if current is None and self._deleted(model, "Deployment"):
            return None
        if current is not None:
            with self._lock:
                self._made.add(("Deployment", model.uid))
            if _annotation(current, HASH_ANNOTATION) == _annotation(wanted, HASH_ANNOTATION):
                return current
        try:
            if current is None:
                resp = self.apps.create_namespaced_deployment(m.project, wanted, _preload_content=False)
            else:
                wanted["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                name = wanted["metadata"]["name"]
                resp = self.apps.replace_namespaced_deployment(
                    name, m.project, wanted, _preload_content=False
                )
        except Exception as exc:
            if getattr(exc, "status", None) not in (409, 404):
                raise
            # Exists already, or changed meanwhile: its watch event brings the copy to decide on.
            self.queue.add_after(("Model", m.project, m.name), CONFLICT_RETRY)
            return None
        self._count_reconciled()
        obj = json.loads(resp.data)
        cache.put(obj)
        with self._lock:
            self._made.add(("Deployment", model.uid))
        return obj

    def _deleted(self, model: Model, kind: str) -> bool:
        """Its Deployment or Service, made before, is gone: the Model was deleted and the garbage
        collector took it, or someone deleted that object. The Model's own DELETED event may not have come
        yet (another watch): one read tells, and only in this case."""
        m = model.metadata
        with self._lock:
            if (kind, model.uid) not in self._made:
                return False
            self._made.discard((kind, model.uid))
        try:
            return self.resources.get("Model", m.project, m.name).metadata.uid != m.uid
        except NotFound:
            return True

    def _token_secret(self, model: Model) -> bool:
        """Its token Secret, made before its first Deployment (the replicas read it); False while the name
        is held by an earlier Model's, looked at again later."""
        if self.tokens is None:
            return True
        with self._lock:
            if model.uid in self._tokened:
                return True
        m = model.metadata
        if not ensure_token_secret(self.core, model, self.tokens, model_labels(m.project, m.name)):
            self.queue.add_after(("Model", m.project, m.name), CONFLICT_RETRY)
            return False
        self._count_reconciled()
        with self._lock:
            self._tokened.add(model.uid)
        return True

    def _service(self, model: Model) -> bool:
        """Its Service, made once (its selector never changes); False while the name is another's."""
        m = model.metadata
        wanted = model_service_manifest(m.name, project=m.project, namespace=m.project, owner=_owner(model))
        cache = self._cache("Service", m.project)
        current = cache.get((m.project, wanted["metadata"]["name"]))
        if current is not None:
            return _owned_by(current, model)
        if self._deleted(model, "Service"):
            return False
        try:
            resp = self.core.create_namespaced_service(m.project, wanted, _preload_content=False)
        except Exception as exc:
            if getattr(exc, "status", None) != 409:
                raise
            return True  # its watch event is on its way
        self._count_reconciled()
        cache.put(json.loads(resp.data))
        with self._lock:
            self._made.add(("Service", model.uid))
        return True

    def manifest(self, model: Model, version: ModelVersion, replicas: int) -> dict[str, Any]:
        token = secret_name("Model", model.metadata.name) if self.tokens is not None else None
        return model_deployment(
            model,
            version,
            replicas,
            image=self.image,
            server_url=self.server_url,
            settings=self.settings,
            run_token_secret=token,
        )

    def _write_status(self, res: Any, status: Any) -> bool:
        m = res.metadata
        try:
            written = self.resources.patch_status(res.kind, m.project, m.name, status.model_dump(mode="json"))
        except NotFound:
            return False
        except Conflict:
            self.queue.add_after(("Model", m.project, m.name), CONFLICT_RETRY)
            return False
        self._count_reconciled()
        self._cache("Model", m.project).put(written)
        return True


# -- pure helpers


def model_deployment(
    model: Model,
    version: ModelVersion,
    replicas: int,
    *,
    image: str,
    server_url: str,
    settings: ServingSettings,
    run_token_secret: str | None = None,
) -> dict[str, Any]:
    """The Deployment of `version` at `replicas`, owned by the Model, stamped with a hash of itself (what
    the controller compares: the API server adds defaults to what it stores). `run_token_secret`: the
    Secret of the Model's runyard token, which its replicas get."""
    m = model.metadata
    manifest = deployment_manifest(
        launch_spec(_replica_run(model, version, settings), 1, server_url),
        model=m.name,
        version=version.version,
        replicas=replicas,
        image=image,
        server_url=server_url,
        namespace=m.project,
        owner=_owner(model),
        run_token_secret=run_token_secret,
    )
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    manifest["metadata"]["annotations"][HASH_ANNOTATION] = digest
    return manifest


def is_registry_uri(uri: str) -> bool:
    """models:/NAME@alias, /latest or /<stage>: what the registry may point elsewhere later."""
    try:
        parsed = parse_models_uri(uri)
    except Invalid:
        return False
    return parsed is not None and not parsed[1].isdigit()


def replicas_of(spec: ModelSpec) -> int:
    """How many replicas: spec.replicas, or with autoscaling its minimum, at least one (no scale to zero on
    a cluster: nothing would hold a request while no replica runs)."""
    if spec.autoscaling is not None:
        return max(1, spec.autoscaling.minReplicas)
    return spec.replicas


def model_url(model: Model) -> str:
    """The Model's one stable URL: its Service's name in the cluster's DNS (port 80)."""
    return f"http://{dns_name(model.metadata.name)}.{model.metadata.project}.svc"


def rollout_done(deployment: dict) -> bool:
    """`kubectl rollout status`'s test: the Deployment controller saw the latest spec, every replica runs
    it, none of the old is left and all are available."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    want = int(spec.get("replicas", 1))
    generation = int(deployment["metadata"].get("generation") or 0)
    return (
        int(status.get("observedGeneration") or 0) >= generation
        and int(status.get("updatedReplicas") or 0) == want
        and int(status.get("replicas") or 0) == want
        and int(status.get("availableReplicas") or 0) >= want
    )


def stalled(deployment: dict) -> str | None:
    """Why the Deployment does not progress (its progress deadline passed, or pods cannot be made)."""
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return cond.get("message") or "the rollout passed its progress deadline"
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return cond.get("message") or "replicas cannot be created"
    return None


def model_status(model: Model, st: ModelStatus, target: int, desired: int, deployment: dict) -> ModelStatus:
    """The Model's status from its Deployment: `st` holds the versions (target among them)."""
    st = st.model_copy(deep=True)
    status = deployment.get("status") or {}
    ready = int(status.get("readyReplicas") or 0)
    runs_target = _annotation(deployment, VERSION_ANNOTATION) == str(target)
    if runs_target and rollout_done(deployment):
        st.currentVersion = target
    st.targetVersion = target if st.currentVersion != target else None
    st.url, st.port = model_url(model), SERVICE_PORT
    st.replicas, st.readyReplicas, st.desiredReplicas = int(status.get("replicas") or 0), ready, desired
    st.observedGeneration = model.metadata.generation
    st.runs = []  # on a cluster replicas are the Deployment's pods, not Runs
    trouble = stalled(deployment) if runs_target else None
    if st.currentVersion is None:
        if trouble:
            st.phase, st.reason, st.message = "Failed", "RolloutStalled", f"version {target}: {trouble}"
        else:
            st.phase, st.reason = "Pending", "ReplicasStarting"
            st.message = f"waiting for version {target}'s replicas: {ready}/{desired} ready"
    elif st.currentVersion != target:
        st.phase, st.reason = "Updating", "RollingOut"
        st.message = f"version {target} starting; version {st.currentVersion} serves"
        if trouble:
            st.reason = "RolloutStalled"
            st.message = f"version {target} does not get ready: {trouble}; version {st.currentVersion} serves"
    elif desired == 0:
        st.phase, st.reason, st.message = "ScaledToZero", "NoReplicas", "replicas: 0"
    elif ready == 0:
        st.phase, st.reason, st.message = (
            "Pending",
            "NoReplicaReady",
            f"no replica of version {target} is ready",
        )
    else:
        st.phase, st.reason = "Ready", "Serving"
        st.message = f"version {target} serves at {st.url} with {ready} replica(s) ready"
    return st


def _replica_run(model: Model, version: ModelVersion, settings: ServingSettings) -> Run:
    """One replica as a Run (never stored): what decide.launch_spec turns into the pod's command and
    environment, as the local controller gives a replica (models/replicas.replica_spec)."""
    m = model.metadata
    return Run(
        metadata=ObjectMeta(name=m.name, project=m.project, uid=m.uid),
        spec=replica_spec(model, version, settings),
    )


def _owner(model: Model) -> dict[str, Any]:
    return {"kind": "Model", "name": model.metadata.name, "uid": model.metadata.uid}


def _owned_by(obj: dict, model: Model) -> bool:
    return any(o.get("uid") == model.metadata.uid for o in obj["metadata"].get("ownerReferences") or [])


def _annotation(obj: dict, key: str) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(key)
