"""A SessionController against a test cluster, with a clock the tests move and an elector they hold.

The API server is a fake (kmock's KubernetesEmulator, extended: tests/kube/emulator.py) because no real
kube-apiserver can run here; with KUBECONFIG naming a real cluster the same code runs there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from tests.kube.cluster import Cluster
from tests.kube_operator.harness import SERVER_URL, Kubelet, new_client

from runyard.controller.kube.sessions import SessionController
from runyard.controller.kube.tokens import Tokens
from runyard.kube.api import CallCounter
from runyard.store.kube.resources import KubeResources

PUBLIC_URL = "https://runyard.example.com"


class Clock:
    """What idleness and lifetime are measured with: moved by hand."""

    def __init__(self) -> None:
        self.t = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class Elector:
    """Leadership as the test says (the Lease election itself is tested in tests/kube_operator)."""

    def __init__(self, leads: bool = True) -> None:
        self.leads = leads

    def is_leader(self) -> bool:
        return self.leads


@dataclass
class Running:
    controller: SessionController
    elector: Elector
    clock: Clock
    calls: CallCounter


@contextmanager
def controller(
    kube: Cluster, namespace: str, leads: bool = True, tokens: Tokens | None = None
) -> Iterator[Running]:
    api = new_client(kube)
    calls = CallCounter()
    elector, clock = Elector(leads), Clock()
    ctrl = SessionController(
        KubeResources(api, calls),
        elector,
        api_client=api,
        namespaces=[namespace],
        image="runyard:test",
        server_url=SERVER_URL,
        public_url=PUBLIC_URL,
        calls=calls,
        clock=clock,
        project_objects=False,  # tested with the Operator (tests/kube_operator)
        tokens=tokens,
    )
    ctrl.start()
    if leads:
        ctrl.leading(True)
    try:
        yield Running(ctrl, elector, clock, calls)
    finally:
        ctrl.stop()
        api.close()


def apply(kube: Cluster, namespace: str, name: str, **spec: Any) -> None:
    """As `kubectl apply -f` sends it."""
    body = {"apiVersion": "runyard.dev/v1", "kind": "Session", "metadata": {"name": name}, "spec": spec}
    client.CustomObjectsApi(kube.api_client).create_namespaced_custom_object(
        "runyard.dev", "v1", namespace, "sessions", body
    )


def listed(kube: Cluster, namespace: str, plural: str) -> list[dict]:
    core = client.CoreV1Api(kube.api_client)
    reply = getattr(core, f"list_namespaced_{plural}")(namespace, _preload_content=False)
    return json.loads(reply.data)["items"]


def names(kube: Cluster, namespace: str, plural: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in listed(kube, namespace, plural))


def ready(kubelet: Kubelet, namespace: str, pod: str, is_ready: bool = True) -> None:
    """Play the kubelet: the pod runs, and Jupyter answers its readiness probe (or not yet)."""
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    main = {
        "name": "main",
        "image": "runyard:test",
        "imageID": "",
        "restartCount": 0,
        "ready": is_ready,
        "state": {"running": {"startedAt": at}},
    }
    conditions = [{"type": "Ready", "status": "True" if is_ready else "False"}]
    status = {"phase": "Running", "startTime": at, "containerStatuses": [main], "conditions": conditions}
    kubelet.patch(namespace, pod, status)
