"""Fixtures of the Job controller tests: the operator tests' cluster (kmock's KubernetesEmulator, extended,
since no real kube-apiserver can run here; a real cluster when KUBECONFIG names one) and namespace."""

from tests.kube_operator.conftest import kube, namespace

__all__ = ["kube", "namespace"]
