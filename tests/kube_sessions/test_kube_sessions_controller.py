"""Sessions on a cluster: a Session becomes a claim, a Service, a token Secret and a pod, all owned by it;
the pod's state flows into the Session's phase; stop deletes the pod and keeps the claim; a pod that fails
leaves the Session Failed until a start is asked for; idleness and lifetime stop it; only the leader writes.

The API server is a fake (kmock's KubernetesEmulator, extended: tests/kube/emulator.py) because no real
kube-apiserver can run here, and it has no kubelet: the tests play it by writing pod status (they skip
against a real cluster, which this module otherwise runs against unchanged when KUBECONFIG names one).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes import client
from tests.kube.cluster import Cluster
from tests.kube_operator.harness import Kubelet, secret_token, wait_for
from tests.kube_sessions.harness import PUBLIC_URL, apply, controller, listed, names, ready

from runyard.controller.kube.sessions import TOKEN_KEY, TOKEN_SECRET_ANNOTATION, claim_name, secret_name
from runyard.controller.kube.tokens import StoreTokens
from runyard.controller.sessions import RESTART_ANNOTATION
from runyard.core.errors import NotFound
from runyard.core.resources import Session
from runyard.runtime.kubernetes.pods import session_service_name
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


def session(store: KubeResources, namespace: str, name: str) -> Session:
    got = store.get("Session", namespace, name)
    assert isinstance(got, Session)
    return got


def phase(store: KubeResources, namespace: str, name: str, want: str) -> Session:
    def probe() -> Session | None:
        s = session(store, namespace, name)
        return s if s.status.phase == want else None

    return wait_for(f"session {name} {want}", probe)


def one_pod(kube: Cluster, namespace: str, but: str | None = None) -> str:
    def probe() -> str | None:
        found = [n for n in names(kube, namespace, "pod") if n != but]
        return found[0] if len(found) == 1 else None

    return wait_for("one session pod", probe)


def edit(store: KubeResources, namespace: str, name: str, stopped: bool | None = None, **notes: str) -> None:
    s = session(store, namespace, name)
    if stopped is not None:
        s.spec.stopped = stopped
    s.metadata.annotations.update(notes)
    store.replace(s)


def started(kube: Cluster, store: KubeResources, kubelet: Kubelet, namespace: str, name: str) -> str:
    pod = one_pod(kube, namespace)
    ready(kubelet, namespace, pod)
    phase(store, namespace, name, "Running")
    return pod


def test_a_session_gets_its_claim_service_secret_and_pod_owned_by_it(
    kube: Cluster, namespace: str, store: KubeResources
) -> None:
    with controller(kube, namespace) as ctl:
        apply(kube, namespace, "nb", resources={"cpu": "2", "memory": "4Gi", "gpu": 1})
        pod_name = one_pod(kube, namespace)
        s = phase(store, namespace, "nb", "Pending")
        calls = ctl.calls.counts()
    # a start costs: the claim, Service, Secret and pod, the Secret's name noted, one read, one status
    assert (calls.get("create"), calls.get("replace"), calls.get("get"), calls.get("patch")) == (4, 1, 1, 1)
    uid = s.uid
    (pod,) = listed(kube, namespace, "pod")
    (claim,) = listed(kube, namespace, "persistent_volume_claim")
    (service,) = listed(kube, namespace, "service")
    secrets = [o for o in listed(kube, namespace, "secret") if o["metadata"]["name"] == secret_name("nb")]
    for obj in (pod, claim, service, *secrets):
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            "Session",
            "nb",
            uid,
            True,
        )
        assert obj["metadata"]["labels"]["runyard.dev/kind"] == "Session"  # the Operator's pod watch skips it
    assert len(secrets) == 1 and s.metadata.annotations[TOKEN_SECRET_ANNOTATION] == secret_name("nb")
    main = pod["spec"]["containers"][0]
    limits = {"cpu": "2000m", "memory": str(4 << 30), "nvidia.com/gpu": "1"}
    assert main["resources"] == {"requests": limits, "limits": limits}
    token = next(e for e in main["env"] if e["name"] == "JUPYTER_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": secret_name("nb"), "key": TOKEN_KEY}
    assert "value" not in token
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["RUNYARD_SESSION_BASE_URL"] == f"/sessions/{namespace}/nb/"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["workspace"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["metadata"]["name"] == claim_name("nb")
    assert service["spec"]["selector"] == {"runyard.dev/session": "nb", "runyard.dev/project": namespace}
    assert pod["metadata"]["labels"]["runyard.dev/session"] == "nb"
    assert s.status.run == pod_name and s.status.url == f"{PUBLIC_URL}/sessions/{namespace}/nb/"
    assert s.status.port == 8888 and s.status.startedAt is not None


def test_a_session_named_as_a_model_gets_its_own_service(kube: Cluster, namespace: str) -> None:
    """A Model's Service is its bare name (its stable URL); a Session of that name must not share it."""
    model_service = {
        "metadata": {"name": "iris"},
        "spec": {"selector": {"runyard.dev/model": "iris"}, "ports": [{"port": 80}]},
    }
    client.CoreV1Api(kube.api_client).create_namespaced_service(namespace, model_service)
    with controller(kube, namespace):
        apply(kube, namespace, "iris")
        one_pod(kube, namespace)
        services = {o["metadata"]["name"]: o for o in listed(kube, namespace, "service")}
    assert sorted(services) == sorted(["iris", session_service_name("iris")])
    mine = services[session_service_name("iris")]
    assert mine["metadata"]["ownerReferences"][0]["kind"] == "Session"
    assert mine["spec"]["selector"] == {"runyard.dev/session": "iris", "runyard.dev/project": namespace}


def test_unschedulable_is_pending_running_is_starting_and_ready_is_running(
    kube: Cluster, namespace: str, store: KubeResources, kubelet: Kubelet
) -> None:
    with controller(kube, namespace):
        apply(kube, namespace, "nb")
        pod = one_pod(kube, namespace)
        kubelet.unschedulable(namespace, pod, "0/3 nodes have enough nvidia.com/gpu")
        said = "Unschedulable: 0/3 nodes have enough nvidia.com/gpu"
        wait_for("why it waits", lambda: session(store, namespace, "nb").status.message == said)
        assert session(store, namespace, "nb").status.phase == "Pending"
        ready(kubelet, namespace, pod, is_ready=False)
        assert phase(store, namespace, "nb", "Starting").status.readyAt is None
        ready(kubelet, namespace, pod)
        s = phase(store, namespace, "nb", "Running")
    assert s.status.reason == "Ready" and s.status.readyAt is not None
    assert s.status.message == f"open {PUBLIC_URL}/sessions/{namespace}/nb/"


def test_stop_deletes_the_pod_and_keeps_the_claim_and_a_start_mounts_it_again(
    kube: Cluster, namespace: str, store: KubeResources, kubelet: Kubelet
) -> None:
    with controller(kube, namespace):
        apply(kube, namespace, "nb")
        first = started(kube, store, kubelet, namespace, "nb")
        edit(store, namespace, "nb", stopped=True)
        s = phase(store, namespace, "nb", "Stopped")
        assert s.status.reason == "Stopped" and "kept" in (s.status.message or "")
        assert names(kube, namespace, "pod") == []
        assert names(kube, namespace, "persistent_volume_claim") == [claim_name("nb")]
        edit(store, namespace, "nb", stopped=False)
        second = one_pod(kube, namespace)
        ready(kubelet, namespace, second)
        phase(store, namespace, "nb", "Running")
    assert second != first
    (pod,) = listed(kube, namespace, "pod")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["workspace"]["persistentVolumeClaim"]["claimName"] == claim_name("nb")
    assert names(kube, namespace, "persistent_volume_claim") == [claim_name("nb")]


def test_a_start_while_the_stopped_pod_terminates_waits_for_it(
    kube: Cluster, namespace: str, store: KubeResources, kubelet: Kubelet
) -> None:
    """On a cluster a deleted pod lingers until its kubelet stopped it (played here with a finalizer)."""
    core = client.CoreV1Api(kube.api_client)
    with controller(kube, namespace):
        apply(kube, namespace, "nb")
        first = started(kube, store, kubelet, namespace, "nb")
        core.patch_namespaced_pod(first, namespace, {"metadata": {"finalizers": ["test/kubelet"]}})
        edit(store, namespace, "nb", stopped=True)
        assert phase(store, namespace, "nb", "Stopping").status.reason == "Stopped"
        edit(store, namespace, "nb", stopped=False)
        wait_for("waiting", lambda: "previous pod" in (session(store, namespace, "nb").status.message or ""))
        assert names(kube, namespace, "pod") == [first]
        core.patch_namespaced_pod(first, namespace, {"metadata": {"finalizers": None}})
        second = one_pod(kube, namespace, but=first)
        wait_for("only the new pod", lambda: names(kube, namespace, "pod") == [second])
        phase(store, namespace, "nb", "Pending")


def test_a_failed_pod_fails_the_session_without_a_loop_until_a_start_is_asked(
    kube: Cluster, namespace: str, store: KubeResources, kubelet: Kubelet
) -> None:
    with controller(kube, namespace) as ctl:
        apply(kube, namespace, "nb")
        pod = started(kube, store, kubelet, namespace, "nb")
        kubelet.exited(namespace, pod, 1)
        s = phase(store, namespace, "nb", "Failed")
        assert s.status.reason == "Error" and "runyard session start nb" in (s.status.message or "")
        ctl.controller.resync()
        time.sleep(0.5)
        assert names(kube, namespace, "pod") == [pod]  # kept (its log), not replaced
        asked = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        edit(store, namespace, "nb", **{RESTART_ANNOTATION: asked})
        again = one_pod(kube, namespace, but=pod)
        wait_for("the failed pod deleted", lambda: names(kube, namespace, "pod") == [again])
        phase(store, namespace, "nb", "Pending")


def test_idleness_stops_it_unless_the_proxy_saw_activity(
    kube: Cluster, namespace: str, store: KubeResources, kubelet: Kubelet
) -> None:
    with controller(kube, namespace) as ctl:
        apply(kube, namespace, "nb", idleTimeoutSeconds=600)
        started(kube, store, kubelet, namespace, "nb")
        ctl.clock.advance(580)  # within warn_lead (60 s) of the timeout: warned, still running
        ctl.controller.resync()
        wait_for("idle warning", lambda: session(store, namespace, "nb").status.idleWarnedAt is not None)
        ctl.clock.advance(10)  # the server's proxy forwards a request, and writes lastActivity
        store.patch_status("Session", namespace, "nb", {"lastActivity": ctl.clock().isoformat()})
        seen = ctl.controller.cached
        wait_for("the proxy's write watched", lambda: (c := seen(namespace, "nb")) and c.status.lastActivity)
        ctl.clock.advance(290)
        ctl.controller.resync()
        wait_for("warning cleared", lambda: session(store, namespace, "nb").status.idleWarnedAt is None)
        assert session(store, namespace, "nb").status.phase == "Running"
        ctl.clock.advance(320)  # 610 s since the last activity
        ctl.controller.resync()
        s = phase(store, namespace, "nb", "Stopped")
    assert s.spec.stopped and s.status.reason == "Idle"
    assert names(kube, namespace, "pod") == [] and names(kube, namespace, "persistent_volume_claim")


def test_max_lifetime_stops_it_however_busy(
    kube: Cluster, namespace: str, store: KubeResources, kubelet: Kubelet
) -> None:
    with controller(kube, namespace) as ctl:
        apply(kube, namespace, "nb", maxLifetimeSeconds=3600)
        started(kube, store, kubelet, namespace, "nb")
        ctl.clock.advance(3600)
        store.patch_status("Session", namespace, "nb", {"lastActivity": ctl.clock().isoformat()})
        s = phase(store, namespace, "nb", "Stopped")
    assert s.spec.stopped and s.status.reason == "MaxLifetime" and "lifetime" in (s.status.message or "")


def test_deleting_the_session_deletes_what_it_owns(
    kube: Cluster, namespace: str, store: KubeResources, kubelet: Kubelet
) -> None:
    with controller(kube, namespace):
        apply(kube, namespace, "nb")
        started(kube, store, kubelet, namespace, "nb")
        store.delete("Session", namespace, "nb")

        def gone() -> bool:
            try:
                store.get("Session", namespace, "nb")
                return False
            except NotFound:
                pass
            plurals = ("pod", "service", "persistent_volume_claim")
            left = [n for p in plurals for n in names(kube, namespace, p)]
            return not left and secret_name("nb") not in names(kube, namespace, "secret")

        wait_for("its objects collected", gone)


def test_its_pod_gets_a_runyard_token_in_a_secret_revoked_when_the_session_is_deleted(
    kube: Cluster, namespace: str, store: KubeResources, tmp_path: Path
) -> None:
    """The init container fetches the snapshot, and the notebook reports to tracking, with it."""
    db = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    snapshot = "sha256:" + "cd" * 32
    with controller(kube, namespace, tokens=StoreTokens(db)):
        apply(kube, namespace, "nb", snapshot=snapshot)
        name = one_pod(kube, namespace)
        pod = next(o for o in listed(kube, namespace, "pod") if o["metadata"]["name"] == name)
        fetch, main = pod["spec"]["initContainers"][0], pod["spec"]["containers"][0]
        assert fetch["name"] == "snapshot" and snapshot in fetch["command"]
        token = secret_token(kube, namespace, fetch["env"])
        assert secret_token(kube, namespace, main["env"]) == token
        row = db.token_by_hash(hash_secret(token))
        assert row is not None and (row.role, row.project, row.run_uid) == ("run", namespace, pod_owner(pod))
        store.delete("Session", namespace, "nb")
        wait_for("revoked", lambda: db.token_by_hash(hash_secret(token)) is None)


def pod_owner(pod: dict) -> str:
    (owner,) = pod["metadata"]["ownerReferences"]
    return owner["uid"]


def test_only_the_leader_writes(kube: Cluster, namespace: str, store: KubeResources) -> None:
    with controller(kube, namespace, leads=False) as ctl:
        apply(kube, namespace, "nb")
        time.sleep(1.0)
        assert names(kube, namespace, "pod") == []
        assert session(store, namespace, "nb").status.phase is None
        writes = ("create", "replace", "patch", "delete")
        assert not any(ctl.calls.counts().get(v) for v in writes)
        ctl.elector.leads = True
        ctl.controller.leading(True)
        one_pod(kube, namespace)
        phase(store, namespace, "nb", "Pending")


def test_a_new_leader_takes_over_its_pod_and_token_rather_than_starting_again(
    kube: Cluster, namespace: str, store: KubeResources, kubelet: Kubelet
) -> None:
    with controller(kube, namespace):
        apply(kube, namespace, "nb")
        pod = started(kube, store, kubelet, namespace, "nb")
    (secret,) = [o for o in listed(kube, namespace, "secret") if o["metadata"]["name"] == secret_name("nb")]
    # the status lost the pod (a write that never came): it is found by its owner
    store.patch_status("Session", namespace, "nb", {"run": None, "runUid": None})
    with controller(kube, namespace) as ctl:
        wait_for("the pod taken over", lambda: session(store, namespace, "nb").status.run == pod)
        ctl.controller.resync()
        time.sleep(0.5)
        assert names(kube, namespace, "pod") == [pod]
        assert session(store, namespace, "nb").status.phase == "Running"
    (kept,) = [o for o in listed(kube, namespace, "secret") if o["metadata"]["name"] == secret_name("nb")]
    assert kept["data"] == secret["data"]  # the proxy's token still opens it
