"""Fixtures of the cluster session tests: the operator tests' API (kmock's KubernetesEmulator, extended,
since no real kube-apiserver can run here; the real cluster KUBECONFIG names otherwise) and namespace."""

from tests.kube_operator.conftest import kube, namespace

__all__ = ["kube", "namespace"]
