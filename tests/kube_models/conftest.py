"""The operator tests' fixtures (a Kubernetes API, a fresh namespace per test), shared."""

from tests.kube_operator.conftest import kube, namespace

__all__ = ["kube", "namespace"]
