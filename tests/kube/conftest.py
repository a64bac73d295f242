"""The `kube` fixture: a fresh Kubernetes API per test, the emulator unless KUBECONFIG names a cluster; and
namespaces of their own for each test (a real cluster deletes namespaces in the background, so a name is
never reused)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client
from tests.kube.cluster import Cluster, cluster


@pytest.fixture
def kube() -> Iterator[Cluster]:
    with cluster() as c:
        yield c


@pytest.fixture
def new_namespace(kube: Cluster) -> Iterator[Callable[[], str]]:
    """Make a namespace with a fresh name; all are deleted after the test."""
    core = client.CoreV1Api(kube.api_client)
    made: list[str] = []

    def make() -> str:
        name = f"runyard-test-{secrets.token_hex(4)}"
        core.create_namespace({"metadata": {"name": name}})
        made.append(name)
        return name

    yield make
    for name in made:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(name)


@pytest.fixture
def ns(new_namespace: Callable[[], str]) -> str:
    return new_namespace()
