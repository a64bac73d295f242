"""The operator tests' fixtures (a fresh namespace per test), and a Kubernetes API that has runyard's CRDs
in the emulator too: it then prunes and validates Models against their schema as an API server does, so a
status field the CRD lacks would be lost here as it would on a cluster."""

from collections.abc import Iterator

import pytest
from tests.kube.cluster import Cluster, cluster, install_crds
from tests.kube_operator.conftest import namespace

__all__ = ["kube", "namespace"]


@pytest.fixture
def kube() -> Iterator[Cluster]:
    with cluster() as c:
        install_crds(c.api_client, wait=c.emulator is None)
        yield c
