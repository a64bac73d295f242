"""Running operators against a test cluster, and playing the kubelet (the emulator has none).

The API server is a fake (kmock's KubernetesEmulator, extended: tests/kube/emulator.py) because no real
kube-apiserver can run here; with KUBECONFIG naming a real cluster the same code runs there (what needs a
fake kubelet is skipped by the tests then).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from kubernetes import client, config
from tests.kube.cluster import Cluster, emulator_client

from runyard.controller.kube.base import KindController
from runyard.controller.kube.leader import LeaseElector
from runyard.controller.kube.operator import Operator
from runyard.kube.api import CallCounter
from runyard.runtime.kubernetes.runtime import KubernetesRuntime, RuntimeOptions
from runyard.store.kube.resources import KubeResources

T = TypeVar("T")
SERVER_URL = "http://runyard-server.runyard.svc:8765"
WRITES = ("create", "replace", "patch", "delete", "get")  # what a Run costs; list and watch are shared


def new_client(kube: Cluster) -> client.ApiClient:
    """A client of its own, so that its calls are counted apart from the test's."""
    return config.new_client_from_config() if os.environ.get("KUBECONFIG") else emulator_client(kube.url)


C = TypeVar("C", bound=KindController)


@dataclass
class Running(Generic[C]):
    """A controller started, with its elector campaigning from a thread (see `leading`)."""

    controller: C
    elector: LeaseElector
    calls: CallCounter
    stop: threading.Event
    thread: threading.Thread

    @property
    def operator(self) -> C:
        return self.controller

    def writes(self) -> int:
        counts = self.calls.counts()
        return sum(counts.get(v, 0) for v in WRITES)

    def shutdown(self) -> None:
        self.stop.set()
        self.thread.join(15)
        self.controller.stop()


@contextmanager
def leading(
    controller: C, elector: LeaseElector, calls: CallCounter, *clients: client.ApiClient
) -> Iterator[Running[C]]:
    """Start `controller` and campaign for its Lease from a thread; at the end stop both, close `clients`."""
    controller.start()
    stop = threading.Event()
    thread = threading.Thread(target=elector.run, args=(stop, controller.leading), daemon=True)
    thread.start()
    running = Running(controller, elector, calls, stop, thread)
    try:
        yield running
    finally:
        running.shutdown()
        for api_client in clients:
            api_client.close()


@contextmanager
def operator(
    kube: Cluster, namespace: str, tmp_path: Path, identity: str = "op-1", **options: Any
) -> Iterator[Running[Operator]]:
    """An operator watching `namespace`, its Lease there, campaigning from a thread (renewing often, so a
    takeover after a release takes a fraction of a second)."""
    op_client, lease_client = new_client(kube), new_client(kube)
    calls = CallCounter()
    resources = KubeResources(op_client, calls)
    runtime = KubernetesRuntime(
        op_client,
        RuntimeOptions(image="runyard:test", server_url=SERVER_URL, token_secrets="tokens" in options),
        tmp_path / identity,
        calls=calls,
    )
    elector = LeaseElector(lease_client, namespace, identity=identity, lease_seconds=5.0, renew_every=0.25)
    op = Operator(
        resources,
        runtime,
        elector,
        api_client=op_client,
        server_url=SERVER_URL,
        **{"namespaces": [namespace], **options},
    )
    with leading(op, elector, calls, op_client, lease_client) as running:
        yield running


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 15.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def secret_token(kube: Cluster, namespace: str, env: list[dict[str, Any]]) -> str:
    """The runyard token a container's RUNYARD_TOKEN names: read from its Secret (it is never a value in
    the pod's spec)."""
    import base64

    (var,) = [e for e in env if e["name"] == "RUNYARD_TOKEN"]
    assert "value" not in var, "a token in the pod's spec"
    ref = var["valueFrom"]["secretKeyRef"]
    secret = client.CoreV1Api(kube.api_client).read_namespaced_secret(ref["name"], namespace)
    data = secret.string_data or {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    return data[ref["key"]]


def experiment(name: str, command: str = "python train.py", **spec: Any) -> dict[str, Any]:
    """As `kubectl apply -f` sends it."""
    return {
        "apiVersion": "runyard.dev/v1",
        "kind": "Experiment",
        "metadata": {"name": name, "labels": {"team": "cv"}},
        "spec": {"command": command, **spec},
    }


MAIN = {"name": "main", "image": "runyard:test", "imageID": "", "restartCount": 0}


class Kubelet:
    """Writes pod status as a kubelet would: phase and the main container's state."""

    def __init__(self, api_client: client.ApiClient):
        self.core = client.CoreV1Api(api_client)

    def patch(self, namespace: str, pod: str, status: dict[str, Any]) -> None:
        self.core.patch_namespaced_pod_status(
            pod, namespace, {"status": status}, _content_type="application/merge-patch+json"
        )

    def running(self, namespace: str, pod: str) -> None:
        at = _stamp()
        main = {**MAIN, "ready": True, "state": {"running": {"startedAt": at}}}
        self.patch(namespace, pod, {"phase": "Running", "startTime": at, "containerStatuses": [main]})

    def exited(self, namespace: str, pod: str, code: int, reason: str = "") -> None:
        terminated = {
            "exitCode": code,
            "reason": reason or ("Completed" if code == 0 else "Error"),
            "startedAt": _stamp(),
            "finishedAt": _stamp(),
        }
        main = {**MAIN, "ready": False, "state": {"terminated": terminated}}
        phase = "Succeeded" if code == 0 else "Failed"
        self.patch(namespace, pod, {"phase": phase, "containerStatuses": [main]})

    def unschedulable(self, namespace: str, pod: str, message: str) -> None:
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        self.patch(namespace, pod, {"phase": "Pending", "conditions": [cond]})


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
