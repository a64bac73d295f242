"""The operator end to end: an Experiment applied as kubectl would gets a Run and a Pod; the pod's state
flows back into the Run and the Experiment; a pod deleted from under its run is ProcessLost; of two
operators only the leader acts; watches resume and re-list on 410 without doubles; a Run costs <= 5 calls.

The API server is a fake (kmock's KubernetesEmulator, extended: tests/kube/emulator.py) because no real
kube-apiserver can run here; this module runs unchanged against a real cluster when KUBECONFIG names one
(the tests that play the kubelet, drop watches or compact the history skip there).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from kubernetes import client
from tests.kube.cluster import Cluster
from tests.kube.emulator import Route, error
from tests.kube_operator.conftest import make_namespace
from tests.kube_operator.harness import Kubelet, experiment, operator, secret_token, wait_for

from runyard.controller.kube.tokens import StoreTokens
from runyard.core.errors import NotFound
from runyard.core.resources import Experiment, Run
from runyard.services.auth import hash_secret
from runyard.store import Store
from runyard.store.kube.resources import KubeResources


@pytest.fixture
def kubelet(kube: Cluster) -> Kubelet:
    if kube.emulator is None:
        pytest.skip("plays the kubelet: only against the emulator")
    return Kubelet(kube.api_client)


@pytest.fixture
def store(kube: Cluster) -> KubeResources:
    return KubeResources(kube.api_client)


def apply(kube: Cluster, namespace: str, body: dict) -> None:
    client.CustomObjectsApi(kube.api_client).create_namespaced_custom_object(
        "runyard.dev", "v1", namespace, "experiments", body
    )


def pods(kube: Cluster, namespace: str) -> list[dict]:
    reply = client.CoreV1Api(kube.api_client).list_namespaced_pod(namespace, _preload_content=False)
    return json.loads(reply.data)["items"]


def pod_of(kube: Cluster, namespace: str, name: str) -> dict | None:
    return next((p for p in pods(kube, namespace) if p["metadata"]["name"] == name), None)


def done(store: KubeResources, kind: type, namespace: str, name: str, phase: str) -> None:
    wait_for(f"{kind.__name__} {name} {phase}", lambda: phase_of(store, kind, namespace, name) == phase)


def phase_of(store: KubeResources, kind: type, namespace: str, name: str) -> str | None:
    try:
        res = store.get(kind, namespace, name)
    except NotFound:
        return None
    return res.status.phase


def test_an_experiment_runs_to_succeeded_in_five_calls(
    kube: Cluster, namespace: str, tmp_path: Path, kubelet: Kubelet, store: KubeResources
) -> None:
    with operator(kube, namespace, tmp_path, project_objects=False) as op:
        wait_for("leadership", op.elector.is_leader)
        shared = {v: op.calls.counts().get(v, 0) for v in ("list", "watch")}
        names = [f"train-{i}" for i in range(3)]
        for name in names:
            apply(kube, namespace, experiment(name, resources={"cpu": "500m", "memory": "1Gi"}))
        for name in names:
            pod = wait_for(f"pod of {name}", lambda name=name: pod_of(kube, namespace, f"{name}-1"))
            run = store.get(Run, namespace, name)
            assert [(o.kind, o.name) for o in run.metadata.ownerReferences] == [("Experiment", name)]
            owner = pod["metadata"]["ownerReferences"][0]
            assert (owner["kind"], owner["name"], owner["uid"]) == ("Run", name, run.metadata.uid)
            main = pod["spec"]["containers"][0]
            assert main["resources"]["limits"] == {"cpu": "500m", "memory": str(1 << 30)}
            kubelet.running(namespace, f"{name}-1")
        for name in names:
            done(store, Run, namespace, name, "Running")
            assert phase_of(store, Experiment, namespace, name) is None  # its Run shows Running
            kubelet.exited(namespace, f"{name}-1", 0)
        for name in names:
            done(store, Experiment, namespace, name, "Succeeded")
            run = store.get(Run, namespace, name)
            assert (run.status.phase, run.status.exitCode, len(run.status.attempts)) == ("Succeeded", 0, 1)
        counts = op.calls.counts()
        assert op.writes() <= 5 * len(names), counts
        assert (counts.get("create"), counts.get("patch")) == (2 * len(names), 3 * len(names))
        assert {v: counts.get(v, 0) for v in ("list", "watch")} == shared  # the watches stayed up
        assert op.operator.relists == 0


def test_failures_reach_the_run_and_the_experiment(
    kube: Cluster, namespace: str, tmp_path: Path, kubelet: Kubelet, store: KubeResources
) -> None:
    with operator(kube, namespace, tmp_path, project_objects=False) as op:
        wait_for("leadership", op.elector.is_leader)
        for name in ("fails", "oom", "lost", "pending"):
            apply(kube, namespace, experiment(name))
        for name in ("fails", "oom", "lost", "pending"):
            wait_for(f"pod of {name}", lambda name=name: pod_of(kube, namespace, f"{name}-1"))
        kubelet.exited(namespace, "fails-1", 3)
        kubelet.exited(namespace, "oom-1", 137, reason="OOMKilled")
        kubelet.running(namespace, "lost-1")
        kubelet.unschedulable(
            namespace, "pending-1", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
        )
        done(store, Run, namespace, "lost", "Running")
        client.CoreV1Api(kube.api_client).delete_namespaced_pod("lost-1", namespace)
        for name in ("fails", "oom", "lost"):
            done(store, Experiment, namespace, name, "Failed")
        runs = {n: store.get(Run, namespace, n).status for n in ("fails", "oom", "lost")}
        assert (runs["fails"].reason, runs["fails"].exitCode) == ("Error", 3)
        assert (runs["oom"].reason, runs["oom"].exitCode) == ("OOMKilled", 137)
        assert (runs["lost"].reason, runs["lost"].message) == ("ProcessLost", "pod deleted")
        pending = wait_for("unschedulable", lambda: store.get(Run, namespace, "pending").status.message)
        assert "Insufficient nvidia.com/gpu" in pending
        assert store.get(Run, namespace, "pending").status.reason == "Unschedulable"
        assert pod_of(kube, namespace, "lost-1") is None  # not launched again: the Run failed
        events = client.CoreV1Api(kube.api_client).list_namespaced_event(namespace).items
        warned = {(e.involved_object.kind, e.involved_object.name, e.reason, e.type) for e in events}
        assert {
            ("Run", "lost", "ProcessLost", "Warning"),
            ("Run", "pending", "Unschedulable", "Warning"),
        } <= warned


def test_only_the_leader_acts_and_a_follower_takes_over(
    kube: Cluster, namespace: str, tmp_path: Path, kubelet: Kubelet, store: KubeResources
) -> None:
    with operator(kube, namespace, tmp_path, "op-a", project_objects=False) as a:
        wait_for("a leads", a.elector.is_leader)
        with operator(kube, namespace, tmp_path, "op-b", project_objects=False) as b:
            for i in range(3):
                apply(kube, namespace, experiment(f"exp-{i}"))
            for i in range(3):
                wait_for(f"pod {i}", lambda i=i: pod_of(kube, namespace, f"exp-{i}-1"))
                kubelet.running(namespace, f"exp-{i}-1")
            for i in range(3):
                done(store, Run, namespace, f"exp-{i}", "Running")
            assert not b.elector.is_leader() and b.writes() == 0  # it watched, and wrote nothing
            a.shutdown()  # releases the Lease: b leads at its next renewal
            wait_for("b leads", b.elector.is_leader)
            for i in range(3):
                kubelet.exited(namespace, f"exp-{i}-1", 0)
            for i in range(3):
                done(store, Experiment, namespace, f"exp-{i}", "Succeeded")
            assert b.calls.counts().get("create", 0) == 0  # nothing launched twice
        assert sorted(p["metadata"]["name"] for p in pods(kube, namespace)) == [
            "exp-0-1",
            "exp-1-1",
            "exp-2-1",
        ]


def test_watches_resume_and_relist_on_410_without_doubles(
    kube: Cluster, namespace: str, tmp_path: Path, kubelet: Kubelet, store: KubeResources
) -> None:
    assert kube.emulator is not None
    with operator(kube, namespace, tmp_path, project_objects=False) as op:
        wait_for("leadership", op.elector.is_leader)
        apply(kube, namespace, experiment("first"))
        wait_for("first pod", lambda: pod_of(kube, namespace, "first-1"))
        kube.emulator.drop_watches()  # a dropped connection: resumed from the last version seen
        apply(kube, namespace, experiment("second"))
        wait_for("second pod", lambda: pod_of(kube, namespace, "second-1"))
        assert op.operator.relists == 0
        kube.emulator.compact()  # the history is gone: a resumed watch gets 410 and lists again
        kube.emulator.drop_watches()
        apply(kube, namespace, experiment("third"))
        kubelet.running(namespace, "first-1")
        wait_for("third pod", lambda: pod_of(kube, namespace, "third-1"))
        done(store, Run, namespace, "first", "Running")
        assert op.operator.relists >= 1
        creates = op.calls.counts().get("create", 0)
        assert creates == 6  # three Runs and three pods: nothing made twice
        names = sorted(p["metadata"]["name"] for p in pods(kube, namespace))
        assert names == ["first-1", "second-1", "third-1"]


def test_a_project_namespace_gets_its_objects_once(kube: Cluster, namespace: str, tmp_path: Path) -> None:
    with operator(kube, namespace, tmp_path) as op:
        wait_for("leadership", op.elector.is_leader)
        apply(kube, namespace, experiment("one"))
        apply(kube, namespace, experiment("two"))
        core = client.CoreV1Api(kube.api_client)
        wait_for("quota", lambda: core.list_namespaced_resource_quota(namespace).items)
        wait_for(
            "run two", lambda: phase_of(KubeResources(kube.api_client), Run, namespace, "two") is not None
        )
        assert [q.metadata.name for q in core.list_namespaced_resource_quota(namespace).items] == ["runyard"]
        assert core.list_namespaced_limit_range(namespace).items
        assert "runyard-spark" in [
            s.metadata.name for s in core.list_namespaced_service_account(namespace).items
        ]


def test_a_pod_the_api_refuses_fails_the_run_saying_why(
    kube: Cluster, namespace: str, tmp_path: Path, kubelet: Kubelet, store: KubeResources
) -> None:
    assert kube.emulator is not None

    def forbid_pods(verb: str, route: Route, body: object) -> None:
        if verb == "POST" and route.plural == "pods":
            raise error(403, "Forbidden", "pods is forbidden: exceeded quota: runyard, requested: cpu=64")

    kube.emulator.before_write = forbid_pods
    with operator(kube, namespace, tmp_path, project_objects=False) as op:
        wait_for("leadership", op.elector.is_leader)
        apply(kube, namespace, experiment("denied"))
        done(store, Experiment, namespace, "denied", "Failed")
        run = store.get(Run, namespace, "denied")
        assert run.status.reason == "LaunchFailed" and "exceeded quota" in (run.status.message or "")


def test_work_seen_while_a_renewal_is_late_is_done_once_it_leads_again(
    kube: Cluster, namespace: str, tmp_path: Path, store: KubeResources
) -> None:
    """A leader whose renewal is late stops acting (is_leader false) without the elector reporting a
    change of leadership: what it saw meanwhile must not be dropped."""
    with operator(kube, namespace, tmp_path, project_objects=False) as op:
        wait_for("leadership", op.elector.is_leader)
        late = threading.Event()
        renewed = op.elector.is_leader
        op.elector.is_leader = lambda: not late.is_set() and renewed()  # type: ignore[method-assign]
        late.set()
        apply(kube, namespace, experiment("meanwhile"))
        time.sleep(1.0)
        assert phase_of(store, Run, namespace, "meanwhile") is None  # not acting while late
        late.clear()
        wait_for("its run", lambda: pod_of(kube, namespace, "meanwhile-1"))


def test_a_stop_ends_the_pod_and_cancels_and_a_delete_takes_everything(
    kube: Cluster, namespace: str, tmp_path: Path, kubelet: Kubelet, store: KubeResources
) -> None:
    custom = client.CustomObjectsApi(kube.api_client)
    with operator(kube, namespace, tmp_path, project_objects=False) as op:
        wait_for("leadership", op.elector.is_leader)
        apply(kube, namespace, experiment("stopped"))
        wait_for("its pod", lambda: pod_of(kube, namespace, "stopped-1"))
        kubelet.running(namespace, "stopped-1")
        done(store, Run, namespace, "stopped", "Running")
        patch = {"spec": {"stopRequested": True}}  # what `runyard stop` writes
        custom.patch_namespaced_custom_object("runyard.dev", "v1", namespace, "runs", "stopped", patch)
        done(store, Experiment, namespace, "stopped", "Cancelled")  # its pod on no node: deleted
        assert pod_of(kube, namespace, "stopped-1") is None
        assert store.get(Run, namespace, "stopped").status.reason == "Stopped"
        apply(kube, namespace, experiment("deleted"))
        wait_for("its pod", lambda: pod_of(kube, namespace, "deleted-1"))
        custom.delete_namespaced_custom_object("runyard.dev", "v1", namespace, "experiments", "deleted")
        wait_for("its run gone", lambda: phase_of(store, Run, namespace, "deleted") is None and "gone")
        wait_for("its pod gone", lambda: pod_of(kube, namespace, "deleted-1") is None)
        time.sleep(0.3)
        assert pod_of(kube, namespace, "deleted-1") is None  # and not launched again
        assert phase_of(store, Run, namespace, "deleted") is None
        apply(kube, namespace, experiment("run-deleted"))
        wait_for("its run", lambda: phase_of(store, Run, namespace, "run-deleted"))
        custom.delete_namespaced_custom_object("runyard.dev", "v1", namespace, "runs", "run-deleted")
        done(store, Experiment, namespace, "run-deleted", "Cancelled")
        assert store.get(Experiment, namespace, "run-deleted").status.reason == "RunDeleted"
        assert phase_of(store, Run, namespace, "run-deleted") is None  # an Experiment runs once


def test_a_failed_attempt_is_retried_in_a_new_pod(
    kube: Cluster, namespace: str, tmp_path: Path, kubelet: Kubelet, store: KubeResources
) -> None:
    with operator(kube, namespace, tmp_path, project_objects=False) as op:
        wait_for("leadership", op.elector.is_leader)
        apply(kube, namespace, experiment("flaky", retryPolicy={"maxRetries": 1, "backoffSeconds": 0.2}))
        wait_for("attempt 1", lambda: pod_of(kube, namespace, "flaky-1"))
        kubelet.exited(namespace, "flaky-1", 1)
        wait_for("attempt 2", lambda: pod_of(kube, namespace, "flaky-2"))
        kubelet.exited(namespace, "flaky-2", 0)
        done(store, Experiment, namespace, "flaky", "Succeeded")
        attempts = store.get(Run, namespace, "flaky").status.attempts
        assert [(a.attempt, a.exitCode) for a in attempts] == [(1, 1), (2, 0)]


def test_every_namespace_or_the_listed_ones(
    kube: Cluster, namespace: str, tmp_path: Path, store: KubeResources
) -> None:
    other, unwatched = make_namespace(kube), make_namespace(kube)
    try:
        scopes = {"namespaces": [namespace, other]} if kube.emulator is None else {"namespaces": None}
        with operator(kube, namespace, tmp_path, project_objects=False, **scopes) as op:
            wait_for("leadership", op.elector.is_leader)
            for ns in (namespace, other):
                apply(kube, ns, experiment("here"))
            for ns in (namespace, other):
                wait_for(f"pod in {ns}", lambda ns=ns: pod_of(kube, ns, "here-1"))
        with operator(kube, namespace, tmp_path, "op-2", project_objects=False) as op:
            wait_for("leadership", op.elector.is_leader)
            apply(kube, unwatched, experiment("elsewhere"))
            time.sleep(0.5)
            assert phase_of(store, Run, unwatched, "elsewhere") is None
    finally:
        for ns in (other, unwatched):
            client.CoreV1Api(kube.api_client).delete_namespace(ns)


def test_a_pod_gets_a_run_token_in_a_secret_revoked_when_the_run_ends(
    kube: Cluster, namespace: str, tmp_path: Path, kubelet: Kubelet, store: KubeResources
) -> None:
    db = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    snapshot = "sha256:" + "ab" * 32
    with operator(kube, namespace, tmp_path, project_objects=False, tokens=StoreTokens(db)) as op:
        wait_for("leadership", op.elector.is_leader)
        apply(kube, namespace, experiment("tokened", snapshot=snapshot))
        pod = wait_for("its pod", lambda: pod_of(kube, namespace, "tokened-1"))
        fetch = pod["spec"]["initContainers"][0]
        assert fetch["name"] == "snapshot" and snapshot in fetch["command"]
        token = secret_token(kube, namespace, fetch["env"])
        row = db.token_by_hash(hash_secret(token))
        assert row is not None and (row.role, row.project) == ("run", namespace)
        assert all(e.get("value") != token for e in pod["spec"]["containers"][0]["env"])  # not in the spec
        kubelet.running(namespace, "tokened-1")
        kubelet.exited(namespace, "tokened-1", 0)
        done(store, Run, namespace, "tokened", "Succeeded")
        wait_for("revoked", lambda: db.token_by_hash(hash_secret(token)) is None)


def test_a_new_leader_revokes_the_tokens_of_runs_deleted_while_none_watched(
    kube: Cluster, namespace: str, tmp_path: Path
) -> None:
    """A Run deleted (with its Experiment) while no operator ran keeps an unrevoked token, since it never
    ended; the next leader revokes it, and leaves the tokens of the Runs it has."""
    db = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    tokens = StoreTokens(db)
    meta = {"name": "lost", "project": namespace, "uid": "uid-of-a-deleted-run"}
    lost = tokens.issue(Run.model_validate({"metadata": meta, "spec": {"command": "true"}}), 1)
    with operator(kube, namespace, tmp_path, project_objects=False, tokens=tokens) as op:
        wait_for("leadership", op.elector.is_leader)
        wait_for("the lost run's token revoked", lambda: db.token_by_hash(hash_secret(lost)) is None)
        apply(kube, namespace, experiment("kept", snapshot="sha256:" + "ab" * 32))
        pod = wait_for("its pod", lambda: pod_of(kube, namespace, "kept-1"))
        token = secret_token(kube, namespace, pod["spec"]["initContainers"][0]["env"])
        assert op.operator.sweep_tokens() == 0
        assert db.token_by_hash(hash_secret(token)) is not None
