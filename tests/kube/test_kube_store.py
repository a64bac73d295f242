"""The Kubernetes store backend (runyard.store.kube.resources): typed resources as custom objects, optimistic
concurrency, the status subresource, and a watch that survives dropped streams and 410 Gone.

The API server is a fake (kmock's KubernetesEmulator, extended: tests/kube/emulator.py) because no real
kube-apiserver can run here; this module runs unchanged against a real cluster when KUBECONFIG names one
(with runyard's CRDs installed; the tests that drop streams or compact the history skip there).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from tests.kube.cluster import Cluster, install_crds

from runyard.core.errors import Conflict, Gone, Invalid, NotFound
from runyard.core.kinds import API_GROUP
from runyard.core.resources import ALL_KINDS, Experiment, ObjectMeta, OwnerReference, Run
from runyard.kube.api import CallCounter, translated
from runyard.store.kube.resources import KubeResources, to_object, to_resource

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def experiment(name: str, project: str, **labels: str) -> Experiment:
    return Experiment(
        metadata=ObjectMeta(name=name, project=project, labels=labels), spec={"command": "echo hi"}
    )


@pytest.fixture
def store(kube: Cluster) -> KubeResources:
    install_crds(kube.api_client, wait=kube.emulator is None)
    return KubeResources(kube.api_client, watch_timeout=5, retry_delay=0.1)


@pytest.fixture
def other(new_namespace: Callable[[], str]) -> str:
    """A second project."""
    return new_namespace()


def test_create_get_list_replace_and_a_stale_write_conflicts(
    store: KubeResources, ns: str, other: str
) -> None:
    created = store.create(experiment("a", ns, team=ns))  # a label value no other test's objects have
    assert created.metadata.project == ns and created.metadata.uid and created.metadata.resourceVersion
    store.create(experiment("b", ns, team="y"))
    store.create(experiment("c", other, team=ns))
    with pytest.raises(Conflict):
        store.create(experiment("a", ns))

    got = store.get("Experiment", ns, "a")
    assert got == created and isinstance(got, Experiment)
    items, version = store.list("experiments", ns)
    assert (
        sorted(r.metadata.name for r in items) == ["a", "b"]
        and int(version) >= created.metadata.resourceVersion
    )
    everywhere, _ = store.list(Experiment, None, {"team": ns})
    assert sorted((r.metadata.project, r.metadata.name) for r in everywhere) == sorted(
        [(ns, "a"), (other, "c")]
    )

    changed = got.model_copy(deep=True)
    changed.spec.command = "echo changed"
    replaced = store.replace(changed)
    assert replaced.spec.command == "echo changed" and replaced.metadata.generation == 2
    with pytest.raises(Conflict):
        store.replace(changed)  # its resourceVersion is the one before the replace
    store.delete("exp", ns, "a")
    with pytest.raises(NotFound):
        store.get(Experiment, ns, "a")
    with pytest.raises(NotFound):
        store.delete(Experiment, ns, "a")


def test_status_goes_through_its_subresource_only(store: KubeResources, ns: str) -> None:
    created = store.create(experiment("s", ns))
    running = created.model_copy(deep=True)
    running.status.phase = "Running"
    running.status.runs = ["s-1"]
    running.spec.command = "not written by a status write"
    written = store.update_status(running)
    assert written.status.phase == "Running" and written.spec.command == "echo hi"
    with pytest.raises(Conflict):
        store.update_status(running)  # stale now

    respec = written.model_copy(deep=True)
    respec.spec.command = "echo new"
    respec.status.phase = "Failed"
    replaced = store.replace(respec)
    assert replaced.spec.command == "echo new" and replaced.status.phase == "Running"

    patched = store.patch_status(Experiment, ns, "s", {"phase": "Succeeded", "message": "done"})
    assert patched.status.phase == "Succeeded" and patched.status.runs == ["s-1"]
    assert patched.status.message == "done"
    assert store.patch_status(Experiment, ns, "s", {"message": None}).status.message is None


def test_conversion_keeps_project_owners_and_version() -> None:
    run = Run(
        metadata=ObjectMeta(
            name="e-1",
            project="p",
            resourceVersion=42,
            ownerReferences=[OwnerReference(kind="Experiment", name="e", uid="u-1")],
        ),
        spec={"command": "true"},
    )
    obj = to_object(run)
    assert obj["metadata"]["namespace"] == "p" and "project" not in obj["metadata"]
    assert obj["metadata"]["resourceVersion"] == "42"
    assert obj["metadata"]["ownerReferences"][0]["apiVersion"] == "runyard.dev/v1"
    assert "null" not in yaml.safe_dump(obj)  # structural schemas have no nullable fields
    obj["metadata"]["managedFields"] = [{"manager": "kubectl"}]  # Kubernetes' own, not runyard's
    assert to_resource(obj) == run


@pytest.mark.parametrize("example", ["experiment.yaml", "job.yaml", "model.yaml", "session.yaml"])
def test_kubectl_shaped_yaml_reads_back_as_our_resource(
    kube: Cluster, store: KubeResources, example: str, ns: str
) -> None:
    """What `kubectl apply -f examples/...` sends: the document as written, in the namespace given."""
    api = client.CustomObjectsApi(kube.api_client)
    for doc in yaml.safe_load_all((EXAMPLES / example).read_text()):
        cls = ALL_KINDS[doc["kind"]]
        api.create_namespaced_custom_object(API_GROUP, "v1", ns, cls.plural, doc)
        res = store.get(cls, ns, doc["metadata"]["name"])
        assert type(res) is cls and res.metadata.project == ns
        expected = cls.model_validate({**doc, "metadata": {**doc["metadata"], "project": ns}})
        assert res.spec == expected.spec and res.metadata.labels == expected.metadata.labels


T0 = "2026-01-02T03:04:05Z"
CONDITION = {"type": "Ready", "status": "True", "reason": "Up", "message": "m", "lastTransitionTime": T0}
FULL = {
    "Run": (
        {
            "command": ["python", "-c", "1"],
            "env": {"A": "1"},
            "resources": {"cpu": "500m", "memory": "1Gi", "gpu": 1},
        },
        {
            "phase": "Failed",
            "reason": "Error",
            "message": "exit 3",
            "conditions": [CONDITION],
            "attempts": [
                {"attempt": 1, "handle": {"pod": "r-1"}, "startedAt": T0, "finishedAt": T0, "exitCode": 3}
            ],
            "exitCode": 3,
            "startedAt": T0,
            "finishedAt": T0,
            "limits": {"cpu": 0.5},
            "environment": {"id": "sha256:ab"},
            "peakMemoryBytes": 1024,
        },
    ),
    "Experiment": (
        {"command": "echo", "timeoutSeconds": 5},
        {"phase": "Running", "runs": ["e-1"], "conditions": [CONDITION]},
    ),
    "Job": (
        {"schedule": "0 3 * * *", "template": {"command": "echo"}, "notifications": {"email": ["a@b.c"]}},
        {
            "phase": "Scheduled",
            "active": ["j-1"],
            "lastScheduleTime": T0,
            "lastRun": {"name": "j-0", "phase": "Succeeded"},
        },
    ),
    "Model": (
        {"handler": "serve:predict", "autoscaling": {"minReplicas": 0, "maxReplicas": 3}},
        {
            "phase": "Ready",
            "url": "http://m",
            "versions": [
                {"version": 1, "specHash": "h", "spec": {"handler": "serve:predict"}, "createdAt": T0}
            ],
            "currentVersion": 1,
            "readyReplicas": 1,
        },
    ),
    "Session": (
        {"editor": "terminal"},
        {"phase": "Running", "url": "http://s", "port": 8888, "lastActivity": T0},
    ),
}


@pytest.mark.parametrize("kind", sorted(FULL))
def test_every_kind_with_a_full_status_survives_the_crds_schema(
    store: KubeResources, kind: str, ns: str
) -> None:
    """Nothing runyard writes is pruned or refused by the generated CRDs (the emulator prunes and validates
    against them as the API server does)."""
    spec, status = FULL[kind]
    res = ALL_KINDS[kind].model_validate(
        {"kind": kind, "metadata": {"name": "full", "project": ns, "labels": {"a": "b"}}, "spec": spec}
    )
    created = store.create(res)
    assert created.spec == res.spec
    with_status = created.model_copy(update={"status": type(created.status).model_validate(status)})
    written = store.update_status(with_status)
    assert written.status == with_status.status
    assert store.get(kind, ns, "full") == written


def test_the_crds_refuse_what_the_models_refuse(kube: Cluster, store: KubeResources, ns: str) -> None:
    api = client.CustomObjectsApi(kube.api_client)
    bad = {
        "apiVersion": "runyard.dev/v1",
        "kind": "Experiment",
        "metadata": {"name": "bad"},
        "spec": {"command": "echo", "retryPolicy": {"maxRetries": 1000}},
    }
    with pytest.raises(Invalid) as refused, translated():
        api.create_namespaced_custom_object(API_GROUP, "v1", ns, "experiments", bad)
    assert any("maxRetries" in d.field for d in refused.value.details)


def next_events(events: Iterator[tuple[str, object]], n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        kind, res = next(events)
        out.append((kind, res.metadata.name))  # type: ignore[attr-defined]
    return out


def test_watch_lists_first_then_follows_and_resumes_after_a_dropped_stream(
    kube: Cluster, store: KubeResources, ns: str
) -> None:
    if kube.emulator is None:
        pytest.skip("drops the emulator's streams")
    store.create(experiment("w1", ns))
    stop = threading.Event()
    events = store.watch(Experiment, ns, None, stop)
    assert next_events(events, 1) == [("ADDED", "w1")]

    kube.emulator.drop_watches()  # the open stream ends; what follows is written while none is open
    store.create(experiment("w2", ns))
    store.patch_status(Experiment, ns, "w1", {"phase": "Running"})
    store.delete(Experiment, ns, "w2")
    assert next_events(events, 3) == [("ADDED", "w2"), ("MODIFIED", "w1"), ("DELETED", "w2")]
    assert store.relists == 0
    stop.set()


def test_410_lists_again_and_yields_each_difference_once(
    kube: Cluster, store: KubeResources, ns: str
) -> None:
    if kube.emulator is None:
        pytest.skip("compacts the emulator's history")
    for name in ("keep", "change", "remove"):
        store.create(experiment(name, ns))
    stop = threading.Event()
    events = store.watch(Experiment, ns, None, stop)
    assert sorted(next_events(events, 3)) == [("ADDED", "change"), ("ADDED", "keep"), ("ADDED", "remove")]

    kube.emulator.drop_watches()
    store.create(experiment("new", ns))
    store.patch_status(Experiment, ns, "change", {"phase": "Running"})
    store.delete(Experiment, ns, "remove")
    kube.emulator.compact()  # the watch cannot resume from its version: 410 Gone

    assert sorted(next_events(events, 3)) == [("ADDED", "new"), ("DELETED", "remove"), ("MODIFIED", "change")]
    assert store.relists == 1
    store.patch_status(Experiment, ns, "keep", {"phase": "Running"})  # and it goes on watching
    assert next_events(events, 1) == [("MODIFIED", "keep")]
    stop.set()


def test_a_quiet_watch_stops_at_once(store: KubeResources, ns: str) -> None:
    stop = threading.Event()
    _, version = store.list(Experiment, ns)
    seen: list[object] = []
    worker = threading.Thread(target=lambda: seen.extend(store.watch(Experiment, ns, version, stop)))
    worker.start()
    time.sleep(0.5)
    started = time.monotonic()
    stop.set()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - started < 2 and seen == []


def test_store_calls_are_counted(kube: Cluster, ns: str) -> None:
    calls = CallCounter()
    store = KubeResources(kube.api_client, calls)
    created = store.create(experiment("counted", ns))
    store.get(Experiment, ns, "counted")
    store.update_status(created)
    store.patch_status(Experiment, ns, "counted", {"phase": "Running"})
    store.list(Experiment, ns)
    assert calls.counts() == {"create": 1, "get": 1, "replace": 1, "patch": 1, "list": 1}


def test_a_quiet_watch_keeps_its_version_current_through_bookmarks(
    kube: Cluster, store: KubeResources, ns: str, other: str
) -> None:
    """Writes elsewhere move the global version on; the API server's bookmark at each watch timeout moves the
    quiet watch's version with it, so a compaction after that does not force a list (no 410)."""
    if kube.emulator is None:
        pytest.skip("compacts the emulator's history")
    store.watch_timeout = 1
    stop = threading.Event()
    events = store.watch(Experiment, ns, None, stop)
    seen: list[tuple[str, str]] = []
    worker = threading.Thread(target=lambda: seen.extend(next_events(events, 1)))
    worker.start()
    time.sleep(0.3)  # listed and watching
    store.create(experiment("elsewhere", other))
    time.sleep(1.5)  # past a timeout: the stream ended with a bookmark and was renewed from it
    kube.emulator.compact()
    time.sleep(1.5)  # and renewed again, from after the compaction only thanks to the bookmark
    store.create(experiment("here", ns))
    worker.join(10)
    assert seen == [("ADDED", "here")] and store.relists == 0
    stop.set()


def test_a_watch_from_a_callers_list_relists_against_what_the_caller_knows(
    kube: Cluster, store: KubeResources, ns: str
) -> None:
    """The informer's way: list, then watch from the list's version with the listed items as `known`; a 410
    then yields only what changed since that list, none of the unchanged items again."""
    if kube.emulator is None:
        pytest.skip("compacts the emulator's history")
    for name in ("same", "gone"):
        store.create(experiment(name, ns))
    listed, version = store.list(Experiment, ns)
    store.create(experiment("added", ns))
    kube.emulator.compact()  # the list's version is too old already: the first watch request gets 410
    stop = threading.Event()
    store.delete(Experiment, ns, "gone")
    events = store.watch(Experiment, ns, version, stop, known=listed)
    assert sorted(next_events(events, 2)) == [("ADDED", "added"), ("DELETED", "gone")]
    assert store.relists == 1
    store.patch_status(Experiment, ns, "same", {"phase": "Running"})
    assert next_events(events, 1) == [("MODIFIED", "same")]  # nothing else came before it
    stop.set()


def test_a_watch_can_pass_410_on_instead(kube: Cluster, store: KubeResources, ns: str) -> None:
    if kube.emulator is None:
        pytest.skip("compacts the emulator's history")
    _, version = store.list(Experiment, ns)
    store.create(experiment("after", ns))
    kube.emulator.compact()
    with pytest.raises(Gone):
        next(store.watch(Experiment, ns, version, threading.Event(), relist=False))
    assert store.relists == 0
