"""KubernetesRuntime against a Kubernetes API: launch creates the attempt's pod, observe maps what the kubelet
writes, stop and cleanup act on the pod, logs outlive it.

No real kube-apiserver can run here: the API server is a fake, kmock's KubernetesEmulator extended
(tests/kube/emulator.py). The module runs unchanged against a real cluster when KUBECONFIG names one,
except the tests that play the kubelet (writing pod status, serving pods/log), which skip there. The
emulator has no pods/log endpoint: the log tests add a kmock reaction answering GET .../pods/NAME/log with
the text a kubelet would return (timestamps=true).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.kube.cluster import Cluster, cluster

from runyard.kube.api import CallCounter
from runyard.runtime.base import AttemptState, LaunchError, LaunchSpec
from runyard.runtime.kubernetes import pods
from runyard.runtime.kubernetes.runtime import KubernetesRuntime, RuntimeOptions, lines_after, observed

NS = "kube-runtime-test"
T0 = "2026-12-02T08:00:00Z"
T1 = "2026-12-02T08:00:05Z"


@pytest.fixture
def kube() -> Iterator[Cluster]:
    with cluster() as c:
        yield c


@pytest.fixture
def calls() -> CallCounter:
    return CallCounter()


@pytest.fixture
def runtime(kube: Cluster, tmp_path: Path, calls: CallCounter) -> KubernetesRuntime:
    options = RuntimeOptions(image="runyard:test", server_url="http://runyard:8000", own_pods=False)
    return KubernetesRuntime(
        kube.api_client, options, tmp_path / "logs", namespace_for=lambda p: NS, calls=calls
    )


@pytest.fixture
def kubelet(kube: Cluster) -> Kubelet:
    if kube.emulator is None:
        pytest.skip("plays the kubelet: only against the emulator")
    return Kubelet(kube)


class Kubelet:
    """Writes pod status as a kubelet does (PATCH pods/status), and serves pods/log."""

    def __init__(self, kube: Cluster) -> None:
        self.core = client.CoreV1Api(kube.api_client)
        self.emulator = kube.emulator
        self.logs: dict[str, str] = {}
        self.log_queries: list[dict[str, str]] = []

    def status(self, pod: str, **status: Any) -> None:
        self.core.patch_namespaced_pod_status(
            pod, NS, {"status": status}, _content_type="application/merge-patch+json", _preload_content=False
        )

    def bind(self, pod: str) -> None:
        self.core.patch_namespaced_pod(
            pod, NS, {"spec": {"nodeName": "node-1"}}, _content_type="application/merge-patch+json"
        )

    def main(self, pod: str, phase: str, **state: Any) -> None:
        main = {"name": "main", "image": "runyard:test", "imageID": "", "ready": False, "restartCount": 0}
        self.status(pod, phase=phase, containerStatuses=[{**main, "state": state}])

    def serve_logs(self, pod: str) -> None:
        assert self.emulator is not None
        path = f"/api/v1/namespaces/{NS}/pods/{pod}/log"
        self.emulator[lambda req: req.url.path == path] << self._log(pod)

    def _log(self, pod: str) -> Any:
        def answer(request: Any) -> bytes:
            """The whole log, whatever the window asked (a kubelet would cut it: the runtime must cope)."""
            self.log_queries.append(dict(request.params))
            return self.logs[pod].encode()

        return answer


def launch_spec(name: str = "train", attempt: int = 1, **kw: Any) -> LaunchSpec:
    base: dict[str, Any] = dict(
        run_uid=str(uuid.uuid4()),
        project="vision",
        name=name,
        attempt=attempt,
        argv=["python", "train.py"],
        env={"RUNYARD_TOKEN": "tok"},
        cpu=1.0,
        memory=1 << 30,
        stop_grace=20,
    )
    return LaunchSpec(**{**base, **kw})


def read_pod(kube: Cluster, name: str) -> dict[str, Any]:
    reply = client.CoreV1Api(kube.api_client).read_namespaced_pod(name, NS, _preload_content=False)
    return json.loads(reply.data)


def delete_pod(kube: Cluster, name: str) -> None:
    client.CoreV1Api(kube.api_client).delete_namespaced_pod(name, NS, _preload_content=False)


def pod_names(kube: Cluster) -> list[str]:
    reply = client.CoreV1Api(kube.api_client).list_namespaced_pod(NS, _preload_content=False)
    return [p["metadata"]["name"] for p in json.loads(reply.data)["items"]]


def test_launch_creates_the_pod_once(runtime: KubernetesRuntime, kube: Cluster, calls: CallCounter) -> None:
    spec = launch_spec()
    handle = runtime.launch(spec)
    assert handle == {
        "runtime": "kubernetes",
        "namespace": NS,
        "pod": "train-1",
        "run_uid": spec.run_uid,
        "attempt": 1,
    }
    pod = read_pod(kube, "train-1")
    assert pod["spec"]["containers"] == runtime.manifest(spec)["spec"]["containers"]
    assert pod["metadata"]["labels"][pods.RUN_UID_LABEL] == spec.run_uid
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "1000m", "memory": str(1 << 30)}
    assert runtime.launch(spec) == handle  # again: AlreadyExists is the same attempt
    assert pod_names(kube) == ["train-1"]
    assert calls.counts()["create"] == 2
    assert runtime.find_launched(spec.run_uid, 1) == handle
    assert runtime.find_launched(spec.run_uid, 2) is None
    assert runtime.find_launched(str(uuid.uuid4()), 1) is None


def test_launch_refuses_the_pod_of_an_earlier_run_of_that_name(
    runtime: KubernetesRuntime, kube: Cluster
) -> None:
    """A Run deleted and made again under its name while its old pod awaits deletion: the old pod is not
    the new run's attempt."""
    runtime.launch(launch_spec())
    with pytest.raises(LaunchError, match="earlier run named train"):
        runtime.launch(launch_spec())  # another uid
    delete_pod(kube, "train-1")
    assert runtime.launch(launch_spec())["pod"] == "train-1"


def test_observe_maps_the_kubelets_status(runtime: KubernetesRuntime, kubelet: Kubelet) -> None:
    handle = runtime.launch(launch_spec())
    obs = runtime.observe(handle)
    assert obs.state == AttemptState.STARTING and obs.message == ""

    unschedulable = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    kubelet.status(
        "train-1",
        phase="Pending",
        conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}
        ],
    )
    obs = runtime.observe(handle)
    assert obs.state == AttemptState.STARTING and obs.message == f"Unschedulable: {unschedulable}"

    kubelet.status(
        "train-1",
        conditions=[{"type": "PodScheduled", "status": "True"}],
        initContainerStatuses=[{"name": "environment", "state": {"running": {"startedAt": T0}}}],
    )
    obs = runtime.observe(handle)
    assert obs.state == AttemptState.STARTING and obs.progress_at is not None  # installing: progress

    kubelet.status(
        "train-1",
        initContainerStatuses=[],
        containerStatuses=[
            {"name": "main", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}
        ],
    )
    obs = runtime.observe(handle)
    assert obs.state == AttemptState.STARTING and obs.message == "main: ImagePullBackOff: no such image"

    kubelet.main("train-1", "Running", running={"startedAt": T0})
    obs = runtime.observe(handle)
    assert obs.state == AttemptState.RUNNING and obs.started_at is not None
    assert obs.started_at.isoformat() == "2026-12-02T08:00:00+00:00"
    assert obs.limits == {"mechanism": "kubernetes", "enforced": True, "cpu": "1000m", "memory": str(1 << 30)}


@pytest.mark.parametrize(
    ("phase", "terminated", "code", "oom"),
    [
        ("Succeeded", {"exitCode": 0, "reason": "Completed"}, 0, False),
        ("Failed", {"exitCode": 3, "reason": "Error"}, 3, False),
        ("Failed", {"exitCode": 137, "reason": "OOMKilled"}, 137, True),
    ],
)
def test_observe_exits(
    runtime: KubernetesRuntime, kubelet: Kubelet, phase: str, terminated: dict, code: int, oom: bool
) -> None:
    handle = runtime.launch(launch_spec())
    kubelet.main("train-1", phase, terminated={**terminated, "startedAt": T0, "finishedAt": T1})
    obs = runtime.observe(handle)
    assert obs.state == AttemptState.EXITED and obs.exit_code == code and obs.oom_killed is oom
    assert obs.finished_at is not None and (obs.finished_at - obs.started_at).total_seconds() == 5  # type: ignore[operator]
    assert ("OOMKilled" in obs.message) is oom


def test_observe_a_failed_init_step(runtime: KubernetesRuntime, kubelet: Kubelet) -> None:
    handle = runtime.launch(launch_spec(snapshot="sha256:" + "0" * 64))
    kubelet.status(
        "train-1",
        phase="Failed",
        initContainerStatuses=[
            {
                "name": "snapshot",
                "state": {
                    "terminated": {"exitCode": 1, "message": "runyard init snapshot: no such snapshot"}
                },
            }
        ],
        containerStatuses=[{"name": "main", "state": {"waiting": {"reason": "PodInitializing"}}}],
    )
    obs = runtime.observe(handle)
    assert obs.state == AttemptState.EXITED and obs.exit_code is None  # the controller's LaunchFailed
    assert (
        obs.message
        == "failed to start: its snapshot step exited with code 1: runyard init snapshot: no such snapshot"
    )


def test_pod_deleted_from_under_it_is_lost(runtime: KubernetesRuntime, kube: Cluster) -> None:
    handle = runtime.launch(launch_spec())
    delete_pod(kube, "train-1")
    obs = runtime.observe(handle)
    assert obs.state == AttemptState.LOST and obs.message == "pod deleted"


def test_stop_a_running_pod_keeps_its_exit(
    runtime: KubernetesRuntime, kube: Cluster, kubelet: Kubelet
) -> None:
    """A pod on a node is stopped by its deadline (the kubelet kills it with the pod's grace), not deleted:
    the exit is recorded and reported as a stop."""
    handle = runtime.launch(launch_spec())
    kubelet.bind("train-1")
    kubelet.main("train-1", "Running", running={"startedAt": T0})
    runtime.stop(handle, 20)
    pod = read_pod(kube, "train-1")
    assert pod["spec"]["activeDeadlineSeconds"] == 1
    assert pod["spec"]["terminationGracePeriodSeconds"] == 20
    kubelet.main(
        "train-1",
        "Failed",
        terminated={"exitCode": 143, "reason": "Error", "startedAt": T0, "finishedAt": T1},
    )
    obs = runtime.observe(handle)
    assert obs.state == AttemptState.EXITED and obs.exit_code == 143 and obs.message == "stopped"
    runtime.stop(handle, 20)  # idempotent
    runtime.cleanup(handle)
    assert pod_names(kube) == []
    runtime.stop(handle, 20)  # gone: still no error
    runtime.cleanup(handle)


def test_stop_an_unscheduled_pod_deletes_it(runtime: KubernetesRuntime, kube: Cluster) -> None:
    handle = runtime.launch(launch_spec())
    runtime.stop(handle, 20)
    assert pod_names(kube) == []
    assert runtime.observe(handle).state == AttemptState.LOST


def test_logs_kept_after_the_pod_is_gone(runtime: KubernetesRuntime, kube: Cluster, kubelet: Kubelet) -> None:
    handle = runtime.launch(launch_spec())
    chunk = runtime.read_logs(handle)  # not started: no log yet
    assert chunk.entries == [] and not chunk.complete
    kubelet.main("train-1", "Running", running={"startedAt": T0})
    kubelet.logs["train-1"] = "2026-12-02T08:00:01.123456789Z epoch 1\n"
    kubelet.serve_logs("train-1")
    chunk = runtime.read_logs(handle)
    assert [e.text for e in chunk.entries] == ["epoch 1"] and not chunk.complete
    assert chunk.entries[0].time.isoformat() == "2026-12-02T08:00:01.123456+00:00"
    kubelet.logs["train-1"] += "2026-12-02T08:00:02Z epoch 2\n2026-12-02T08:00:03Z done\n"
    assert "sinceSeconds" not in kubelet.log_queries[0]
    kubelet.main("train-1", "Succeeded", terminated={"exitCode": 0, "startedAt": T0, "finishedAt": T1})
    rest = runtime.read_logs(handle, chunk.offset)
    assert [e.text for e in rest.entries] == ["epoch 2", "done"] and rest.complete
    assert int(kubelet.log_queries[-1]["sinceSeconds"]) >= 300  # only what is new, with slack
    delete_pod(kube, "train-1")
    again = runtime.read_logs(handle)  # from the kept copy
    assert [e.text for e in again.entries] == ["epoch 1", "epoch 2", "done"] and again.complete
    runtime.cleanup(handle)
    assert runtime.read_logs(handle).entries == []


def test_logs_of_a_pod_deleted_while_running(
    runtime: KubernetesRuntime, kube: Cluster, kubelet: Kubelet
) -> None:
    handle = runtime.launch(launch_spec())
    kubelet.main("train-1", "Running", running={"startedAt": T0})
    kubelet.logs["train-1"] = "2026-12-02T08:00:01Z step\n"
    kubelet.serve_logs("train-1")
    assert [e.text for e in runtime.read_logs(handle).entries] == ["step"]
    delete_pod(kube, "train-1")
    chunk = runtime.read_logs(handle)
    assert [e.text for e in chunk.entries] == ["step"] and chunk.complete


def test_pods_owned_by_their_run(kube: Cluster, tmp_path: Path) -> None:
    """With own_pods, deleting the Run (a custom resource) deletes its pods (the garbage collector), and
    with token_secrets the token is in an owned Secret, not in the pod."""
    custom = client.CustomObjectsApi(kube.api_client)
    run = custom.create_namespaced_custom_object(
        "runyard.dev",
        "v1",
        NS,
        "runs",
        {
            "apiVersion": "runyard.dev/v1",
            "kind": "Run",
            "metadata": {"name": "owned"},
            "spec": {"command": "true"},
        },
    )
    options = RuntimeOptions(image="i", server_url="http://s", own_pods=True, token_secrets=True)
    runtime = KubernetesRuntime(kube.api_client, options, tmp_path, namespace_for=lambda p: NS)
    handle = runtime.launch(
        launch_spec(name="owned", run_uid=run["metadata"]["uid"], env={"RUNYARD_TOKEN": "s3cr3t-value"})
    )
    pod = read_pod(kube, handle["pod"])
    assert pod["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]
    assert "s3cr3t-value" not in json.dumps(pod["spec"])
    secret = client.CoreV1Api(kube.api_client).read_namespaced_secret("owned-1-token", NS)
    assert secret.metadata.owner_references[0].uid == run["metadata"]["uid"]
    if kube.emulator is None:
        pytest.skip("a real cluster has no runyard.dev CRDs unless installed; GC timing is the cluster's")
    custom.delete_namespaced_custom_object("runyard.dev", "v1", NS, "runs", "owned")
    assert pod_names(kube) == []


def test_log_lines_after_the_cursor() -> None:
    """Lines come back again from a window: those kept are dropped by timestamp, lines sharing one
    timestamp by count; the kubelet trims trailing zeros of the nanoseconds."""
    first = ["2026-12-02T08:00:01.5Z a", "2026-12-02T08:00:01.5Z b"]
    fresh, cursor = lines_after(first, {"last": None, "same": 0})
    assert fresh == first and cursor == {"last": "2026-12-02T08:00:01.500000000", "same": 2}
    again = [
        "2026-12-02T08:00:01.000000001Z old",
        *first,
        "2026-12-02T08:00:01.5Z c",
        "2026-12-02T08:00:01.51Z d",
    ]
    fresh, cursor = lines_after(again, cursor)
    assert fresh == ["2026-12-02T08:00:01.5Z c", "2026-12-02T08:00:01.51Z d"]
    assert cursor == {"last": "2026-12-02T08:00:01.510000000", "same": 1}
    assert lines_after(again, cursor) == ([], cursor)


def test_observed_deadline_and_eviction() -> None:
    """Pure mapping of pods the operator saw in its watch: Kubernetes' own deadline (a run's timeout) is
    named so the operator can say DeadlineExceeded; an evicted pod with no exit recorded is lost."""
    main = {"name": "main", "state": {"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": T1}}}
    pod = {"status": {"phase": "Failed", "reason": "DeadlineExceeded", "containerStatuses": [main]}}
    obs = observed(pod)
    assert (
        obs.state == AttemptState.EXITED and obs.exit_code == 137 and "activeDeadlineSeconds" in obs.message
    )
    evicted = {"status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."}}
    obs = observed(evicted)
    assert (
        obs.state == AttemptState.LOST
        and obs.message == "the pod ended (Evicted: The node was low on memory.)"
    )
