"""`runyard operator` as a process: it connects with a kubeconfig, leads, reconciles, and on SIGTERM
releases its Lease and exits 0.

The API server is a fake (kmock's KubernetesEmulator, extended: tests/kube/emulator.py) because no real
kube-apiserver can run here; this module runs unchanged against a real cluster when KUBECONFIG names one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from kubernetes import client
from tests.kube.cluster import Cluster
from tests.kube_operator.harness import experiment, wait_for


def kubeconfig(kube: Cluster, tmp_path: Path) -> str:
    if kube.emulator is None:
        return os.environ["KUBECONFIG"]
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": kube.url}}],
                "users": [{"name": "test", "user": {"token": "test"}}],
                "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "test"}}],
                "current-context": "emulator",
            }
        )
    )
    return str(path)


def test_the_command_leads_reconciles_and_releases_on_sigterm(
    kube: Cluster, namespace: str, tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "runyard", "operator", "--kubeconfig", kubeconfig(kube, tmp_path)]
    argv += ["--namespace", namespace, "--identity", "op-main", "--image", "runyard:test"]
    env = {k: v for k, v in os.environ.items() if k not in ("POD_NAMESPACE", "POD_NAME")}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    leases = client.CoordinationV1Api(kube.api_client)
    try:
        custom = client.CustomObjectsApi(kube.api_client)
        custom.create_namespaced_custom_object(
            "runyard.dev", "v1", namespace, "experiments", experiment("cli")
        )
        core = client.CoreV1Api(kube.api_client)
        pod = wait_for("its pod", lambda: core.list_namespaced_pod(namespace).items, timeout=30)[0]
        assert (pod.metadata.name, pod.spec.containers[0].image) == ("cli-1", "runyard:test")
        holder = leases.read_namespaced_lease("runyard-operator", namespace).spec.holder_identity
        assert holder == "op-main"
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert leases.read_namespaced_lease("runyard-operator", namespace).spec.holder_identity is None
    assert "API calls by verb" in output
