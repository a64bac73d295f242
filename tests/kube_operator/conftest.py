"""Fixtures of the operator tests: a Kubernetes API (tests/kube/cluster.py: kmock's KubernetesEmulator,
extended, since no real kube-apiserver can run here; a real cluster when KUBECONFIG names one) and a fresh
namespace in it per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client
from tests.kube.cluster import Cluster, cluster


class FakeClock:
    """A monotonic clock tests move by hand: lease expiry without sleeping."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def kube() -> Iterator[Cluster]:
    with cluster() as c:
        if c.emulator is None:
            install_crds(c)
        yield c


def install_crds(kube: Cluster) -> None:
    """A real cluster serves runyard's kinds only once their CRDs exist (the emulator serves any URL)."""
    from kubernetes.client.exceptions import ApiException

    from runyard.kube.crds import crds

    api = client.ApiextensionsV1Api(kube.api_client)
    for crd in crds():
        try:
            api.create_custom_resource_definition(crd)
        except ApiException as exc:
            if exc.status != 409:
                raise


def make_namespace(kube: Cluster, prefix: str = "ry-op") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(kube.api_client).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture
def namespace(kube: Cluster) -> Iterator[str]:
    name = make_namespace(kube)
    yield name
    client.CoreV1Api(kube.api_client).delete_namespace(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
