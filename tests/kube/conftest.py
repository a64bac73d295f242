"""The `kube` fixture: a fresh Kubernetes API per test, the emulator unless KUBECONFIG names a cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.kube.cluster import Cluster, cluster


@pytest.fixture
def kube() -> Iterator[Cluster]:
    with cluster() as c:
        yield c
