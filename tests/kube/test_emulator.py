"""The emulator keeps the API server's promises that runyard relies on (resourceVersion, 409, /status, watch
from a version, 410 Gone, selectors, garbage collection), so tests built on it mean something.

The API server here is a fake (kmock's KubernetesEmulator, extended: tests/kube/emulator.py) because no real
kube-apiserver can run here; this module runs unchanged against a real cluster when KUBECONFIG names one
(the tests that need the emulator's own controls skip then). Objects are runyard.dev custom objects in a
namespace; against a real cluster the CRDs must be installed (`runyard crds | kubectl apply -f -`).
"""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client, watch
from tests.kube.cluster import Cluster, cluster, install_crds
from tests.kube.emulator import Route, error

G, V = "runyard.dev", "v1"


def experiment(name: str, labels: dict[str, str] | None = None, **spec: object) -> dict:
    meta: dict = {"name": name, "labels": labels or {}}
    return {"apiVersion": f"{G}/{V}", "kind": "Experiment", "metadata": meta, "spec": spec}


@pytest.fixture
def api(kube: Cluster, ns: str) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube.api_client)


def test_every_write_bumps_one_global_version_and_stale_writes_conflict(
    api: client.CustomObjectsApi, ns: str
) -> None:
    a = api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("a", command="x"))
    b = api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("b", command="y"))
    assert int(b["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])
    assert a["metadata"]["uid"] and a["metadata"]["creationTimestamp"] and a["metadata"]["generation"] == 1
    listed = api.list_namespaced_custom_object(G, V, ns, "experiments")
    assert int(listed["metadata"]["resourceVersion"]) >= int(b["metadata"]["resourceVersion"])

    a["spec"]["command"] = "z"
    replaced = api.replace_namespaced_custom_object(G, V, ns, "experiments", "a", a)
    assert replaced["metadata"]["generation"] == 2
    with pytest.raises(client.ApiException) as stale:
        api.replace_namespaced_custom_object(G, V, ns, "experiments", "a", a)  # a's version is now stale
    assert stale.value.status == 409
    with pytest.raises(client.ApiException) as exists:
        api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("a"))
    assert exists.value.status == 409 and "AlreadyExists" in exists.value.body
    with pytest.raises(client.ApiException) as missing:
        api.get_namespaced_custom_object(G, V, ns, "experiments", "nope")
    assert missing.value.status == 404


def test_status_is_written_only_through_its_subresource(api: client.CustomObjectsApi, ns: str) -> None:
    obj = experiment("s", command="x")
    obj["status"] = {"phase": "Succeeded"}
    created = api.create_namespaced_custom_object(G, V, ns, "experiments", obj)
    assert "status" not in created or not created["status"]

    written = api.patch_namespaced_custom_object_status(
        G, V, ns, "experiments", "s", {"status": {"phase": "Running"}, "spec": {"command": "ignored"}}
    )
    assert written["status"] == {"phase": "Running"} and written["spec"]["command"] == "x"
    assert written["metadata"]["generation"] == 1  # status writes do not bump the generation

    written["spec"]["command"] = "y"
    written["status"] = {"phase": "Failed"}
    main = api.replace_namespaced_custom_object(G, V, ns, "experiments", "s", written)
    assert main["status"] == {"phase": "Running"} and main["spec"]["command"] == "y"


def test_list_filters_by_label_selector(api: client.CustomObjectsApi, ns: str) -> None:
    api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("l1", {"team": "a", "tier": "x"}))
    api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("l2", {"team": "b"}))

    def names(selector: str) -> list[str]:
        items = api.list_namespaced_custom_object(G, V, ns, "experiments", label_selector=selector)["items"]
        return sorted(i["metadata"]["name"] for i in items)

    assert names("team=a") == ["l1"]
    assert names("team!=a") == ["l2"]
    assert names("team in (a,b)") == ["l1", "l2"]
    assert names("tier") == ["l1"] and names("!tier") == ["l2"]


def test_watch_from_a_version_replays_what_followed(api: client.CustomObjectsApi, ns: str) -> None:
    first = api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("w1"))
    api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("w2"))
    api.delete_namespaced_custom_object(G, V, ns, "experiments", "w1")
    events = list(
        watch.Watch().stream(
            api.list_namespaced_custom_object,
            G,
            V,
            ns,
            "experiments",
            resource_version=first["metadata"]["resourceVersion"],
            timeout_seconds=1,
        )
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w2"),
        ("DELETED", "w1"),
    ]


def test_a_watch_from_before_the_kept_history_gets_410(
    kube: Cluster, api: client.CustomObjectsApi, ns: str
) -> None:
    if kube.emulator is None:
        pytest.skip("compaction is the emulator's control")
    first = api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("c1"))
    api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("c2"))
    kube.emulator.compact()
    with pytest.raises(client.ApiException) as gone:
        stream = watch.Watch().stream(
            api.list_namespaced_custom_object,
            G,
            V,
            ns,
            "experiments",
            resource_version=first["metadata"]["resourceVersion"],
            timeout_seconds=1,
        )
        list(stream)
    assert gone.value.status == 410


def test_a_live_watch_sees_writes_and_ends_when_dropped(
    kube: Cluster, api: client.CustomObjectsApi, ns: str
) -> None:
    if kube.emulator is None:
        pytest.skip("dropping watches is the emulator's control")
    listed = api.list_namespaced_custom_object(G, V, ns, "experiments")
    emulator = kube.emulator

    def later() -> None:
        time.sleep(0.2)
        api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("live"))
        time.sleep(0.2)
        emulator.drop_watches()

    threading.Thread(target=later).start()
    resp = api.list_namespaced_custom_object(
        G,
        V,
        ns,
        "experiments",
        watch=True,
        resource_version=listed["metadata"]["resourceVersion"],
        _preload_content=False,
    )
    started = time.monotonic()
    lines = [line for line in resp.read().splitlines() if line]
    assert len(lines) == 1 and b'"live"' in lines[0]
    assert time.monotonic() - started < 5


def test_deleting_an_owner_deletes_its_dependents_and_a_collection_by_label(
    kube: Cluster, api: client.CustomObjectsApi, ns: str
) -> None:
    core = client.CoreV1Api(kube.api_client)
    run = api.create_namespaced_custom_object(G, V, ns, "runs", {**experiment("r1"), "kind": "Run"})
    owner = {
        "apiVersion": f"{G}/{V}",
        "kind": "Run",
        "name": "r1",
        "uid": run["metadata"]["uid"],
        "controller": True,
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "r1-1", "ownerReferences": [owner]},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }
    core.create_namespaced_pod(ns, pod)
    api.delete_namespaced_custom_object(G, V, ns, "runs", "r1")
    for _ in range(100):  # a real garbage collector is asynchronous
        if not core.list_namespaced_pod(ns).items:
            break
        time.sleep(0.1)
    assert core.list_namespaced_pod(ns).items == []

    core.create_namespaced_pod(ns, {**pod, "metadata": {"name": "other", "labels": {"keep": "no"}}})
    core.create_namespaced_pod(ns, {**pod, "metadata": {"name": "kept", "labels": {"keep": "yes"}}})
    core.delete_collection_namespaced_pod(ns, label_selector="keep=no")
    assert [p.metadata.name for p in core.list_namespaced_pod(ns).items] == ["kept"]


def test_with_the_crds_installed_unknown_fields_are_pruned_and_bad_values_refused(
    kube: Cluster, api: client.CustomObjectsApi, ns: str
) -> None:
    install_crds(kube.api_client, wait=kube.emulator is None)
    obj = experiment("p", command="echo", noSuchField=1)
    obj["spec"]["retryPolicy"] = {"maxRetries": 2, "extra": True}
    created = api.create_namespaced_custom_object(G, V, ns, "experiments", obj)
    assert created["spec"] == {"command": "echo", "retryPolicy": {"maxRetries": 2}}
    with pytest.raises(client.ApiException) as refused:
        api.patch_namespaced_custom_object(
            G, V, ns, "experiments", "p", {"spec": {"stopGracePeriodSeconds": -1}}
        )
    assert refused.value.status == 422 and "stopGracePeriodSeconds" in refused.value.body


def test_a_watch_without_a_version_starts_with_what_exists(api: client.CustomObjectsApi, ns: str) -> None:
    api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("old"))
    events = list(
        watch.Watch().stream(api.list_namespaced_custom_object, G, V, ns, "experiments", timeout_seconds=1)
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "old")]


def test_the_history_kept_is_settable() -> None:
    ns = "history"
    with cluster(history_size=2) as small:
        if small.emulator is None:
            pytest.skip("the history size is the emulator's")
        client.CoreV1Api(small.api_client).create_namespace({"metadata": {"name": ns}})
        api = client.CustomObjectsApi(small.api_client)
        first = api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("h0"))
        version = first["metadata"]["resourceVersion"]

        def replay() -> list[str]:
            stream = watch.Watch().stream(
                api.list_namespaced_custom_object,
                G,
                V,
                ns,
                "experiments",
                resource_version=version,
                timeout_seconds=1,
            )
            return [e["object"]["metadata"]["name"] for e in stream]

        api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("h1"))
        assert replay() == ["h1"]  # two events kept: h0's and h1's
        api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("h2"))
        assert replay() == ["h1", "h2"]  # h0's event dropped, but nothing after `version` is missing
        api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("h3"))
        with pytest.raises(client.ApiException) as gone:
            replay()  # h1's event is gone now
        assert gone.value.status == 410


def test_a_reaction_the_test_adds_comes_first_and_writes_nothing(
    kube: Cluster, api: client.CustomObjectsApi, ns: str
) -> None:
    if kube.emulator is None:
        pytest.skip("reactions are kmock's")
    path = f"/apis/{G}/{V}/namespaces/{ns}/experiments"
    kube.emulator[lambda req: req.url.path == path and req.method == "POST"][:1] << 503 << {"message": "busy"}
    with pytest.raises(client.ApiException) as busy:
        api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("x"))
    assert busy.value.status == 503
    assert api.list_namespaced_custom_object(G, V, ns, "experiments")["items"] == []
    api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("x"))  # the reaction was for one
    assert len(api.list_namespaced_custom_object(G, V, ns, "experiments")["items"]) == 1


def test_concurrent_read_modify_writes_lose_nothing(api: client.CustomObjectsApi, ns: str) -> None:
    """Optimistic concurrency: of writers racing from one version exactly one wins; the others get 409 and
    retry from a fresh read, so every increment lands."""
    api.create_namespaced_custom_object(G, V, ns, "experiments", experiment("n", count=0))

    def bump(times: int) -> None:
        for _ in range(times):
            while True:
                obj = api.get_namespaced_custom_object(G, V, ns, "experiments", "n")
                obj["spec"]["count"] += 1
                try:
                    api.replace_namespaced_custom_object(G, V, ns, "experiments", "n", obj)
                    break
                except client.ApiException as exc:
                    assert exc.status == 409

    workers = [threading.Thread(target=bump, args=(10,)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    final = api.get_namespaced_custom_object(G, V, ns, "experiments", "n")
    assert final["spec"]["count"] == 40 and final["metadata"]["generation"] == 41


def test_namespaces_can_be_required_as_the_api_server_does() -> None:
    with cluster(require_namespaces=True) as strict:
        api = client.CustomObjectsApi(strict.api_client)
        with pytest.raises(client.ApiException) as missing:
            api.create_namespaced_custom_object(G, V, "nowhere", "experiments", experiment("x"))
        assert missing.value.status == 404 and "nowhere" in missing.value.body


def test_server_side_apply_creates_then_updates(kube: Cluster, api: client.CustomObjectsApi, ns: str) -> None:
    core = client.CoreV1Api(kube.api_client)
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": ns},
        "data": {"a": "1"},
    }
    apply = {"field_manager": "runyard", "_content_type": "application/apply-patch+yaml"}
    assert core.patch_namespaced_config_map("c", ns, cm, **apply).data == {"a": "1"}
    cm["data"] = {"a": "2"}
    assert core.patch_namespaced_config_map("c", ns, cm, **apply).data == {"a": "2"}
    assert core.read_namespaced_config_map("c", ns).data == {"a": "2"}


def test_finalizers_hold_a_deletion_until_removed(
    kube: Cluster, api: client.CustomObjectsApi, ns: str
) -> None:
    obj = experiment("f")
    obj["metadata"]["finalizers"] = ["runyard.dev/cleanup"]
    api.create_namespaced_custom_object(G, V, ns, "experiments", obj)
    api.delete_namespaced_custom_object(G, V, ns, "experiments", "f")
    held = api.get_namespaced_custom_object(G, V, ns, "experiments", "f")
    assert held["metadata"]["deletionTimestamp"]
    api.patch_namespaced_custom_object(G, V, ns, "experiments", "f", {"metadata": {"finalizers": None}})
    for _ in range(50):
        if not api.list_namespaced_custom_object(G, V, ns, "experiments")["items"]:
            break
        time.sleep(0.1)
    assert api.list_namespaced_custom_object(G, V, ns, "experiments")["items"] == []


def test_a_write_hook_can_refuse_writes(kube: Cluster, ns: str) -> None:
    if kube.emulator is None:
        pytest.skip("the write hook is the emulator's")
    seen: list[tuple[str, str]] = []

    def no_pods(verb: str, route: Route, body: object) -> None:
        seen.append((verb, route.plural))
        if route.plural == "pods":
            raise error(403, "Forbidden", "pods are not allowed here")

    kube.emulator.before_write = no_pods
    core = client.CoreV1Api(kube.api_client)
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(ns, {"metadata": {"name": "p"}, "spec": {"containers": []}})
    assert refused.value.status == 403 and core.list_namespaced_pod(ns).items == []
    core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}})
    assert seen == [("POST", "pods"), ("POST", "configmaps")]  # reads do not reach the hook
