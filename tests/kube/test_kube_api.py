"""runyard.kube.api: connecting through a kubeconfig, the API's errors as runyard's, calls counted by verb.

The API server is a fake (kmock's KubernetesEmulator, extended: tests/kube/emulator.py) because no real
kube-apiserver can run here; the module runs unchanged against a real cluster when KUBECONFIG names one
(the kubeconfig test then skips: it writes one for the emulator).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client
from tests.kube.cluster import Cluster

from runyard.core.errors import Conflict, Invalid, NotFound, Unavailable
from runyard.kube.api import CallCounter, connect, translate, translated, verb_of


def pod(name: str) -> dict:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "main", "image": "busybox"}]}}


def test_connect_reads_a_kubeconfig_and_its_context(kube: Cluster, tmp_path: Path, ns: str) -> None:
    if kube.emulator is None:
        pytest.skip("writes a kubeconfig for the emulator")
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": kube.url}}],
        "users": [{"name": "me", "user": {"token": "t"}}],
        "contexts": [
            {"name": "wrong", "context": {"cluster": "fake", "user": "me", "namespace": "x"}},
            {"name": "here", "context": {"cluster": "fake", "user": "me"}},
        ],
        "current-context": "wrong",
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(kubeconfig))
    api_client = connect(str(path), context="here")
    assert api_client.configuration.host == kube.url
    client.CoreV1Api(api_client).create_namespaced_config_map(
        ns, {"metadata": {"name": "through-kubeconfig"}}
    )
    assert client.CoreV1Api(kube.api_client).read_namespaced_config_map("through-kubeconfig", ns)


def test_connect_without_a_usable_config_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="cannot connect"):
        connect(str(tmp_path / "missing"))


def test_api_errors_become_runyards(kube: Cluster, ns: str) -> None:
    core = client.CoreV1Api(kube.api_client)
    with pytest.raises(NotFound), translated():
        core.read_namespaced_pod("nope", ns)
    core.create_namespaced_pod(ns, pod("p"))
    with pytest.raises(Conflict, match="already exists"), translated():
        core.create_namespaced_pod(ns, pod("p"))
    with pytest.raises(Invalid) as invalid, translated():
        core.create_namespaced_pod(ns, pod("Not_A_Name"))
    assert any(d.field == "metadata.name" for d in invalid.value.details)


def test_translate_maps_statuses_without_a_body() -> None:
    assert isinstance(translate(client.ApiException(status=503, reason="down")), Unavailable)
    assert isinstance(translate(client.ApiException(status=0, reason="no answer")), Unavailable)
    err = translate(client.ApiException(status=418, reason="teapot"))
    assert type(err).__name__ == "RunyardError" and err.message == "teapot"


def test_a_dead_server_is_unavailable() -> None:
    api_client = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    api_client.configuration.retries = 0
    with pytest.raises(Unavailable), translated():
        client.CoreV1Api(api_client).list_namespace(_request_timeout=2)


def test_calls_are_counted_by_verb(kube: Cluster, ns: str) -> None:
    calls = CallCounter()
    api_client = calls.instrument(kube.api_client)
    assert calls.instrument(api_client) is api_client  # instrumenting twice does not count twice
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(ns, pod("p"))
    core.read_namespaced_pod("p", ns)
    core.list_namespaced_pod(ns)
    core.patch_namespaced_pod_status("p", ns, {"status": {"phase": "Running"}})
    core.replace_namespaced_pod("p", ns, core.read_namespaced_pod("p", ns))
    core.list_namespaced_pod(ns, watch=True, timeout_seconds=1, _preload_content=False).read()
    core.delete_namespaced_pod("p", ns)
    assert calls.counts() == {
        "create": 1,
        "get": 2,
        "list": 1,
        "patch": 1,
        "replace": 1,
        "watch": 1,
        "delete": 1,
    }
    assert calls.total(exclude=("watch",)) == 7


def test_verbs_of_urls() -> None:
    assert verb_of("GET", "http://h/api/v1/namespaces", {}) == "list"
    assert verb_of("GET", "http://h/api/v1/namespaces/ns", {}) == "get"
    assert verb_of("GET", "http://h/apis/runyard.dev/v1/namespaces/ns/runs", {}) == "list"
    assert verb_of("GET", "http://h/apis/runyard.dev/v1/runs", {"watch": "True"}) == "watch"
    assert verb_of("PUT", "http://h/apis/runyard.dev/v1/namespaces/ns/runs/r/status", {}) == "replace"


def test_connect_in_a_pod_uses_its_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes.config import incluster_config

    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_text("not checked until a request is made")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    api_client = connect()
    assert api_client.configuration.host == "https://10.0.0.1:443"
    assert api_client.configuration.auth_settings()["BearerToken"]["value"].lower() == "bearer sa-token"
    assert verb_of("GET", "http://h/api/v1/namespaces/ns/status", {}) == "get"
    assert verb_of("GET", "http://h/api/v1/namespaces/ns/pods/p/log", {}) == "get"
    assert verb_of("DELETE", "http://h/api/v1/namespaces/ns/pods", {"labelSelector": "a=b"}) == "delete"
