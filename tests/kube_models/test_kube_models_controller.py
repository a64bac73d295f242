"""Models on a cluster end to end: a Model applied as kubectl would becomes a Deployment and a Service it
owns; the Deployment's rollout flows into the Model's status; a spec change rolls a new version out and
the Model names it as serving only once the rollout finished; a change of replicas scales without a new
version, a rollback makes none; deleting the Model deletes both; only the leader writes; few API calls.

The API server is a fake (kmock's KubernetesEmulator, extended: tests/kube/emulator.py) because no real
kube-apiserver can run here; this module runs unchanged against a real cluster when KUBECONFIG names one.
The emulator has no Deployment controller: the tests that need one play it (write the Deployment's status
as it would, `DeploymentController` below) and skip on a real cluster, where replicas of the test image
would never get ready.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.kube.cluster import Cluster
from tests.kube_operator.harness import SERVER_URL, Running, leading, new_client, secret_token, wait_for

from runyard.controller.kube.leader import LeaseElector
from runyard.controller.kube.models import ModelController
from runyard.controller.kube.tokens import StoreTokens, Tokens, ensure_token_secret
from runyard.core.errors import NotFound
from runyard.core.resources import Model
from runyard.kube.api import CallCounter
from runyard.runtime.kubernetes.pods import model_labels
from runyard.services.auth import hash_secret
from runyard.store import Store
from runyard.store.kube.resources import KubeResources
from runyard.store.registry import ModelVersionRow, RegisteredModelRow

IMAGE = "runyard:test"


@contextmanager
def controller(
    kube: Cluster, namespace: str, identity: str = "mc-1", tokens: Tokens | None = None, **extra: Any
) -> Iterator[Running[ModelController]]:
    """A ModelController watching `namespace`, campaigning for its Lease there from a thread."""
    api, lease_api = new_client(kube), new_client(kube)
    calls = CallCounter()
    elector = LeaseElector(lease_api, namespace, identity=identity, lease_seconds=5.0, renew_every=0.25)
    mc = ModelController(
        KubeResources(api, calls),
        elector,
        api_client=api,
        namespaces=[namespace],
        image=IMAGE,
        server_url=SERVER_URL,
        calls=calls,
        tokens=tokens,
        **extra,
    )
    with leading(mc, elector, calls, api, lease_api) as running:
        yield running


class DeploymentController:
    """Plays Kubernetes' Deployment controller (the emulator has none): writes a Deployment's status."""

    def __init__(self, kube: Cluster):
        if kube.emulator is None:
            pytest.skip("plays the Deployment controller: only against the emulator")
        self.apps = client.AppsV1Api(kube.api_client)

    def roll(self, namespace: str, name: str, updated: int | None = None, **extra: Any) -> None:
        """The rollout as far as `updated` new replicas (all of them by default), each ready."""
        dep = deployment(self.apps.api_client, namespace, name)
        assert dep is not None
        want = dep["spec"]["replicas"]
        new = want if updated is None else updated
        old = 0 if new == want else want  # maxUnavailable 0: the old stay until the new are ready
        status = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": new + old,
            "updatedReplicas": new,
            "readyReplicas": new + old,
            "availableReplicas": new + old,
            **extra,
        }
        self.apps.patch_namespaced_deployment_status(
            name, namespace, {"status": status}, _content_type="application/merge-patch+json"
        )


def model(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "runyard.dev/v1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {"handler": "serve:predict", **spec},
    }


def objects(kube: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api_client)


def apply(kube: Cluster, namespace: str, body: dict[str, Any]) -> None:
    objects(kube).create_namespaced_custom_object("runyard.dev", "v1", namespace, "models", body)


def edit(kube: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    """As `kubectl patch --type merge` sends it."""
    objects(kube).patch_namespaced_custom_object(
        "runyard.dev",
        "v1",
        namespace,
        "models",
        name,
        {"spec": spec},
        _content_type="application/merge-patch+json",
    )


def deployment(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        reply = client.AppsV1Api(api).read_namespaced_deployment(name, namespace, _preload_content=False)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return json.loads(reply.data)


def service(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        reply = client.CoreV1Api(api).read_namespaced_service(name, namespace, _preload_content=False)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return json.loads(reply.data)


def status_of(store: KubeResources, namespace: str, name: str) -> Any:
    try:
        found = store.get("Model", namespace, name)
    except NotFound:
        return None
    assert isinstance(found, Model)
    return found.status


def until(store: KubeResources, namespace: str, name: str, **fields: Any) -> Any:
    def probe() -> Any:
        st = status_of(store, namespace, name)
        return st if st is not None and all(getattr(st, k) == v for k, v in fields.items()) else None

    return wait_for(f"model {name} {fields}", probe)


def version_of(dep: dict[str, Any]) -> str:
    return dep["spec"]["template"]["metadata"]["labels"]["runyard.dev/model-version"]


def test_a_model_becomes_an_owned_deployment_and_service_then_ready(kube: Cluster, namespace: str) -> None:
    rollout = DeploymentController(kube)
    store = KubeResources(kube.api_client)
    with controller(kube, namespace) as mc:
        wait_for("leadership", mc.elector.is_leader)
        apply(kube, namespace, model("iris", replicas=2, env={"THREADS": "2"}))
        dep = wait_for("deployment", lambda: deployment(kube.api_client, namespace, "iris"))
        svc = wait_for("service", lambda: service(kube.api_client, namespace, "iris"))
        uid = store.get("Model", namespace, "iris").metadata.uid
        for obj in (dep, svc):
            (owner,) = obj["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
                "Model",
                "iris",
                uid,
                True,
            )
        assert dep["spec"]["replicas"] == 2
        assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        (main,) = dep["spec"]["template"]["spec"]["containers"]
        assert main["image"] == IMAGE
        assert main["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        assert "livenessProbe" in main and "startupProbe" in main
        env = {e["name"]: e.get("value") for e in main["env"]}
        assert env["RUNYARD_MODEL"] == "iris" and env["RUNYARD_MODEL_HANDLER"] == "serve:predict"
        assert env["THREADS"] == "2" and env["RUNYARD_API_URL"] == SERVER_URL
        assert version_of(dep) == "1"
        assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
        st = until(store, namespace, "iris", phase="Pending")
        assert (st.currentVersion, st.targetVersion, st.readyReplicas, st.desiredReplicas) == (None, 1, 0, 2)

        rollout.roll(namespace, "iris")
        st = until(store, namespace, "iris", phase="Ready")
        assert st.url == f"http://iris.{namespace}.svc"
        assert (st.currentVersion, st.targetVersion, st.readyReplicas, st.replicas) == (1, None, 2, 2)
        assert [v.version for v in st.versions] == [1] and st.observedGeneration == 1


def test_a_new_version_serves_only_once_rolled_out_scaling_and_rollback_make_none(
    kube: Cluster, namespace: str
) -> None:
    rollout = DeploymentController(kube)
    store = KubeResources(kube.api_client)
    with controller(kube, namespace) as mc:
        wait_for("leadership", mc.elector.is_leader)
        apply(kube, namespace, model("iris", replicas=2))
        wait_for("deployment", lambda: deployment(kube.api_client, namespace, "iris"))
        rollout.roll(namespace, "iris")
        until(store, namespace, "iris", phase="Ready", currentVersion=1)

        edit(kube, namespace, "iris", {"handler": "serve:predict_v2"})
        dep = wait_for(
            "version 2 deployed",
            lambda: (d := deployment(kube.api_client, namespace, "iris")) and version_of(d) == "2" and d,
        )
        assert dep["metadata"]["annotations"]["runyard.dev/model-version"] == "2"
        st = until(store, namespace, "iris", phase="Updating", targetVersion=2)
        assert st.currentVersion == 1  # version 1 serves while 2 starts
        rollout.roll(namespace, "iris", updated=1)  # half way: one new replica, the two old still up
        st = until(store, namespace, "iris", readyReplicas=3)
        assert (st.phase, st.currentVersion, st.targetVersion) == ("Updating", 1, 2)
        rollout.roll(namespace, "iris")
        st = until(store, namespace, "iris", phase="Ready", currentVersion=2)
        assert st.targetVersion is None and [v.version for v in st.versions] == [1, 2]

        edit(kube, namespace, "iris", {"replicas": 3})  # scaling is no new version
        wait_for(
            "3 replicas", lambda: deployment(kube.api_client, namespace, "iris")["spec"]["replicas"] == 3
        )
        st = until(store, namespace, "iris", desiredReplicas=3)
        assert (st.currentVersion, len(st.versions)) == (2, 2)

        edit(kube, namespace, "iris", {"handler": "serve:predict"})  # what `runyard models rollback 1` sets
        wait_for("version 1 again", lambda: version_of(deployment(kube.api_client, namespace, "iris")) == "1")
        until(store, namespace, "iris", phase="Updating", targetVersion=1)
        rollout.roll(namespace, "iris")
        st = until(store, namespace, "iris", phase="Ready", currentVersion=1)
        assert [v.version for v in st.versions] == [1, 2]  # the rollback made no version


def test_a_first_version_that_cannot_roll_out_fails_and_autoscaling_keeps_its_minimum(
    kube: Cluster, namespace: str
) -> None:
    rollout = DeploymentController(kube)
    store = KubeResources(kube.api_client)
    with controller(kube, namespace) as mc:
        wait_for("leadership", mc.elector.is_leader)
        apply(kube, namespace, model("big", autoscaling={"minReplicas": 0, "maxReplicas": 4}))
        dep = wait_for("deployment", lambda: deployment(kube.api_client, namespace, "big"))
        assert dep["spec"]["replicas"] == 1  # no scale to zero on a cluster
        stuck = {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": "slow",
        }
        rollout.roll(namespace, "big", updated=0, conditions=[stuck])
        st = until(store, namespace, "big", phase="Failed")
        assert st.reason == "RolloutStalled" and "slow" in (st.message or "")
        events = wait_for(
            "a warning", lambda: client.CoreV1Api(kube.api_client).list_namespaced_event(namespace).items
        )
        assert [(e.type, e.reason, e.involved_object.name) for e in events] == [
            ("Warning", "RolloutStalled", "big")
        ]


def test_deleting_the_model_deletes_its_deployment_and_service(kube: Cluster, namespace: str) -> None:
    with controller(kube, namespace) as mc:
        wait_for("leadership", mc.elector.is_leader)
        apply(kube, namespace, model("iris"))
        wait_for("deployment", lambda: deployment(kube.api_client, namespace, "iris"))
        wait_for("service", lambda: service(kube.api_client, namespace, "iris"))
        objects(kube).delete_namespaced_custom_object(
            "runyard.dev", "v1", namespace, "models", "iris", propagation_policy="Background"
        )
        wait_for("deployment gone", lambda: deployment(kube.api_client, namespace, "iris") is None)
        wait_for("service gone", lambda: service(kube.api_client, namespace, "iris") is None)
        time.sleep(1.5)  # the Deployment's DELETED event may come before the Model's: nothing is made again
        assert deployment(kube.api_client, namespace, "iris") is None
        assert service(kube.api_client, namespace, "iris") is None


def test_its_replicas_get_a_runyard_token_in_a_secret_revoked_when_the_model_is_deleted(
    kube: Cluster, namespace: str, tmp_path: Path
) -> None:
    """The replicas' init container fetches the handler's snapshot with it, and each replica reports with it;
    one token per Model, kept across versions."""
    db = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    snapshot = "sha256:" + "ef" * 32
    with controller(kube, namespace, tokens=StoreTokens(db)) as mc:
        wait_for("leadership", mc.elector.is_leader)
        apply(kube, namespace, model("iris", snapshot=snapshot))
        dep = wait_for("deployment", lambda: deployment(kube.api_client, namespace, "iris"))
        pod = dep["spec"]["template"]["spec"]
        fetch, main = pod["initContainers"][0], pod["containers"][0]
        assert fetch["name"] == "snapshot" and snapshot in fetch["command"]
        token = secret_token(kube, namespace, fetch["env"])
        assert secret_token(kube, namespace, main["env"]) == token
        uid = store_uid(kube, namespace, "iris")
        row = db.token_by_hash(hash_secret(token))
        assert row is not None and (row.role, row.project, row.run_uid) == ("run", namespace, uid)

        edit(kube, namespace, "iris", {"env": {"THREADS": "4"}})  # version 2: the same Secret
        wait_for(
            "version 2", lambda: version_of(deployment(kube.api_client, namespace, "iris") or dep) == "2"
        )
        assert [t.run_uid for t in db.tokens() if not t.revoked].count(uid) == 1
        # As a restarted operator does: the Secret is there, and the token issued for it is revoked at once.
        model_now = KubeResources(kube.api_client).get("Model", namespace, "iris")
        core = client.CoreV1Api(kube.api_client)
        assert ensure_token_secret(core, model_now, StoreTokens(db), model_labels(namespace, "iris"))
        assert [t.run_uid for t in db.tokens() if not t.revoked].count(uid) == 1

        objects(kube).delete_namespaced_custom_object("runyard.dev", "v1", namespace, "models", "iris")
        wait_for("revoked", lambda: db.token_by_hash(hash_secret(token)) is None)


def test_a_new_leader_revokes_the_tokens_of_models_deleted_while_none_watched(
    kube: Cluster, namespace: str, tmp_path: Path
) -> None:
    """A Model deleted while no operator ran never sends its DELETED event to anyone: the token of its
    replicas would stay valid. On becoming leader the controller revokes the tokens of Models that are not
    in its caches, in the namespaces it watches only."""
    db = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    tokens = StoreTokens(db)

    def issued(name: str, uid: str, project: str = namespace) -> str:
        meta = {"name": name, "project": project, "uid": uid}
        gone = Model.model_validate({"metadata": meta, "spec": {"handler": "serve:predict"}})
        return tokens.issue(gone)

    ghost, elsewhere = issued("ghost", "uid-of-a-deleted-model"), issued("there", "uid-2", "another-team")
    with controller(kube, namespace, tokens=tokens) as mc:
        wait_for("leadership", mc.elector.is_leader)
        apply(kube, namespace, model("iris", snapshot="sha256:" + "ab" * 32))
        dep = wait_for("deployment", lambda: deployment(kube.api_client, namespace, "iris"))
        live = secret_token(kube, namespace, dep["spec"]["template"]["spec"]["containers"][0]["env"])
        wait_for("the ghost's token revoked", lambda: db.token_by_hash(hash_secret(ghost)) is None)
        assert mc.controller.sweep_tokens() == 0  # once is enough: nothing left to revoke
    assert db.token_by_hash(hash_secret(elsewhere)) is not None  # a namespace it does not watch
    assert db.token_by_hash(hash_secret(live)) is not None


def test_a_model_following_an_alias_serves_its_version_and_rolls_when_it_moves(
    kube: Cluster, namespace: str, tmp_path: Path
) -> None:
    """With the platform's database, models:/NAME@alias is pinned to the version the registry names
    (the replicas load that one through MLflow's client); moving the alias makes a new version, which rolls
    out; an alias the registry does not have fails the Model, naming it. The registry rows are written as
    the MLflow registry API writes them, to a real SQLite database."""
    db = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    register(db, namespace, "lines", versions=2, champion=1)
    rollout = DeploymentController(kube)
    store = KubeResources(kube.api_client)
    with controller(kube, namespace, registry=db, alias_poll=0.2) as mc:
        wait_for("leadership", mc.elector.is_leader)
        apply(kube, namespace, following("lines", "models:/lines@champion"))
        dep = wait_for("deployment", lambda: deployment(kube.api_client, namespace, "lines"))
        assert source_of(dep) == "models:/lines/1" and version_of(dep) == "1"
        rollout.roll(namespace, "lines")
        until(store, namespace, "lines", phase="Ready")

        db.change_registered_model(namespace, "lines", lambda row: setattr(row, "aliases", {"champion": 2}))
        moved = lambda: (lambda d: d if d and source_of(d) == "models:/lines/2" else None)(  # noqa: E731
            deployment(kube.api_client, namespace, "lines")
        )
        assert version_of(wait_for("the roll to version 2", moved)) == "2"
        st = until(store, namespace, "lines", phase="Updating")
        assert [v.source for v in st.versions] == ["models:/lines/1", "models:/lines/2"]

        apply(kube, namespace, following("ghost", "models:/lines@nobody"))
        failed = until(store, namespace, "ghost", phase="Failed")
        assert failed.reason == "ModelNotFound" and "nobody" in (failed.message or "")
        assert deployment(kube.api_client, namespace, "ghost") is None


def following(name: str, uri: str) -> dict[str, Any]:
    body = model(name, modelUri=uri)
    del body["spec"]["handler"]
    return body


def register(db: Store, project: str, name: str, versions: int, champion: int) -> None:
    """A registered model with `versions` versions and the alias champion, as the registry API stores it."""
    row = RegisteredModelRow(
        project=project,
        name=name,
        description=None,
        tags={},
        aliases={"champion": champion},
        last_version=0,
        creation_timestamp_ms=0,
        last_updated_timestamp_ms=0,
    )
    db.add_registered_model(row)

    def version(m: RegisteredModelRow, n: int) -> ModelVersionRow:
        return ModelVersionRow(
            registered_model_id=m.id,
            version=n,
            source=f"runs:/r{n}/model",
            storage_location=f"mlflow-artifacts:/r{n}/model",
            current_stage="None",
            status="READY",
            tags={},
            creation_timestamp_ms=n,
            last_updated_timestamp_ms=n,
        )

    for _ in range(versions):
        db.add_model_version(project, name, version)


def source_of(dep: dict[str, Any]) -> str | None:
    (main,) = dep["spec"]["template"]["spec"]["containers"]
    return next((e.get("value") for e in main["env"] if e["name"] == "RUNYARD_MODEL_SOURCE"), None)


def store_uid(kube: Cluster, namespace: str, name: str) -> str:
    uid = KubeResources(kube.api_client).get("Model", namespace, name).metadata.uid
    assert uid is not None
    return uid


def test_only_the_leader_writes_and_a_follower_takes_over(kube: Cluster, namespace: str) -> None:
    rollout = DeploymentController(kube)
    store = KubeResources(kube.api_client)
    with controller(kube, namespace, "mc-a") as a:
        wait_for("a leads", a.elector.is_leader)
        with controller(kube, namespace, "mc-b") as b:
            apply(kube, namespace, model("first"))
            wait_for("deployment", lambda: deployment(kube.api_client, namespace, "first"))
            rollout.roll(namespace, "first")
            until(store, namespace, "first", phase="Ready")
            assert not b.elector.is_leader() and b.writes() == 0  # it watched, and wrote nothing
            a.shutdown()  # releases the Lease
            wait_for("b leads", b.elector.is_leader)
            apply(kube, namespace, model("second"))
            wait_for("second deployment", lambda: deployment(kube.api_client, namespace, "second"))
            rollout.roll(namespace, "second")
            until(store, namespace, "second", phase="Ready")
            assert b.calls.counts().get("replace", 0) == 0  # nothing of "first" made again


def test_a_model_costs_four_writes(kube: Cluster, namespace: str) -> None:
    """Create the Deployment and the Service, the status Pending, then Ready: lists and watches are shared,
    reconciles read the caches."""
    rollout = DeploymentController(kube)
    store = KubeResources(kube.api_client)
    with controller(kube, namespace) as mc:
        wait_for("leadership", mc.elector.is_leader)
        names = [f"m-{i}" for i in range(3)]
        for name in names:
            apply(kube, namespace, model(name))
        for name in names:
            until(store, namespace, name, phase="Pending")
            rollout.roll(namespace, name)
        for name in names:
            until(store, namespace, name, phase="Ready")
        counts = mc.calls.counts()
        assert mc.writes() <= 4 * len(names), counts
        assert counts.get("get", 0) == 0, counts


def test_a_deployment_deleted_from_under_its_model_is_made_again(kube: Cluster, namespace: str) -> None:
    with controller(kube, namespace) as mc:
        wait_for("leadership", mc.elector.is_leader)
        apply(kube, namespace, model("iris"))
        first = wait_for("deployment", lambda: deployment(kube.api_client, namespace, "iris"))
        client.AppsV1Api(kube.api_client).delete_namespaced_deployment("iris", namespace)
        again = wait_for(
            "a new deployment",
            lambda: (
                (d := deployment(kube.api_client, namespace, "iris"))
                and d["metadata"]["uid"] != first["metadata"]["uid"]
                and d
            ),
        )
        assert version_of(again) == "1"
        assert mc.calls.counts().get("get", 0) == 1  # the one read that tells the Model is still there


class Follower:
    def is_leader(self) -> bool:
        return False


def test_a_model_whose_deleted_event_comes_late_gets_no_new_deployment(kube: Cluster, namespace: str) -> None:
    """The garbage collector's DELETED of the Deployment may arrive before the Model's own (two watches):
    the Model still cached then must not get its Deployment back."""
    with controller(kube, namespace) as leader:
        wait_for("leadership", leader.elector.is_leader)
        apply(kube, namespace, model("iris"))
        wait_for("deployment", lambda: deployment(kube.api_client, namespace, "iris"))
    api, calls = new_client(kube), CallCounter()
    mc = ModelController(
        KubeResources(api, calls),
        Follower(),
        api_client=api,
        namespaces=[namespace],
        image=IMAGE,
        server_url=SERVER_URL,
        calls=calls,
    )
    mc.start()
    try:
        models, deployments = mc._informers[("Model", namespace)], mc._informers[("Deployment", namespace)]
        stale = wait_for("model cached", lambda: models.get((namespace, "iris")))
        wait_for("deployment cached", lambda: deployments.get((namespace, "iris")))
        objects(kube).delete_namespaced_custom_object(
            "runyard.dev", "v1", namespace, "models", "iris", propagation_policy="Background"
        )
        wait_for("deployment uncached", lambda: deployments.get((namespace, "iris")) is None)
        wait_for("model uncached", lambda: models.get((namespace, "iris")) is None)
        models.put(stale)  # as if the Model's DELETED were still on its way
        calls.reset()
        mc._reconcile(("Model", namespace, "iris"))
        assert deployment(kube.api_client, namespace, "iris") is None
        counts = calls.counts()
        assert counts.get("get", 0) == 1 and counts.get("create", 0) == 0, counts
    finally:
        mc.stop()
        api.close()
